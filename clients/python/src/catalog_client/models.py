"""Typed answers of the catalog. Unknown keys are kept (`extra="allow"`), so a newer server never breaks
an older client; the fields declared here are checked against the committed OpenAPI document by
tests/client/test_drift.py and parsed from the live service by the other client tests."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

T = TypeVar("T")


class Model(BaseModel):
    """Attributes named as on the wire (or aliased to it field by field)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)


class CamelModel(Model):
    """Marquez-shaped answers: camelCase on the wire, snake_case attributes."""

    model_config = ConfigDict(alias_generator=to_camel, extra="allow", populate_by_name=True, frozen=True)


# -- catalog (Marquez-compatible) ----------------------------------------------------------------------


class Namespace(CamelModel):
    name: str
    created_at: dt.datetime
    updated_at: dt.datetime
    owner_name: str | None = None
    description: str | None = None


class DatasetId(CamelModel):
    namespace: str
    name: str


class DatasetField(CamelModel):
    """A field of a dataset's current schema, flattened (`address.city`), with its effective tags."""

    name: str
    type: str | None = None
    tags: list[str] = []
    description: str | None = None


class Dataset(CamelModel):
    id: DatasetId
    type: str
    name: str
    namespace: str
    physical_name: str
    created_at: dt.datetime
    updated_at: dt.datetime
    source_name: str | None = None
    source_uri: str | None = None
    fields: list[DatasetField] = []
    tags: list[str] = []
    description: str | None = None
    current_version: str | None = None
    last_modified_at: dt.datetime | None = None
    last_lifecycle_state: str | None = None
    facets: dict[str, Any] = {}
    deleted: bool = False


class DatasetVersion(CamelModel):
    version: str
    name: str
    namespace: str
    created_at: dt.datetime
    updated_at: dt.datetime
    fields: list[DatasetField] = []
    facets: dict[str, Any] = {}


class JobVersionRef(CamelModel):
    namespace: str
    name: str


class ParentRun(CamelModel):
    id: str
    job_namespace: str | None = None
    job_name: str | None = None


class Run(CamelModel):
    id: str
    state: str
    created_at: dt.datetime
    updated_at: dt.datetime
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    duration_ms: int | None = None
    nominal_start_time: str | None = None
    nominal_end_time: str | None = None
    job_version: JobVersionRef
    parent_run: ParentRun | None = None
    facets: dict[str, Any] = {}


class Job(CamelModel):
    id: DatasetId
    type: str
    name: str
    simple_name: str
    namespace: str
    created_at: dt.datetime
    updated_at: dt.datetime
    inputs: list[DatasetId] = []
    outputs: list[DatasetId] = []
    location: str | None = None
    description: str | None = None
    sql: str | None = None
    facets: dict[str, Any] = {}
    latest_run: Run | None = None


class LineageEvent(Model):
    """A stored OpenLineage event, as sent (the raw JSON is in the model's extra fields)."""

    event_type: str | None = Field(None, alias="eventType")
    event_time: str = Field(alias="eventTime")
    run: dict[str, Any] = {}
    job: dict[str, Any] = {}


# -- lineage -------------------------------------------------------------------------------------------


class Edge(CamelModel):
    origin: str
    destination: str


class LineageNode(CamelModel):
    id: str
    type: Literal["DATASET", "JOB"]
    data: dict[str, Any]
    in_edges: list[Edge]
    out_edges: list[Edge]


class LineageGraph(CamelModel):
    graph: list[LineageNode]

    def node(self, node_id: str) -> LineageNode | None:
        return next((n for n in self.graph if n.id == node_id), None)


class ColumnRef(CamelModel):
    namespace: str
    dataset: str
    field: str | None = None
    transformation_type: str | None = None
    transformation_subtype: str | None = None
    transformation_description: str | None = None
    masking: bool | None = None


class ColumnData(CamelModel):
    namespace: str
    dataset: str
    field: str | None = None
    transformation_type: str | None = None
    transformation_description: str | None = None
    input_fields: list[ColumnRef] = []


class ColumnLineageNode(CamelModel):
    id: str
    type: Literal["DATASET_FIELD", "DATASET"]
    data: ColumnData
    in_edges: list[Edge]
    out_edges: list[Edge]


class ColumnLineageGraph(CamelModel):
    graph: list[ColumnLineageNode]

    def node(self, node_id: str) -> ColumnLineageNode | None:
        return next((n for n in self.graph if n.id == node_id), None)


class SearchResult(CamelModel):
    type: Literal["DATASET", "JOB"]
    name: str
    namespace: str
    node_id: str
    updated_at: dt.datetime | None = None


class SearchResults(CamelModel):
    total_count: int
    results: list[SearchResult]


class Tag(Model):
    name: str
    description: str | None = None


# -- classification / PII ------------------------------------------------------------------------------


class Classification(Model):
    namespace: str
    dataset: str
    field: str | None = None
    tag: str
    source: str
    category: str | None = None
    confidence: float
    status: str  # "pii" or "masked"
    depth: int | None = None
    path: list[str] | None = None
    rule: str | None = None
    product: str | None = None  # in the PII inventory: the dataset's product
    tier: str | None = None  # in the PII inventory: its namespace's tier


class FlowTag(Model):
    """A classification of a column on a PII flow (the column is the hop's end it is listed under)."""

    tag: str
    source: str
    category: str | None = None
    confidence: float
    status: str  # "pii" or "masked"
    depth: int | None = None
    path: list[str] | None = None
    rule: str | None = None


