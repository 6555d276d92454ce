"""`CatalogClient` (httpx.Client) and `AsyncCatalogClient` (httpx.AsyncClient): thin wrappers that send
the sans-IO calls of `_requests` with the shared retry policy; listings are iterators that follow pages."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx

from catalog_client import _protocol as p
from catalog_client import models as m
from catalog_client._requests import Direction, FindingStatus, Requests
from catalog_client.config import DEFAULT_TIMEOUT, resolve
from catalog_client.errors import TransportError

T = TypeVar("T")
EXPORT_TIMEOUT = 300.0  # a bundle is built before the first byte is sent
# Failures where the request never reached the server: safe to retry whatever the call.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _transport_delay(
    policy: p.RetryPolicy, attempt: int, call: p.Call[Any], exc: httpx.TransportError
) -> float:
    """The wait before retrying a call whose connection failed; raises when it must not be retried:
    after the request may have reached the server (a read error, a reset, a read timeout) only an
    idempotent call is sent again."""
    delay = policy.delay(attempt, None)
    if delay is None or not (isinstance(exc, _NOT_SENT) or call.idempotent):
        raise TransportError(f"{call.method}: {type(exc).__name__}: {exc}") from exc
    return delay


def _export_target(dest: str | Path, headers: httpx.Headers) -> Path:
    target = Path(dest)
    if str(dest).endswith(("/", "\\")):
        target.mkdir(parents=True, exist_ok=True)
    if target.is_dir():
        match = re.search(r'filename="([^"/\\]+)"', headers.get("content-disposition", ""))
        target = target / (match.group(1) if match else "catalog-export.zip")
    return target


class _Base:
    def __init__(
        self,
        url: str | None,
        api_key: str | None,
        *,
        timeout: float | httpx.Timeout,
        retry: p.RetryPolicy | None,
        page_size: int,
        headers: dict[str, str] | None,
    ) -> None:
        self.settings = resolve(url, api_key)
        self.retry = retry if retry is not None else p.RetryPolicy()
        self.requests = Requests(page_size)
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.headers = {
            "User-Agent": "lineage-catalog-client/0.1",
            **self.settings.headers(),
            **(headers or {}),
        }
        # Read-your-writes: the latest Catalog-Position (projection) and Catalog-LSN (replicas) go back on
        # every request.
        self.write_position = p.WritePosition()

    def _send_position(self, request: httpx.Request) -> None:
        request.headers.update(self.write_position.headers())

    def _observe_position(self, response: httpx.Response) -> None:
        self.write_position.observe(response.headers)

    async def _asend_position(self, request: httpx.Request) -> None:
        self._send_position(request)

    async def _aobserve_position(self, response: httpx.Response) -> None:
        self._observe_position(response)

    @property
    def url(self) -> str:
        return self.settings.url


class CatalogClient(_Base):
    """Blocking client. Use as a context manager (or call `close()`)."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: p.RetryPolicy | None = None,
        page_size: int = 100,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(url, api_key, timeout=timeout, retry=retry, page_size=page_size, headers=headers)
        self._http = httpx.Client(
            base_url=self.url,
            headers=self.headers,
            timeout=self.timeout,
            transport=transport,
            event_hooks={"request": [self._send_position], "response": [self._observe_position]},
        )

    def __enter__(self) -> CatalogClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- the one sending loop --------------------------------------------------------------------------
    def send(self, call: p.Call[T]) -> T:
        attempt = 0
        while True:
            try:
                response = self._http.request(call.method, call.path, params=call.params, json=call.json)
            except httpx.TransportError as exc:
                delay = _transport_delay(self.retry, attempt, call, exc)
            else:
                retry_in = self.retry.delay(
                    attempt, response.status_code, response.headers, idempotent=call.idempotent
                )
                if retry_in is None:
                    return p.read_answer(call, response.status_code, response.headers, response.content)
                delay = retry_in
            time.sleep(delay)
            attempt += 1

    def iterate(self, pager: p.Pager[T]) -> Iterator[T]:
        call: p.Call[m.Page[T]] | None = pager.first
        while call is not None:
            page = self.send(call)
            yield from page.items
            call = pager.follow(page)

    # -- catalog ---------------------------------------------------------------------------------------
    def namespaces(self) -> Iterator[m.Namespace]:
        return self.iterate(self.requests.namespaces())

    def namespace(self, name: str) -> m.Namespace:
        return self.send(self.requests.namespace(name))

    def datasets(self, namespace: str) -> Iterator[m.Dataset]:
        return self.iterate(self.requests.datasets(namespace))

    def dataset(self, namespace: str, name: str) -> m.Dataset:
        return self.send(self.requests.dataset(namespace, name))

    def dataset_versions(self, namespace: str, name: str) -> Iterator[m.DatasetVersion]:
        return self.iterate(self.requests.dataset_versions(namespace, name))

    def all_datasets(
        self, *, namespace: str | None = None, search: str | None = None
    ) -> Iterator[m.GqlDataset]:
        """Datasets across namespaces (GraphQL, cursor-paged), optionally by name substring."""
        return self.iterate(self.requests.all_datasets(namespace, search))

    def fields(self, namespace: str, dataset: str, *, path: str | None = None) -> list[m.GqlField] | None:
        """A dataset's fields as a tree (GraphQL): top level, or those directly under `path`; None when
        the dataset does not exist. (`dataset(...).fields` is the REST flattened list with tags.)"""
        return self.send(self.requests.fields(namespace, dataset, path))

    def jobs(self, namespace: str) -> Iterator[m.Job]:
        return self.iterate(self.requests.jobs(namespace))

    def job(self, namespace: str, name: str) -> m.Job:
        return self.send(self.requests.job(namespace, name))

    def runs(self, namespace: str, job: str) -> Iterator[m.Run]:
        return self.iterate(self.requests.runs(namespace, job))

    def run(self, run_id: str | uuid.UUID) -> m.Run:
        return self.send(self.requests.run(run_id))

    def events(
        self, *, before: dt.datetime | None = None, after: dt.datetime | None = None, ascending: bool = False
    ) -> Iterator[m.LineageEvent]:
        return self.iterate(self.requests.events(before=before, after=after, ascending=ascending))

    # -- lineage ---------------------------------------------------------------------------------------
    def lineage(
        self,
        node_id: str,
        *,
        depth: int | None = None,
        direction: Direction = "BOTH",
        as_of: dt.datetime | None = None,
    ) -> m.LineageGraph:
        return self.send(self.requests.lineage(node_id, depth=depth, direction=direction, as_of=as_of))

    def column_lineage(
        self,
        node_id: str,
        *,
        depth: int | None = None,
        with_downstream: bool = False,
        as_of: dt.datetime | None = None,
    ) -> m.ColumnLineageGraph:
        call = self.requests.column_lineage(
            node_id, depth=depth, with_downstream=with_downstream, as_of=as_of
        )
        return self.send(call)

    def search(
        self,
        q: str,
        *,
        kind: Literal["DATASET", "JOB"] | None = None,
        sort: Literal["NAME", "UPDATE_AT"] = "NAME",
        limit: int = 10,
        namespace: str | None = None,
    ) -> m.SearchResults:
        return self.send(self.requests.search(q, kind=kind, sort=sort, limit=limit, namespace=namespace))

    # -- tags ------------------------------------------------------------------------------------------
    def tags(self) -> Iterator[m.Tag]:
        return self.iterate(self.requests.tags())

    def tag(self, namespace: str, dataset: str, tag: str, *, field: str | None = None) -> m.Dataset:
        return self.send(self.requests.tag(namespace, dataset, tag, field, add=True))

    def untag(self, namespace: str, dataset: str, tag: str, *, field: str | None = None) -> m.Dataset:
        return self.send(self.requests.tag(namespace, dataset, tag, field, add=False))

    # -- classification / PII --------------------------------------------------------------------------
    def classifications(
        self, namespace: str, dataset: str, *, field: str | None = None
    ) -> list[m.Classification]:
        return self.send(self.requests.classifications(namespace, dataset, field))

    def decisions(
        self, *, namespace: str | None = None, dataset: str | None = None, include_retired: bool = False
    ) -> Iterator[m.Decision]:
        return self.iterate(self.requests.decisions(namespace, dataset, include_retired))

    def record_decision(self, decision: m.DecisionIn) -> m.Decision:
        return self.send(self.requests.record_decision(decision))

    def retire_decision(self, decision_id: int) -> m.Decision:
        return self.send(self.requests.retire_decision(decision_id))

    def pii_inventory(
        self,
        *,
        namespace: str | None = None,
        product: str | None = None,
        tier: str | None = None,
        as_of: dt.datetime | None = None,
    ) -> Iterator[m.Classification]:
        """Every field holding PII; `product`/`tier` filter by the dataset's product and its namespace's tier."""
        return self.iterate(self.requests.pii_inventory(namespace, as_of, product, tier))

    def pii_flow(self, namespace: str, dataset: str, field: str, depth: int | None = None) -> m.PiiFlow:
        """Where a column's value goes, hop by hop (`depth` hops from it; the server's default is 10)."""
        return self.send(self.requests.pii_flow(namespace, dataset, field, depth))

    # -- governance ------------------------------------------------------------------------------------
    def findings(
        self,
        *,
        product: str | None = None,
        rule: str | None = None,
        severity: str | None = None,
        status: FindingStatus | None = None,
    ) -> Iterator[m.Finding]:
        return self.iterate(
            self.requests.findings(product=product, rule=rule, severity=severity, status=status)
        )

    def finding(self, finding_id: int) -> m.Finding:
        return self.send(self.requests.finding(finding_id))

    def findings_summary(self, *, product: str | None = None) -> m.FindingsSummary:
        return self.send(self.requests.findings_summary(product))

    def dataset_findings(
        self, namespace: str, dataset: str, *, status: FindingStatus | None = None
    ) -> list[m.Finding]:
        return self.send(self.requests.subject_findings("dataset", namespace, dataset, status))

    def job_findings(
        self, namespace: str, job: str, *, status: FindingStatus | None = None
    ) -> list[m.Finding]:
        return self.send(self.requests.subject_findings("job", namespace, job, status))

    def waive(self, finding_id: int, reason: str, *, until: dt.datetime | None = None) -> m.Finding:
        return self.send(self.requests.waive(finding_id, m.WaiverIn(reason=reason, until=until)))

    def unwaive(self, finding_id: int, *, reason: str | None = None) -> m.Finding:
        return self.send(self.requests.unwaive(finding_id, m.UnwaiveIn(reason=reason)))

    def grants(self, *, product: str | None = None, include_revoked: bool = False) -> list[m.Grant]:
        return self.send(self.requests.grants(product, include_revoked))

    def create_grant(self, grant: m.GrantIn) -> m.Grant:
        return self.send(self.requests.create_grant(grant))

    def revoke_grant(self, grant_id: int) -> m.Grant:
        return self.send(self.requests.revoke_grant(grant_id))

    # -- ingestion and audit ---------------------------------------------------------------------------
    def ingest(
        self, event: dict[str, Any], *, wait: Literal["logged", "projected"] | None = None
    ) -> m.IngestResult:
        """POST one OpenLineage event as JSON (pipelines normally use `catalog_client.pipelines`). The
        answer comes once it is in the event log; this client's next reads wait until it is projected
        (read-your-writes). `wait="projected"` makes the answer itself wait (bounded) for the projection."""
        return self.send(self.requests.ingest(event, wait=wait))

    def signing_keys(self) -> m.SigningKeys:
        return self.send(self.requests.signing_keys())

    def export(
        self,
        dest: str | Path,
        *,
        as_of: dt.datetime | None = None,
        period_from: dt.datetime | None = None,
        period_to: dt.datetime | None = None,
        product: str | None = None,
        read_timeout: float = EXPORT_TIMEOUT,
    ) -> Path:
        """Download a signed export bundle to `dest` (a file, or a directory for the server's file name)."""
        call = self.requests.export(
            as_of=as_of, period_from=period_from, period_to=period_to, product=product
        )
        attempt = 0
        while True:
            try:
                with self._http.stream(
                    "GET", call.path, params=call.params, timeout=read_timeout
                ) as response:
                    if response.is_success:
                        target = _export_target(dest, response.headers)
                        partial = target.with_name(target.name + ".part")
                        with partial.open("wb") as handle:
                            for chunk in response.iter_bytes():
                                handle.write(chunk)
                        partial.replace(target)
                        return target
                    content = response.read()
            except httpx.TransportError as exc:
                delay = _transport_delay(self.retry, attempt, call, exc)
            else:
                retry_in = self.retry.delay(
                    attempt, response.status_code, response.headers, idempotent=call.idempotent
                )
                if retry_in is None:
                    p.read_answer(call, response.status_code, response.headers, content)
                    raise AssertionError("unreachable: an error answer raises")  # pragma: no cover
                delay = retry_in
            time.sleep(delay)
            attempt += 1


