"""For pipelines no OpenLineage integration covers (a hand-written job, a notebook): an emitter on top of
openlineage-python that sends START, then COMPLETE — or FAIL with the errorMessage run facet — around a
block or a function, and helpers that build the common dataset facets without writing facet JSON.

    emitter = Emitter(namespace="notebooks")           # CATALOG_URL / CATALOG_API_KEY (or OPENLINEAGE_*)
    with emitter.run("daily_payout_report", inputs=[...], outputs=[...]) as run:
        ...                                             # an exception here sends FAIL, then re-raises
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import logging
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    DatasetFacet,
    JobFacet,
    RunFacet,
    column_lineage_dataset,
    datasource_dataset,
    error_message_run,
    ownership_dataset,
    parent_run,
    schema_dataset,
    tags_dataset,
)
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport, TokenProvider

from catalog_client._protocol import WritePosition
from catalog_client.config import DEFAULT_TIMEOUT, resolve

if TYPE_CHECKING:
    from catalog_client.client import AsyncCatalogClient, CatalogClient

PRODUCER = "https://github.com/lineage-catalog/clients/python"
log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

# -- facet helpers -------------------------------------------------------------------------------------

FieldSpec = (
    tuple[str, str | None] | tuple[str, str | None, str | None] | schema_dataset.SchemaDatasetFacetFields
)


def schema(fields: Mapping[str, str | None] | Iterable[FieldSpec]) -> schema_dataset.SchemaDatasetFacet:
    """`schema({"id": "BIGINT", "email": "TEXT"})` or `schema([("id", "BIGINT", "the key"), ...])`."""
    out: list[schema_dataset.SchemaDatasetFacetFields] = []
    items: Iterable[Any] = fields.items() if isinstance(fields, Mapping) else fields
    for item in items:
        if isinstance(item, schema_dataset.SchemaDatasetFacetFields):
            out.append(item)
        else:
            name, type_, *rest = item
            out.append(
                schema_dataset.SchemaDatasetFacetFields(
                    name=name, type=type_, description=rest[0] if rest else None
                )
            )
    return schema_dataset.SchemaDatasetFacet(fields=out)


def data_source(name: str, uri: str | None = None) -> datasource_dataset.DatasourceDatasetFacet:
    """Where the dataset lives: `data_source("payments-db", "postgres://payments-db:5432/payments")`."""
    return datasource_dataset.DatasourceDatasetFacet(name=name, uri=uri or name)


def ownership(*owners: str | tuple[str, str]) -> ownership_dataset.OwnershipDatasetFacet:
    """`ownership("team:payments", ("user:ana", "MAINTAINER"))`."""
    return ownership_dataset.OwnershipDatasetFacet(
        owners=[
            ownership_dataset.Owner(name=o)
            if isinstance(o, str)
            else ownership_dataset.Owner(name=o[0], type=o[1])
            for o in owners
        ]
    )


def tags(
    dataset_tags: Iterable[str] = (),
    *,
    fields: Mapping[str, Iterable[str]] | None = None,
    source: str = "USER",
) -> tags_dataset.TagsDatasetFacet:
    """Tags on the dataset and on its fields: `tags(["tier1"], fields={"cpf": ["PII.CPF"]})`.
    Each becomes `{key: tag, value: "true"}`, which the catalog reads as a declared classification."""
    out = [tags_dataset.TagsDatasetFacetFields(key=t, value="true", source=source) for t in dataset_tags]
    for name, names in (fields or {}).items():
        out.extend(
            tags_dataset.TagsDatasetFacetFields(key=t, value="true", source=source, field=name) for t in names
        )
    return tags_dataset.TagsDatasetFacet(tags=out)


@dataclass(frozen=True, slots=True)
class Source:
    """One input column of an output column, and how it got there."""

    namespace: str
    dataset: str
    field: str
    type: str = "DIRECT"  # DIRECT or INDIRECT
    subtype: str | None = "IDENTITY"  # IDENTITY, TRANSFORMATION, AGGREGATION, FILTER, JOIN, ...
    masking: bool = False
    description: str | None = None


def column_lineage(
    mapping: Mapping[str, Iterable[Source | tuple[str, str, str]]],
) -> column_lineage_dataset.ColumnLineageDatasetFacet:
    """`column_lineage({"email_hash": [Source("pg", "public.users", "email", subtype="TRANSFORMATION",
    masking=True)]})`; a plain (namespace, dataset, field) tuple is a DIRECT IDENTITY copy."""
    fields: dict[str, column_lineage_dataset.Fields] = {}
    for target, sources in mapping.items():
        inputs = []
        for src in sources:
            s = src if isinstance(src, Source) else Source(*src)
            inputs.append(
                column_lineage_dataset.InputField(
                    namespace=s.namespace,
                    name=s.dataset,
                    field=s.field,
                    transformations=[
                        column_lineage_dataset.Transformation(
                            type=s.type, subtype=s.subtype, description=s.description, masking=s.masking
                        )
                    ],
                )
            )
        fields[target] = column_lineage_dataset.Fields(inputFields=inputs)
    return column_lineage_dataset.ColumnLineageDatasetFacet(fields=fields)


def _facets(
    *,
    fields: Mapping[str, str | None] | Iterable[FieldSpec] | None,
    source: datasource_dataset.DatasourceDatasetFacet | None,
    owners: Sequence[str | tuple[str, str]] | None,
    tag: tags_dataset.TagsDatasetFacet | None,
    lineage: column_lineage_dataset.ColumnLineageDatasetFacet | None,
    extra: Mapping[str, DatasetFacet] | None,
) -> dict[str, DatasetFacet]:
    facets: dict[str, DatasetFacet] = {}
    if fields is not None:
        facets["schema"] = schema(fields)
    if source is not None:
        facets["dataSource"] = source
    if owners:
        facets["ownership"] = ownership(*owners)
    if tag is not None:
        facets["tags"] = tag
    if lineage is not None:
        facets["columnLineage"] = lineage
    facets.update(extra or {})
    return facets


def input_dataset(
    namespace: str,
    name: str,
    *,
    fields: Mapping[str, str | None] | Iterable[FieldSpec] | None = None,
    source: datasource_dataset.DatasourceDatasetFacet | None = None,
    owners: Sequence[str | tuple[str, str]] | None = None,
    tags: tags_dataset.TagsDatasetFacet | None = None,
    facets: Mapping[str, DatasetFacet] | None = None,
) -> InputDataset:
    built = _facets(fields=fields, source=source, owners=owners, tag=tags, lineage=None, extra=facets)
    return InputDataset(namespace=namespace, name=name, facets=built)


def output_dataset(
    namespace: str,
    name: str,
    *,
    fields: Mapping[str, str | None] | Iterable[FieldSpec] | None = None,
    source: datasource_dataset.DatasourceDatasetFacet | None = None,
    owners: Sequence[str | tuple[str, str]] | None = None,
    tags: tags_dataset.TagsDatasetFacet | None = None,
    column_lineage: column_lineage_dataset.ColumnLineageDatasetFacet | None = None,
    facets: Mapping[str, DatasetFacet] | None = None,
) -> OutputDataset:
    built = _facets(
        fields=fields, source=source, owners=owners, tag=tags, lineage=column_lineage, extra=facets
    )
    return OutputDataset(namespace=namespace, name=name, facets=built)


# -- the emitter ---------------------------------------------------------------------------------------


@dataclass
class RunHandle:
    """The run in progress: add datasets known only at the end (sent with COMPLETE), or run facets."""

    run_id: str
    job: str
    namespace: str
    inputs: list[InputDataset] = field(default_factory=list)
    outputs: list[OutputDataset] = field(default_factory=list)
    run_facets: dict[str, RunFacet] = field(default_factory=dict)

    def add_input(self, dataset: InputDataset) -> None:
        self.inputs.append(dataset)

    def add_output(self, dataset: OutputDataset) -> None:
        self.outputs.append(dataset)


# How the emitter's HTTP transport retries (urllib3's Retry, which openlineage-python builds from this):
# connection failures and 429/502/503/504, honouring Retry-After. POST is retried because the catalog
# stores an event once (a resent event answers `duplicate`). 500 is not retried: the catalog answers
# 503 whenever a retry can help, so a 500 is a fault that a retry would only repeat.
EMITTER_RETRY: dict[str, Any] = {
    "total": 5,
    "connect": 5,
    "read": 5,
    "status": 5,
    "other": 2,
    "backoff_factor": 0.3,
    "status_forcelist": [429, 502, 503, 504],
    "allowed_methods": ["POST"],
    "respect_retry_after_header": True,
}


class _PositionTransport(HttpTransport):
    """openlineage-python's HTTP transport, noting each answer's `Catalog-Position` (the OpenLineage client
    drops the answer): reads that send it back wait until the event is projected."""

    def __init__(self, config: HttpConfig, position: WritePosition) -> None:
        super().__init__(config)
        self.position = position

    def emit(self, event: Any) -> Any:
        response = super().emit(event)
        if response is not None:
            self.position.observe(response.headers)
        return response


class Emitter:
    """Sends run events with openlineage-python's HTTP transport to the catalog's `/api/v1/lineage`.

    Read-your-writes by default: the log position of every event it sent is kept in `write_position`;
    pass `reads=` a CatalogClient (sync or async) and that client's reads wait until they are projected.

    Configured like the OpenLineage client: `url`/`api_key`, else CATALOG_URL/CATALOG_API_KEY, else
    OPENLINEAGE_URL/OPENLINEAGE_API_KEY. Pass `client=` to reuse an already configured OpenLineageClient.
    Failed sends are retried as `EMITTER_RETRY` says; `retry=` overrides its keys (urllib3 Retry).
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        namespace: str,
        producer: str = PRODUCER,
        timeout: float = DEFAULT_TIMEOUT,
        client: OpenLineageClient | None = None,
        retry: Mapping[str, Any] | None = None,
        reads: CatalogClient | AsyncCatalogClient | None = None,
    ) -> None:
        self.namespace = namespace
        self.producer = producer
        # Shared with `reads` (a CatalogClient), so its requests carry this emitter's last position too.
        self.write_position: WritePosition = reads.write_position if reads is not None else WritePosition()
        if client is None:
            settings = resolve(url, api_key)
            auth = (
                ApiKeyTokenProvider({"apiKey": settings.api_key}) if settings.api_key else TokenProvider({})
            )
            config = HttpConfig(
                url=settings.url, auth=auth, timeout=timeout, retry={**EMITTER_RETRY, **(retry or {})}
            )
            client = OpenLineageClient(transport=_PositionTransport(config, self.write_position))
        self.client = client

    def emit(self, event: RunEvent) -> None:
        self.client.emit(event)

    def event(
        self,
        state: RunState,
        handle: RunHandle,
        *,
        job_facets: Mapping[str, JobFacet] | None = None,
        parent: parent_run.ParentRunFacet | None = None,
    ) -> RunEvent:
        run_facets: dict[str, RunFacet] = dict(handle.run_facets)
        if parent is not None:
            run_facets["parent"] = parent
        return RunEvent(
            eventType=state,
            eventTime=dt.datetime.now(dt.UTC).isoformat(),
            run=Run(runId=handle.run_id, facets=run_facets),
            job=Job(namespace=handle.namespace, name=handle.job, facets=dict(job_facets or {})),
            producer=self.producer,
            inputs=list(handle.inputs),
            outputs=list(handle.outputs),
        )

    @contextmanager
    def run(
        self,
        job: str,
        *,
        inputs: Iterable[InputDataset] = (),
        outputs: Iterable[OutputDataset] = (),
        run_id: str | uuid.UUID | None = None,
        job_facets: Mapping[str, JobFacet] | None = None,
        parent: parent_run.ParentRunFacet | None = None,
    ) -> Iterator[RunHandle]:
        """START on entry; COMPLETE on a normal exit; FAIL (errorMessage facet) on an exception, re-raised."""
        handle = RunHandle(
            run_id=str(run_id or uuid.uuid4()),
            job=job,
            namespace=self.namespace,
            inputs=list(inputs),
            outputs=list(outputs),
        )
        self.emit(self.event(RunState.START, handle, job_facets=job_facets, parent=parent))
        try:
            yield handle
        except BaseException as exc:
            handle.run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=f"{type(exc).__name__}: {exc}",
                programmingLanguage="python",
                stackTrace="".join(traceback.format_exception(exc)),
            )
            try:
                self.emit(self.event(RunState.FAIL, handle, job_facets=job_facets, parent=parent))
            except Exception as emit_error:  # the job's own error matters more than the lineage's
                log.warning("could not send FAIL for run %s: %s", handle.run_id, emit_error)
                exc.add_note(f"(the FAIL event for run {handle.run_id} could not be sent: {emit_error})")
            raise
        self.emit(self.event(RunState.COMPLETE, handle, job_facets=job_facets, parent=parent))

    def job(
        self,
        name: str | None = None,
        *,
        inputs: Iterable[InputDataset] = (),
        outputs: Iterable[OutputDataset] = (),
        job_facets: Mapping[str, JobFacet] | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a function (or coroutine function) so each call is one run of job `name` (default:
        the function's qualified name)."""
        ins, outs = list(inputs), list(outputs)

        def decorate(func: Callable[P, R]) -> Callable[P, R]:
            job_name = name or func.__qualname__
            if inspect.iscoroutinefunction(func):
                coroutine = cast(Callable[P, Awaitable[Any]], func)

                @functools.wraps(func)
                async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                    with self.run(job_name, inputs=ins, outputs=outs, job_facets=job_facets):
                        return await coroutine(*args, **kwargs)

                return cast(Callable[P, R], run_async)

            @functools.wraps(func)
            def run_sync(*args: P.args, **kwargs: P.kwargs) -> R:
                with self.run(job_name, inputs=ins, outputs=outs, job_facets=job_facets):
                    return func(*args, **kwargs)

            return run_sync

        return decorate