class FlowColumn(Model):
    namespace: str
    dataset: str
    field: str | None = None


class FlowOrigin(FlowColumn):
    classifications: list[FlowTag] = []


class FlowJob(Model):
    namespace: str
    name: str


class FlowTransformation(Model):
    type: str | None = None
    subtype: str | None = None
    masking: bool | None = None


class PiiHop(CamelModel):
    depth: int
    from_: FlowColumn = Field(alias="from")
    to: FlowColumn
    job: FlowJob | None = None
    transformation: FlowTransformation
    effect: str  # carries / masked / aggregated / influences
    masking_point: bool
    target_classifications: list[FlowTag] = []


class PiiFlow(CamelModel):
    """Where a column's value goes, hop by hop; hops the caller may not see are counted, not shown."""

    origin: FlowOrigin
    hops: list[PiiHop]
    omitted_hops: int = 0


class Decision(Model):
    id: int
    namespace: str
    dataset: str
    field: str | None = None
    tag: str
    action: str
    reason: str | None = None
    author: str | None = None
    decided_at: dt.datetime | None = Field(None, alias="decidedAt")
    retired_at: dt.datetime | None = Field(None, alias="retiredAt")
    retired_by: str | None = Field(None, alias="retiredBy")


class DecisionIn(Model):
    """The body of POST /classifications/decisions."""

    namespace: str
    dataset: str
    field: str | None = None
    tag: str
    action: Literal["add", "confirm", "reject"]
    reason: str | None = None


# -- governance ----------------------------------------------------------------------------------------


class Finding(CamelModel):
    id: int
    rule: str
    severity: str
    status: str
    subject_kind: str
    subject_key: str
    # {kind, namespace, name, field?, job?: {namespace, name}, direction?} and the same in words
    subject: dict[str, Any] = {}
    subject_display: str = ""
    product: str | None = None
    # The rule's own evidence, keys in camelCase as on the wire (`runId`, `eventTime`, `sourceProduct`).
    evidence: dict[str, Any] = {}
    first_seen: dt.datetime
    last_seen: dt.datetime
    status_changed_at: dt.datetime | None = None
    waived_by: str | None = None
    waiver_reason: str | None = None
    waived_until: dt.datetime | None = None


class ProductFindingsSummary(CamelModel):
    """One product's findings: counts by status, and the open ones by rule and by severity."""

    product: str | None = None
    status: dict[str, int] = {}
    open_by_rule: dict[str, int] = {}
    open_by_severity: dict[str, int] = {}


class FindingsSummary(Model):
    products: list[ProductFindingsSummary]

    def of(self, product: str | None) -> ProductFindingsSummary:
        for entry in self.products:
            if entry.product == product:
                return entry
        raise KeyError(product)


class Grant(CamelModel):
    id: int
    grantor_product: str
    grantee_product: str
    scope: str
    namespace: str
    name: str | None = None
    masked_only: bool
    reason: str
    expires_at: dt.datetime | None = None
    created_by: str | None = None
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None
    revoked_by: str | None = None


class GrantIn(CamelModel):
    """The body of POST /grants."""

    grantee_product: str
    scope: Literal["dataset", "namespace", "pattern"]
    namespace: str
    name: str | None = None
    masked_only: bool = False
    reason: str
    expires_at: dt.datetime | None = None
    grantor_product: str | None = None


class WaiverIn(Model):
    reason: str
    until: dt.datetime | None = None


class UnwaiveIn(Model):
    reason: str | None = None


# -- ingestion, audit ----------------------------------------------------------------------------------


class IngestResult(Model):
    status: Literal["created", "duplicate"]
    position: int | None = None  # its place in the event log (the client sends it back: read-your-writes)
    projected: bool | None = None  # asked to wait for projection: whether it happened in time


class SigningKey(CamelModel):
    key_id: str
    algorithm: str
    public_key: str  # the raw 32 bytes, base64
    public_key_pem: str
    created_at: dt.datetime
    retired_at: dt.datetime | None = None
    active: bool


class SigningKeys(Model):
    keys: list[SigningKey]

    def by_id(self, key_id: str) -> SigningKey:
        for key in self.keys:
            if key.key_id == key_id:
                return key
        raise KeyError(key_id)


class Problem(CamelModel):
    type: str
    title: str
    status: int
    detail: str | None = None
    pointer: str | None = None
    instance: str | None = None
    request_id: str | None = None


# -- GraphQL (where REST has no equivalent) ------------------------------------------------------------


class GqlField(Model):
    """A dataset field as GraphQL describes it: nested fields are reached through `children`."""

    path: str
    name: str
    type: str | None = None
    description: str | None = None
    first_seen: dt.datetime = Field(validation_alias=AliasChoices("firstSeen", "first_seen"))
    last_seen: dt.datetime = Field(validation_alias=AliasChoices("lastSeen", "last_seen"))
    children: list[GqlField] = []


class GqlOwner(Model):
    name: str
    type: str | None = None


class GqlDataset(Model):
    id: str
    namespace: str
    name: str
    description: str | None = None
    source_uri: str | None = Field(None, validation_alias=AliasChoices("sourceUri", "source_uri"))
    owners: list[GqlOwner] = []


# -- pages ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; iterating a client's `iter_*` method follows the pages for you."""

    items: list[T]
    total: int | None = None
    offset: int = 0
    cursor: str | None = None
    has_next: bool = False
