"""The GraphQL object types of the catalog. Each wraps a row of catalog.metadata.queries and resolves its
nested fields through the request's DataLoaders, so lists never cost a query per element."""

from __future__ import annotations

import base64
import datetime as dt
import enum
import json
from collections.abc import Callable
from typing import Annotated, Any, Generic, TypeVar, cast

import strawberry
from strawberry.scalars import JSON

from catalog.api.graphql.classification import Classification
from catalog.api.graphql.context import GraphQLContext
from catalog.api.graphql.errors import UserError
from catalog.metadata.queries import (
    DatasetRow,
    FieldRow,
    JobRow,
    NamespaceRow,
    OwnerRow,
    RunRow,
    VersionRow,
)
from catalog.metadata.service import version_uuid
from catalog.policy.enforcer import UNOWNED
from catalog.policy.masking import is_redacted, names_redacted, redact_facets, redact_schema

Info = strawberry.Info[GraphQLContext, None]
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def described(description: str) -> Callable[[F], F]:
    """`@strawberry.field(description=...)` with its type kept (strawberry's overload for a field
    decorator called with arguments returns Any, which mypy --strict rejects as untyped)."""
    return cast("Callable[[F], F]", strawberry.field(description=description))


def described_mutation(description: str) -> Callable[[F], F]:
    """`@strawberry.mutation(description=...)`, typed as `described` is."""
    return cast("Callable[[F], F]", strawberry.mutation(description=description))


async def internals(info: Info, kind: str, row: DatasetRow | JobRow) -> None:
    """Raise Forbidden unless the caller may read this dataset's/job's internals (see authz.py)."""
    await info.context.authz.require_read(kind, row.namespace, row.name)


TERMINAL_RANK = 3  # runs.state_rank of COMPLETE/FAIL/ABORT (see catalog.metadata.models.Run)


# -- pagination -----------------------------------------------------------------------------------------


def page_size(info: Info, first: int) -> int:
    """`first`, checked against the maximum page size (a client cannot ask for the whole table)."""
    maximum = info.context.limits.max_page_size
    if not 1 <= first <= maximum:
        raise UserError(f"`first` must be between 1 and {maximum}; got {first}")
    return first


def encode_cursor(*key: Any) -> str:
    """An opaque cursor for a keyset position (clients must not build or parse them)."""
    return base64.urlsafe_b64encode(json.dumps(key, default=str).encode()).decode()


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, UnicodeDecodeError):
        key = None
    if not isinstance(key, list) or len(key) != arity:
        raise UserError("`after` is not a cursor this API returned")
    return key


@strawberry.type(description="Where a page ends: pass `endCursor` as `after` for the next page.")
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type(description="A page of results, in a stable order.")
class Page(Generic[T]):
    nodes: list[T]
    page_info: PageInfo


# -- catalog --------------------------------------------------------------------------------------------


@strawberry.type(description="An OpenLineage namespace: a database server, a warehouse, a Kafka cluster, ...")
class Namespace:
    row: strawberry.Private[NamespaceRow]

    @strawberry.field
    def name(self) -> str:
        return self.row.name

    @described("Event time it was first seen.")
    def first_seen(self) -> dt.datetime:
        return self.row.first_seen

    @described("Event time it was last seen.")
    def last_seen(self) -> dt.datetime:
        return self.row.last_seen


@strawberry.type(description="An owner, from the OpenLineage ownership facet.")
class Owner:
    name: str
    type: str | None

    @classmethod
    def of(cls, row: OwnerRow) -> Owner:
        return cls(name=row.name, type=row.type)