class AsyncCatalogClient(_Base):
    """The same methods as `CatalogClient`, awaitable; listings are async iterators."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: p.RetryPolicy | None = None,
        page_size: int = 100,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(url, api_key, timeout=timeout, retry=retry, page_size=page_size, headers=headers)
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers=self.headers,
            timeout=self.timeout,
            transport=transport,
            event_hooks={"request": [self._asend_position], "response": [self._aobserve_position]},
        )

    async def __aenter__(self) -> AsyncCatalogClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- the one sending loop --------------------------------------------------------------------------
    async def send(self, call: p.Call[T]) -> T:
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    call.method, call.path, params=call.params, json=call.json
                )
            except httpx.TransportError as exc:
                delay = _transport_delay(self.retry, attempt, call, exc)
            else:
                retry_in = self.retry.delay(
                    attempt, response.status_code, response.headers, idempotent=call.idempotent
                )
                if retry_in is None:
                    return p.read_answer(call, response.status_code, response.headers, response.content)
                delay = retry_in
            await asyncio.sleep(delay)
            attempt += 1

    async def iterate(self, pager: p.Pager[T]) -> AsyncIterator[T]:
        call: p.Call[m.Page[T]] | None = pager.first
        while call is not None:
            page = await self.send(call)
            for item in page.items:
                yield item
            call = pager.follow(page)

    # -- catalog ---------------------------------------------------------------------------------------
    def namespaces(self) -> AsyncIterator[m.Namespace]:
        return self.iterate(self.requests.namespaces())

    async def namespace(self, name: str) -> m.Namespace:
        return await self.send(self.requests.namespace(name))

    def datasets(self, namespace: str) -> AsyncIterator[m.Dataset]:
        return self.iterate(self.requests.datasets(namespace))

    async def dataset(self, namespace: str, name: str) -> m.Dataset:
        return await self.send(self.requests.dataset(namespace, name))

    def dataset_versions(self, namespace: str, name: str) -> AsyncIterator[m.DatasetVersion]:
        return self.iterate(self.requests.dataset_versions(namespace, name))

    def all_datasets(
        self, *, namespace: str | None = None, search: str | None = None
    ) -> AsyncIterator[m.GqlDataset]:
        return self.iterate(self.requests.all_datasets(namespace, search))

    async def fields(
        self, namespace: str, dataset: str, *, path: str | None = None
    ) -> list[m.GqlField] | None:
        return await self.send(self.requests.fields(namespace, dataset, path))

    def jobs(self, namespace: str) -> AsyncIterator[m.Job]:
        return self.iterate(self.requests.jobs(namespace))

    async def job(self, namespace: str, name: str) -> m.Job:
        return await self.send(self.requests.job(namespace, name))

    def runs(self, namespace: str, job: str) -> AsyncIterator[m.Run]:
        return self.iterate(self.requests.runs(namespace, job))

    async def run(self, run_id: str | uuid.UUID) -> m.Run:
        return await self.send(self.requests.run(run_id))

    def events(
        self, *, before: dt.datetime | None = None, after: dt.datetime | None = None, ascending: bool = False
    ) -> AsyncIterator[m.LineageEvent]:
        return self.iterate(self.requests.events(before=before, after=after, ascending=ascending))

    # -- lineage ---------------------------------------------------------------------------------------
    async def lineage(
        self,
        node_id: str,
        *,
        depth: int | None = None,
        direction: Direction = "BOTH",
        as_of: dt.datetime | None = None,
    ) -> m.LineageGraph:
        return await self.send(self.requests.lineage(node_id, depth=depth, direction=direction, as_of=as_of))

    async def column_lineage(
        self,
        node_id: str,
        *,
        depth: int | None = None,
        with_downstream: bool = False,
        as_of: dt.datetime | None = None,
    ) -> m.ColumnLineageGraph:
        call = self.requests.column_lineage(
            node_id, depth=depth, with_downstream=with_downstream, as_of=as_of
        )
        return await self.send(call)

    async def search(
        self,
        q: str,
        *,
        kind: Literal["DATASET", "JOB"] | None = None,
        sort: Literal["NAME", "UPDATE_AT"] = "NAME",
        limit: int = 10,
        namespace: str | None = None,
    ) -> m.SearchResults:
        return await self.send(
            self.requests.search(q, kind=kind, sort=sort, limit=limit, namespace=namespace)
        )

    # -- tags ------------------------------------------------------------------------------------------
    def tags(self) -> AsyncIterator[m.Tag]:
        return self.iterate(self.requests.tags())

    async def tag(self, namespace: str, dataset: str, tag: str, *, field: str | None = None) -> m.Dataset:
        return await self.send(self.requests.tag(namespace, dataset, tag, field, add=True))

    async def untag(self, namespace: str, dataset: str, tag: str, *, field: str | None = None) -> m.Dataset:
        return await self.send(self.requests.tag(namespace, dataset, tag, field, add=False))

    # -- classification / PII --------------------------------------------------------------------------
    async def classifications(
        self, namespace: str, dataset: str, *, field: str | None = None
    ) -> list[m.Classification]:
        return await self.send(self.requests.classifications(namespace, dataset, field))

    def decisions(
        self, *, namespace: str | None = None, dataset: str | None = None, include_retired: bool = False
    ) -> AsyncIterator[m.Decision]:
        return self.iterate(self.requests.decisions(namespace, dataset, include_retired))

    async def record_decision(self, decision: m.DecisionIn) -> m.Decision:
        return await self.send(self.requests.record_decision(decision))

    async def retire_decision(self, decision_id: int) -> m.Decision:
        return await self.send(self.requests.retire_decision(decision_id))

    def pii_inventory(
        self,
        *,
        namespace: str | None = None,
        product: str | None = None,
        tier: str | None = None,
        as_of: dt.datetime | None = None,
    ) -> AsyncIterator[m.Classification]:
        """Every field holding PII; `product`/`tier` filter by the dataset's product and its namespace's tier."""
        return self.iterate(self.requests.pii_inventory(namespace, as_of, product, tier))

    async def pii_flow(self, namespace: str, dataset: str, field: str, depth: int | None = None) -> m.PiiFlow:
        """Where a column's value goes, hop by hop (`depth` hops from it; the server's default is 10)."""
        return await self.send(self.requests.pii_flow(namespace, dataset, field, depth))

    # -- governance ------------------------------------------------------------------------------------
    def findings(
        self,
        *,
        product: str | None = None,
        rule: str | None = None,
        severity: str | None = None,
        status: FindingStatus | None = None,
    ) -> AsyncIterator[m.Finding]:
        return self.iterate(
            self.requests.findings(product=product, rule=rule, severity=severity, status=status)
        )

    async def finding(self, finding_id: int) -> m.Finding:
        return await self.send(self.requests.finding(finding_id))

    async def findings_summary(self, *, product: str | None = None) -> m.FindingsSummary:
        return await self.send(self.requests.findings_summary(product))

    async def dataset_findings(
        self, namespace: str, dataset: str, *, status: FindingStatus | None = None
    ) -> list[m.Finding]:
        return await self.send(self.requests.subject_findings("dataset", namespace, dataset, status))

    async def job_findings(
        self, namespace: str, job: str, *, status: FindingStatus | None = None
    ) -> list[m.Finding]:
        return await self.send(self.requests.subject_findings("job", namespace, job, status))

    async def waive(self, finding_id: int, reason: str, *, until: dt.datetime | None = None) -> m.Finding:
        return await self.send(self.requests.waive(finding_id, m.WaiverIn(reason=reason, until=until)))

    async def unwaive(self, finding_id: int, *, reason: str | None = None) -> m.Finding:
        return await self.send(self.requests.unwaive(finding_id, m.UnwaiveIn(reason=reason)))

    async def grants(self, *, product: str | None = None, include_revoked: bool = False) -> list[m.Grant]:
        return await self.send(self.requests.grants(product, include_revoked))

    async def create_grant(self, grant: m.GrantIn) -> m.Grant:
        return await self.send(self.requests.create_grant(grant))

    async def revoke_grant(self, grant_id: int) -> m.Grant:
        return await self.send(self.requests.revoke_grant(grant_id))

    # -- ingestion and audit ---------------------------------------------------------------------------
    async def ingest(
        self, event: dict[str, Any], *, wait: Literal["logged", "projected"] | None = None
    ) -> m.IngestResult:
        return await self.send(self.requests.ingest(event, wait=wait))

    async def signing_keys(self) -> m.SigningKeys:
        return await self.send(self.requests.signing_keys())

    async def export(
        self,
        dest: str | Path,
        *,
        as_of: dt.datetime | None = None,
        period_from: dt.datetime | None = None,
        period_to: dt.datetime | None = None,
        product: str | None = None,
        read_timeout: float = EXPORT_TIMEOUT,
    ) -> Path:
        call = self.requests.export(
            as_of=as_of, period_from=period_from, period_to=period_to, product=product
        )
        attempt = 0
        while True:
            try:
                async with self._http.stream(
                    "GET", call.path, params=call.params, timeout=read_timeout
                ) as response:
                    if response.is_success:
                        target = _export_target(dest, response.headers)
                        partial = target.with_name(target.name + ".part")
                        with partial.open("wb") as handle:
                            async for chunk in response.aiter_bytes():
                                handle.write(chunk)
                        partial.replace(target)
                        return target
                    content = await response.aread()
            except httpx.TransportError as exc:
                delay = _transport_delay(self.retry, attempt, call, exc)
            else:
                retry_in = self.retry.delay(
                    attempt, response.status_code, response.headers, idempotent=call.idempotent
                )
                if retry_in is None:
                    p.read_answer(call, response.status_code, response.headers, content)
                    raise AssertionError("unreachable: an error answer raises")  # pragma: no cover
                delay = retry_in
            await asyncio.sleep(delay)
            attempt += 1
