"""The DataLoaders of one GraphQL request: every nested field of a list is fetched for the whole list
in one statement (catalog.metadata.queries), through the request's serialised connection."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection
from strawberry.dataloader import DataLoader

from catalog.api.graphql.classification import classifications_of_datasets
from catalog.api.graphql.context import RequestDatabase
from catalog.classification.reads import unmasked_pii_columns
from catalog.lineage.service import resolve_dataset_paths
from catalog.metadata import queries
from catalog.metadata.queries import DatasetRow, FieldRow, JobRow, OwnerRow, RunRow, VersionRow
from catalog.policy import service as policy_service

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

RunPageKey = tuple[int, int, tuple[dt.datetime, int] | None]  # job id, limit, keyset after


class Loaders:
    """Created per request (a loader's cache must not outlive the request that filled it)."""

    def __init__(self, db: RequestDatabase) -> None:
        self._db = db
        self.dataset_by_id: DataLoader[int, DatasetRow | None] = self._by_key(queries.datasets_by_id, None)
        self.dataset_by_name: DataLoader[tuple[str, str], DatasetRow | None] = self._by_key(
            queries.datasets_by_name, None
        )
        self.job_by_id: DataLoader[int, JobRow | None] = self._by_key(queries.jobs_by_id, None)
        self.job_by_name: DataLoader[tuple[str, str], JobRow | None] = self._by_key(
            queries.jobs_by_name, None
        )
        self.field_by_id: DataLoader[int, FieldRow | None] = self._by_key(queries.fields_by_id, None)
        self.fields: DataLoader[int, list[FieldRow]] = self._by_key(queries.fields_of_datasets, [])
        self.owners: DataLoader[tuple[str, int], list[OwnerRow]] = self._by_key(queries.owners_of, [])
        self.facets: DataLoader[tuple[str, int], dict[str, Any]] = self._by_key(queries.facets_of, {})
        self.jobs_of_dataset: DataLoader[tuple[int, str], list[JobRow]] = self._by_key(
            queries.jobs_of_datasets, []
        )
        self.datasets_of_job: DataLoader[tuple[int, str], list[DatasetRow]] = self._by_key(
            queries.datasets_of_jobs, []
        )
        self.versions: DataLoader[tuple[int, int], list[VersionRow]] = self._by_key(
            queries.versions_of_datasets, []
        )
        self.runs: DataLoader[RunPageKey, list[RunRow]] = DataLoader(load_fn=self._runs)
        # Stored product assignments of (kind, namespace, name): what per-field authorisation needs.
        self.products: DataLoader[tuple[str, str, str], str | None] = self._by_key(
            policy_service.stored_products, None
        )
        # Columns holding unmasked PII by (namespace, dataset): what a masked-columns-only grant redacts.
        self.pii_columns: DataLoader[tuple[str, str], frozenset[str]] = self._by_key(
            unmasked_pii_columns, frozenset()
        )
        # The stored dataset of a `namespace/name` text (a propagation path's hop), for authorising it.
        self.dataset_paths: DataLoader[str, tuple[str, str] | None] = self._by_key(
            resolve_dataset_paths, None
        )
        # Effective PII classifications of a dataset's fields (and of the dataset itself), by dataset id.
        self.classifications: DataLoader[int, list[dict[str, Any]]] = self._by_key(
            classifications_of_datasets, []
        )

    def _by_key(
        self,
        fetch: Callable[[AsyncConnection, Sequence[K]], Awaitable[Mapping[K, V]]],
        missing: V,
    ) -> DataLoader[K, V]:
        """A loader whose batch is one call of `fetch` for all its keys; absent keys get `missing`
        (a fresh copy when it is a list or dict, so callers cannot share a mutable default)."""

        async def load(keys: list[K]) -> list[V]:
            async with self._db.use() as conn:
                found = await fetch(conn, keys)
            return [found[k] if k in found else _copy(missing) for k in keys]

        return DataLoader(load_fn=load)

    async def _runs(self, keys: list[RunPageKey]) -> list[list[RunRow]]:
        async with self._db.use() as conn:
            return await queries.runs_pages(conn, keys)


def _copy(value: V) -> V:
    if isinstance(value, list | dict):
        return value.copy()  # type: ignore[return-value]
    return value