@strawberry.type(description="A distinct schema a dataset was seen with.")
class DatasetVersion:
    row: strawberry.Private[VersionRow]
    # Columns redacted for the caller (a masked-columns-only grant, see catalog/policy/masking.py).
    redacted: strawberry.Private[frozenset[str]] = frozenset()

    @described("Stable id of the schema (derived from its digest).")
    def id(self) -> strawberry.ID:
        return strawberry.ID(version_uuid(self.row.schema_digest) or "")

    @strawberry.field
    def first_seen(self) -> dt.datetime:
        return self.row.first_seen

    @strawberry.field
    def last_seen(self) -> dt.datetime:
        return self.row.last_seen

    @described(
        "The schema's fields as the producer sent them (through a masked-columns-only grant, columns "
        "holding PII only by name, with `masked: true`)."
    )
    def fields(self) -> JSON:
        return JSON(redact_schema(self.row.fields, self.redacted))


def _known(product: str) -> str | None:
    return None if product == UNOWNED else product


def _parent_path(path: str, paths: set[str]) -> str | None:
    """The nearest ancestor of a dotted path that is itself a known field (None: top level). A nested
    field named only by column lineage may have no row for its parent; it then hangs off the nearest
    ancestor that has one, so no field is unreachable."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        candidate = ".".join(parts[:cut])
        if candidate in paths:
            return candidate
    return None


def _children(
    fields: list[FieldRow], parent: str | None, redacted: frozenset[str] = frozenset()
) -> list[DatasetField]:
    paths = {f.path for f in fields}
    return [DatasetField(row=f, redacted=redacted) for f in fields if _parent_path(f.path, paths) == parent]


@strawberry.type(description="A column; nested fields are addressed by dotted paths (`address.city`).")
class DatasetField:
    row: strawberry.Private[FieldRow]
    # The redaction set of its dataset for the caller (a masked-columns-only grant, see
    # catalog/policy/masking.py); this field is redacted when it or a field it is nested under is in it.
    redacted: strawberry.Private[frozenset[str]] = frozenset()

    @described("The dotted path from the top of the schema.")
    def path(self) -> str:
        return self.row.path

    @described("The last segment of the path.")
    def name(self) -> str:
        return self.row.path.rsplit(".", 1)[-1]

    @described("Null when `masked`.")
    def type(self) -> str | None:
        return None if self.is_masked else self.row.type

    @described("Null when `masked`, or when it names a column that is (as REST's field list does).")
    def description(self) -> str | None:
        if self.is_masked or names_redacted(self.row.description, self.redacted):
            return None
        return self.row.description

    @described(
        "True when read through a masked-columns-only grant and the column holds PII (an effective, "
        "unmasked classification): it is listed by name only, its details are hidden."
    )
    def masked(self) -> bool:
        return self.is_masked

    @property
    def is_masked(self) -> bool:
        return is_redacted(self.row.path, self.redacted)

    @strawberry.field
    def first_seen(self) -> dt.datetime:
        return self.row.first_seen

    @strawberry.field
    def last_seen(self) -> dt.datetime:
        return self.row.last_seen

    @described("The fields nested directly under this one.")
    async def children(self, info: Info) -> list[DatasetField]:
        fields = await info.context.loaders.fields.load(self.row.dataset_id)
        return _children(fields, self.row.path, self.redacted)

    @described("The dataset the field belongs to.")
    async def dataset(self, info: Info) -> Dataset:
        row = await info.context.loaders.dataset_by_id.load(self.row.dataset_id)
        assert row is not None  # a field's dataset exists (foreign key)
        return Dataset(row=row)

    @described(
        "Effective PII classifications (manual > declared > detected > propagated), with source, "
        "confidence and, when propagated, the path. Internals (see `Dataset.fields`)."
    )
    async def classifications(self, info: Info) -> list[Classification] | None:
        row = await info.context.loaders.dataset_by_id.load(self.row.dataset_id)
        assert row is not None  # a field's dataset exists (foreign key)
        await internals(info, "dataset", row)
        if self.is_masked:  # its tags are its details (catalog/policy/masking.py)
            return []
        found = await info.context.loaders.classifications.load(self.row.dataset_id)
        mine = [c for c in found if c["field"] == self.row.path]
        # A propagation path crosses datasets: hops the caller may not see show as their dataset.
        paths = await info.context.authz.columns_as_seen([c.get("path") for c in mine])
        return [Classification.of({**c, "path": p}) for c, p in zip(mine, paths, strict=True)]


@strawberry.type(description="A table, topic, file or view that jobs read and write.")
class Dataset:
    row: strawberry.Private[DatasetRow]

    @described("`dataset:{namespace}:{name}`, as in lineage graphs.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(f"dataset:{self.row.namespace}:{self.row.name}")

    @strawberry.field
    def namespace(self) -> str:
        return self.row.namespace

    @strawberry.field
    def name(self) -> str:
        return self.row.name

    @strawberry.field
    def first_seen(self) -> dt.datetime:
        return self.row.first_seen

    @strawberry.field
    def last_seen(self) -> dt.datetime:
        return self.row.last_seen

    @described("From the documentation facet.")
    async def description(self, info: Info) -> str | None:
        doc = (await info.context.loaders.facets.load(("dataset", self.row.id))).get("documentation")
        return doc.get("description") if isinstance(doc, dict) else None

    @described("The product that owns it (stored assignment or products.yaml); null when none does.")
    async def product(self, info: Info) -> str | None:
        return _known(await info.context.authz.product("dataset", self.row.namespace, self.row.name))

    @described("The tier of its namespace (oltp, analytics, stream, file, api) per products.yaml.")
    def tier(self, info: Info) -> str | None:
        return info.context.authz.tier(self.row.namespace)

    @described(
        "From the dataSource facet (credentials were redacted at ingest). Internals: another "
        "product's need a grant (null with a FORBIDDEN error)."
    )
    async def source_uri(self, info: Info) -> str | None:
        await internals(info, "dataset", self.row)
        source = (await info.context.loaders.facets.load(("dataset", self.row.id))).get("dataSource")
        return source.get("uri") if isinstance(source, dict) else None

    @described(
        "Top-level fields, or with `path` the fields nested directly under that field. Internals: "
        "another product's need a grant (null with a FORBIDDEN error)."
    )
    async def fields(self, info: Info, path: str | None = None) -> list[DatasetField] | None:
        await internals(info, "dataset", self.row)
        redacted = await info.context.authz.redacted_columns(self.row.namespace, self.row.name)
        return _children(await info.context.loaders.fields.load(self.row.id), path, redacted)

    @described("One field by its dotted path. Internals (see `fields`).")
    async def field(self, info: Info, path: str) -> DatasetField | None:
        await internals(info, "dataset", self.row)
        redacted = await info.context.authz.redacted_columns(self.row.namespace, self.row.name)
        found = [f for f in await info.context.loaders.fields.load(self.row.id) if f.path == path]
        return DatasetField(row=found[0], redacted=redacted) if found else None

    @strawberry.field
    async def owners(self, info: Info) -> list[Owner]:
        return [Owner.of(o) for o in await info.context.loaders.owners.load(("dataset", self.row.id))]

    @described("Schema versions, newest (current) first. Internals (see `fields`).")
    async def versions(self, info: Info, first: int = 10) -> list[DatasetVersion] | None:
        await internals(info, "dataset", self.row)
        redacted = await info.context.authz.redacted_columns(self.row.namespace, self.row.name)
        rows = await info.context.loaders.versions.load((self.row.id, page_size(info, first)))
        return [DatasetVersion(row=v, redacted=redacted) for v in rows]

    @described("Jobs that write this dataset.")
    async def producers(self, info: Info) -> list[Job]:
        return [Job(row=j) for j in await info.context.loaders.jobs_of_dataset.load((self.row.id, "output"))]

    @described("Jobs that read this dataset.")
    async def consumers(self, info: Info) -> list[Job]:
        return [Job(row=j) for j in await info.context.loaders.jobs_of_dataset.load((self.row.id, "input"))]

    @described("The current facets by name (removed facets left out). Internals (see `fields`).")
    async def facets(self, info: Info) -> JSON | None:
        await internals(info, "dataset", self.row)
        redacted = await info.context.authz.redacted_columns(self.row.namespace, self.row.name)
        facets = await info.context.loaders.facets.load(("dataset", self.row.id))
        return JSON(redact_facets(facets, redacted) if redacted else facets)

    @described(
        "Whether any of its fields (or the dataset itself) holds PII: an effective, unmasked "
        "classification. Internals (see `fields`)."
    )
    async def has_pii(self, info: Info) -> bool | None:
        await internals(info, "dataset", self.row)
        found = await info.context.loaders.classifications.load(self.row.id)
        return any(c["status"] == "pii" for c in found)


@strawberry.type(description="A pipeline step (an Airflow task, a Spark application, a dbt model, ...).")
class Job:
    row: strawberry.Private[JobRow]

    @described("`job:{namespace}:{name}`, as in lineage graphs.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(f"job:{self.row.namespace}:{self.row.name}")

    @strawberry.field
    def namespace(self) -> str:
        return self.row.namespace

    @strawberry.field
    def name(self) -> str:
        return self.row.name

    @strawberry.field
    def first_seen(self) -> dt.datetime:
        return self.row.first_seen

    @strawberry.field
    def last_seen(self) -> dt.datetime:
        return self.row.last_seen

    @described("The product that owns it (stored assignment or products.yaml); null when none does.")
    async def product(self, info: Info) -> str | None:
        return _known(await info.context.authz.product("job", self.row.namespace, self.row.name))

    @described("Datasets the job reads.")
    async def inputs(self, info: Info) -> list[Dataset]:
        return [
            Dataset(row=d) for d in await info.context.loaders.datasets_of_job.load((self.row.id, "input"))
        ]

    @described("Datasets the job writes.")
    async def outputs(self, info: Info) -> list[Dataset]:
        return [
            Dataset(row=d) for d in await info.context.loaders.datasets_of_job.load((self.row.id, "output"))
        ]

    @strawberry.field
    async def owners(self, info: Info) -> list[Owner]:
        return [Owner.of(o) for o in await info.context.loaders.owners.load(("job", self.row.id))]

    @described(
        "The current facets by name (removed facets left out). Internals: another product's need "
        "its steward's grant (null with a FORBIDDEN error)."
    )
    async def facets(self, info: Info) -> JSON | None:
        await internals(info, "job", self.row)
        return JSON(await info.context.loaders.facets.load(("job", self.row.id)))

    @described("Runs, newest first. Internals (see `facets`).")
    async def runs(self, info: Info, first: int = 20, after: str | None = None) -> Page[Run] | None:
        limit = page_size(info, first)
        await internals(info, "job", self.row)
        key: tuple[dt.datetime, int] | None = None
        if after is not None:
            raw_time, raw_id = decode_cursor(after, 2)
            try:
                key = (dt.datetime.fromisoformat(str(raw_time)), int(raw_id))
            except (TypeError, ValueError) as exc:
                raise UserError("`after` is not a cursor this API returned") from exc
        # One row more than asked tells whether there is a next page without a count.
        rows = await info.context.loaders.runs.load((self.row.id, limit + 1, key))
        more = len(rows) > limit
        rows = rows[:limit]
        end = encode_cursor(rows[-1].first_seen.isoformat(), rows[-1].id) if rows else None
        return Page(nodes=[Run(row=r) for r in rows], page_info=PageInfo(has_next_page=more, end_cursor=end))


@strawberry.type(description="One execution of a job.")
class Run:
    row: strawberry.Private[RunRow]

    @described("The OpenLineage run id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(str(self.row.run_uuid))

    @described("START, RUNNING, COMPLETE, FAIL, ABORT or OTHER (NEW if unknown).")
    def state(self) -> str:
        return self.row.state or "NEW"

    @strawberry.field
    def started_at(self) -> dt.datetime | None:
        return self.row.started_at

    @described("When it completed, failed or was aborted (null while running).")
    def ended_at(self) -> dt.datetime | None:
        return self.row.state_time if self.row.state_rank == TERMINAL_RANK else None

    @strawberry.field
    def first_seen(self) -> dt.datetime:
        return self.row.first_seen

    @strawberry.field
    def last_seen(self) -> dt.datetime:
        return self.row.last_seen

    @strawberry.field
    def parent_run_id(self) -> strawberry.ID | None:
        return strawberry.ID(str(self.row.parent_run_uuid)) if self.row.parent_run_uuid else None

    @strawberry.field
    async def job(self, info: Info) -> Job:
        row = await info.context.loaders.job_by_id.load(self.row.job_id)
        assert row is not None  # a run's job exists (foreign key)
        return Job(row=row)

    @described("The current run facets by name.")
    async def facets(self, info: Info) -> JSON:
        return JSON(await info.context.loaders.facets.load(("run", self.row.id)))


SearchResult = Annotated[
    Dataset | Job | DatasetField,
    strawberry.union("SearchResult", description="A dataset, a job or a field matching a search."),
]


# -- lineage --------------------------------------------------------------------------------------------


@strawberry.enum(description="Which way to walk the graph from the node.")
class LineageDirection(enum.Enum):
    UPSTREAM = "UPSTREAM"
    DOWNSTREAM = "DOWNSTREAM"
    BOTH = "BOTH"


@strawberry.enum
class NodeKind(enum.Enum):
    DATASET = "dataset"
    JOB = "job"


@strawberry.input(description="A dataset or a job by its OpenLineage namespace and name.")
class NodeInput:
    kind: NodeKind
    namespace: str
    name: str


@strawberry.type(description="A dataset or a job in a lineage graph.")
class LineageNode:
    id: strawberry.ID
    kind: NodeKind
    namespace: str
    name: str

    @described("The dataset, when the node is one.")
    async def dataset(self, info: Info) -> Dataset | None:
        if self.kind is not NodeKind.DATASET:
            return None
        row = await info.context.loaders.dataset_by_name.load((self.namespace, self.name))
        return Dataset(row=row) if row else None

    @described("The job, when the node is one.")
    async def job(self, info: Info) -> Job | None:
        if self.kind is not NodeKind.JOB:
            return None
        row = await info.context.loaders.job_by_name.load((self.namespace, self.name))
        return Job(row=row) if row else None


@strawberry.type(description="origin → destination: a job reading a dataset, or writing one.")
class LineageEdge:
    origin: strawberry.ID
    destination: strawberry.ID
    first_seen: dt.datetime
    last_seen: dt.datetime


@strawberry.type
class LineageGraph:
    root: strawberry.ID
    nodes: list[LineageNode]
    edges: list[LineageEdge]


@strawberry.type(description="A column (or a whole dataset, when `field` is null) in a column lineage graph.")
class ColumnNode:
    id: strawberry.ID
    namespace: str
    dataset: str
    field: str | None


@strawberry.type(description="A column flowing into another, with the OpenLineage transformation.")
class ColumnLineageEdge:
    origin: strawberry.ID
    destination: strawberry.ID
    transformation_type: str = strawberry.field(description="DIRECT or INDIRECT.")
    transformation_subtype: str = strawberry.field(
        description="IDENTITY, TRANSFORMATION, AGGREGATION, JOIN, FILTER, ..."
    )
    masking: bool
    description: str | None
    job_namespace: str | None
    job_name: str | None
    first_seen: dt.datetime
    last_seen: dt.datetime


@strawberry.type
class ColumnLineageGraph:
    root: strawberry.ID
    nodes: list[ColumnNode]
    edges: list[ColumnLineageEdge]
