"""The sans-IO core shared by the sync and async clients: every endpoint the client calls (one registry,
checked against the OpenAPI document by a test), request building, answer parsing, paging and the retry
schedule. Nothing here performs I/O; `client.py` only moves bytes."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, TypeAdapter

from catalog_client import models as m
from catalog_client.errors import GraphQLError, error_for

T = TypeVar("T")
ParamValue = str | int | float | bool | dt.datetime | None

# -- the endpoint registry -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One operation of the service as the client uses it.

    `response`: the model the client parses the 200 body into (for listings: the item model, found under
    `list_key`); `schema`: the OpenAPI component that types that body, or None where the document leaves
    the body an untyped object (the drift test fails if it becomes typed, so the mapping gets added).
    """

    method: str
    path: str  # the OpenAPI path template
    query: tuple[str, ...] = ()
    response: type[BaseModel] | None = None
    list_key: str | None = None
    schema: str | None = None
    body: type[BaseModel] | None = None
    body_schema: str | None = None
    graphql: bool = False
    # Whether sending it twice does what sending it once does (safe to retry when the answer was lost).
    # None: by method (GET, HEAD, PUT, DELETE, OPTIONS are; POST is not).
    idempotent: bool | None = None

    @property
    def is_idempotent(self) -> bool:
        return self.idempotent if self.idempotent is not None else self.method in IDEMPOTENT_METHODS


IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
ENDPOINTS: dict[str, Endpoint] = {}


def _ep(name: str, method: str, path: str, **kwargs: Any) -> Endpoint:
    endpoint = Endpoint(method, path, **kwargs)
    ENDPOINTS[name] = endpoint
    return endpoint


PAGE = ("limit", "offset")
NAMESPACES = _ep(
    "namespaces", "GET", "/api/v1/namespaces", query=PAGE, response=m.Namespace, list_key="namespaces"
)
NAMESPACE = _ep("namespace", "GET", "/api/v1/namespaces/{namespace}", response=m.Namespace)
DATASETS = _ep(
    "datasets",
    "GET",
    "/api/v1/namespaces/{namespace}/datasets",
    query=PAGE,
    response=m.Dataset,
    list_key="datasets",
)
DATASET = _ep("dataset", "GET", "/api/v1/namespaces/{namespace}/datasets/{dataset}", response=m.Dataset)
DATASET_VERSIONS = _ep(
    "dataset_versions",
    "GET",
    "/api/v1/namespaces/{namespace}/datasets/{dataset}/versions",
    query=PAGE,
    response=m.DatasetVersion,
    list_key="versions",
)
JOBS = _ep("jobs", "GET", "/api/v1/namespaces/{namespace}/jobs", query=PAGE, response=m.Job, list_key="jobs")
JOB = _ep("job", "GET", "/api/v1/namespaces/{namespace}/jobs/{job}", response=m.Job)
RUNS = _ep(
    "runs",
    "GET",
    "/api/v1/namespaces/{namespace}/jobs/{job}/runs",
    query=PAGE,
    response=m.Run,
    list_key="runs",
)
RUN = _ep("run", "GET", "/api/v1/jobs/runs/{run_id}", response=m.Run)
EVENTS = _ep(
    "events",
    "GET",
    "/api/v1/events/lineage",
    query=("before", "after", "sortDirection", *PAGE),
    response=m.LineageEvent,
    list_key="events",
)
LINEAGE = _ep(
    "lineage",
    "GET",
    "/api/v1/lineage",
    query=("nodeId", "depth", "asOf", "direction"),
    response=m.LineageGraph,
)
COLUMN_LINEAGE = _ep(
    "column_lineage",
    "GET",
    "/api/v1/column-lineage",
    query=("nodeId", "depth", "withDownstream", "asOf"),
    response=m.ColumnLineageGraph,
)
SEARCH = _ep(
    "search",
    "GET",
    "/api/v1/search",
    query=("q", "filter", "sort", "limit", "namespace"),
    response=m.SearchResults,
)
TAGS = _ep("tags", "GET", "/api/v1/tags", query=PAGE, response=m.Tag, list_key="tags")
TAG_DATASET = _ep(
    "tag_dataset", "POST", "/api/v1/namespaces/{namespace}/datasets/{dataset}/tags/{tag}", response=m.Dataset
)
UNTAG_DATASET = _ep(
    "untag_dataset",
    "DELETE",
    "/api/v1/namespaces/{namespace}/datasets/{dataset}/tags/{tag}",
    response=m.Dataset,
)
TAG_FIELD = _ep(
    "tag_field",
    "POST",
    "/api/v1/namespaces/{namespace}/datasets/{dataset}/fields/{field}/tags/{tag}",
    response=m.Dataset,
)
UNTAG_FIELD = _ep(
    "untag_field",
    "DELETE",
    "/api/v1/namespaces/{namespace}/datasets/{dataset}/fields/{field}/tags/{tag}",
    response=m.Dataset,
)
CLASSIFICATIONS = _ep(
    "classifications",
    "GET",
    "/api/v1/classifications",
    query=("namespace", "dataset", "field"),
    response=m.Classification,
    list_key="classifications",
)
DECISIONS = _ep(
    "decisions",
    "GET",
    "/api/v1/classifications/decisions",
    query=("namespace", "dataset", "includeRetired", *PAGE),
    response=m.Decision,
    list_key="decisions",
)
RECORD_DECISION = _ep(
    "record_decision",
    "POST",
    "/api/v1/classifications/decisions",
    response=m.Decision,
    body=m.DecisionIn,
    body_schema="DecisionIn",
)
RETIRE_DECISION = _ep(
    "retire_decision", "DELETE", "/api/v1/classifications/decisions/{decision_id}", response=m.Decision
)
PII_INVENTORY = _ep(
    "pii_inventory",
    "GET",
    "/api/v1/pii/inventory",
    query=("namespace", "product", "tier", "asOf", *PAGE),
    response=m.Classification,
    list_key="fields",
)
PII_FLOW = _ep(
    "pii_flow",
    "GET",
    "/api/v1/pii/flow",
    query=("namespace", "dataset", "field", "depth"),
    response=m.PiiFlow,
)
FINDINGS = _ep(
    "findings",
    "GET",
    "/api/v1/findings",
    query=("product", "rule", "severity", "status", *PAGE),
    response=m.Finding,
    list_key="findings",
    schema="FindingsPage",
)
FINDINGS_SUMMARY = _ep(
    "findings_summary",
    "GET",
    "/api/v1/findings/summary",
    query=("product",),
    response=m.FindingsSummary,
    schema="FindingsSummaryOut",
)
FINDING = _ep("finding", "GET", "/api/v1/findings/{finding_id}", response=m.Finding, schema="FindingOut")
DATASET_FINDINGS = _ep(
    "dataset_findings",
    "GET",
    "/api/v1/findings/datasets/{namespace}/{dataset}",
    query=("status",),
    response=m.Finding,
    list_key="findings",
    schema="FindingsPage",
)
JOB_FINDINGS = _ep(
    "job_findings",
    "GET",
    "/api/v1/findings/jobs/{namespace}/{job}",
    query=("status",),
    response=m.Finding,
    list_key="findings",
    schema="FindingsPage",
)
WAIVE = _ep(
    "waive",
    "POST",
    "/api/v1/findings/{finding_id}/waive",
    response=m.Finding,
    schema="FindingOut",
    body=m.WaiverIn,
    body_schema="WaiverIn",
)
UNWAIVE = _ep(
    "unwaive",
    "POST",
    "/api/v1/findings/{finding_id}/unwaive",
    response=m.Finding,
    schema="FindingOut",
    body=m.UnwaiveIn,
    body_schema="UnwaiveIn",
)
GRANTS = _ep(
    "grants",
    "GET",
    "/api/v1/grants",
    query=("product", "includeRevoked"),
    response=m.Grant,
    list_key="grants",
)
CREATE_GRANT = _ep(
    "create_grant", "POST", "/api/v1/grants", response=m.Grant, body=m.GrantIn, body_schema="GrantIn"
)
REVOKE_GRANT = _ep("revoke_grant", "DELETE", "/api/v1/grants/{grant_id}", response=m.Grant)
# The service stores an event once (keyed by event time and a digest of its content): a POST sent again
# answers `duplicate`, so retrying one whose answer was lost is safe.
INGEST = _ep(
    "ingest",
    "POST",
    "/api/v1/lineage",
    query=("wait",),
    response=m.IngestResult,
    schema="IngestResult",
    idempotent=True,
)
SIGNING_KEYS = _ep(
    "signing_keys", "GET", "/api/v1/signing-keys", response=m.SigningKeys, schema="SigningKeysOut"
)
EXPORT = _ep("export", "GET", "/api/v1/exports", query=("asOf", "from", "to", "product"))
# Only queries are sent through it by this client (no mutation): reads, safe to retry.
GRAPHQL = _ep("graphql", "POST", "/graphql", graphql=True, idempotent=True)

# -- calls ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """A request ready to send, and how to read its answer."""

    endpoint: Endpoint
    path: str
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    parse: Callable[[Any], T] = field(default=lambda body: body)

    @property
    def method(self) -> str:
        return self.endpoint.method

    @property
    def idempotent(self) -> bool:
        return self.endpoint.is_idempotent


def segment(value: str) -> str:
    """A name as one path segment: OpenLineage names hold `/` and `:` (`postgres://db:5432`), and the
    service keeps an encoded `/` (and `%`) intact through routing, decoding it in the handler."""
    return quote(value, safe="")


def query_value(value: ParamValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"{value!r} needs a time zone: the catalog does not guess one")
        return value.isoformat()
    return str(value)


def build(
    endpoint: Endpoint,
    parse: Callable[[Any], T],
    *,
    path: Mapping[str, str] | None = None,
    params: Mapping[str, ParamValue] | None = None,
    json: Any = None,
) -> Call[T]:
    unknown = set(params or {}) - set(endpoint.query)
    if unknown:  # a programming error in this package, caught by the tests
        raise ValueError(f"{endpoint.method} {endpoint.path} takes no query parameter {sorted(unknown)}")
    concrete = endpoint.path.format(**{k: segment(v) for k, v in (path or {}).items()})
    query = {k: query_value(v) for k, v in (params or {}).items() if v is not None}
    return Call(endpoint, concrete, query, json, parse)


def model(cls: type[T]) -> Callable[[Any], T]:
    adapter = TypeAdapter(cls)
    return adapter.validate_python


def items(cls: type[T], key: str) -> Callable[[Any], list[T]]:
    adapter = TypeAdapter(list[cls])  # type: ignore[valid-type]
    return lambda body: adapter.validate_python(body[key])


def raw(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise TypeError(f"expected a JSON object, got {type(body).__name__}")
    return body


def body_of(endpoint: Endpoint, payload: BaseModel) -> dict[str, Any]:
    assert endpoint.body is not None
    assert isinstance(payload, endpoint.body)
    return payload.model_dump(mode="json", by_alias=True, exclude_none=True)


# -- pages ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pager(Generic[T]):
    """How to walk a listing: the first call, and the call after a given page (None: the last page)."""

    first: Call[m.Page[T]]
    follow: Callable[[m.Page[T]], Call[m.Page[T]] | None]


def offset_pager(
    endpoint: Endpoint,
    *,
    path: Mapping[str, str] | None = None,
    params: Mapping[str, ParamValue] | None = None,
    page_size: int = 100,
) -> Pager[Any]:
    """Limit/offset listings (`{list_key: [...], "totalCount": n}`): follow until a short page or the total."""
    assert endpoint.response is not None
    assert endpoint.list_key is not None
    parse_items = items(endpoint.response, endpoint.list_key)

    def call_at(offset: int) -> Call[m.Page[Any]]:
        def parse(body: Any) -> m.Page[Any]:
            total = body.get("totalCount")
            return m.Page(parse_items(body), int(total) if total is not None else None, offset)

        return build(
            endpoint, parse, path=path, params={**(params or {}), "limit": page_size, "offset": offset}
        )

    def follow(page: m.Page[Any]) -> Call[m.Page[Any]] | None:
        after = page.offset + len(page.items)
        if len(page.items) < page_size or (page.total is not None and after >= page.total):
            return None
        return call_at(after)

    return Pager(call_at(0), follow)


# -- GraphQL -------------------------------------------------------------------------------------------

GQL_DATASETS = """
query Datasets($namespace: String, $search: String, $first: Int!, $after: String) {
  datasets(namespace: $namespace, search: $search, first: $first, after: $after) {
    nodes { id namespace name description sourceUri owners { name type } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

GQL_FIELD_SELECTION = "path name type description firstSeen lastSeen"
GQL_FIELDS = f"""
query Fields($namespace: String!, $name: String!, $path: String) {{
  dataset(namespace: $namespace, name: $name) {{
    fields(path: $path) {{ {GQL_FIELD_SELECTION} children {{ {GQL_FIELD_SELECTION} }} }}
  }}
}}
"""

GQL_QUERIES = {"datasets": GQL_DATASETS, "fields": GQL_FIELDS}


def graphql(query: str, variables: Mapping[str, Any], parse: Callable[[dict[str, Any]], T]) -> Call[T]:
    def read(body: Any) -> T:
        if not isinstance(body, dict):
            raise GraphQLError([{"message": "the answer is not a JSON object"}])
        if body.get("errors"):
            raise GraphQLError(list(body["errors"]))
        return parse(body.get("data") or {})

    return build(GRAPHQL, read, json={"query": query, "variables": dict(variables)})


def graphql_datasets_pager(namespace: str | None, search: str | None, page_size: int) -> Pager[m.GqlDataset]:
    adapter = TypeAdapter(list[m.GqlDataset])

    def call_after(cursor: str | None) -> Call[m.Page[m.GqlDataset]]:
        def parse(data: dict[str, Any]) -> m.Page[m.GqlDataset]:
            page = data["datasets"]
            info = page["pageInfo"]
            return m.Page(
                adapter.validate_python(page["nodes"]),
                cursor=info.get("endCursor"),
                has_next=bool(info.get("hasNextPage")),
            )

        variables = {"namespace": namespace, "search": search, "first": page_size, "after": cursor}
        return graphql(GQL_DATASETS, variables, parse)

    def follow(page: m.Page[m.GqlDataset]) -> Call[m.Page[m.GqlDataset]] | None:
        return call_after(page.cursor) if page.has_next and page.cursor else None

    return Pager(call_after(None), follow)


def graphql_fields(namespace: str, dataset: str, path: str | None) -> Call[list[m.GqlField] | None]:
    adapter = TypeAdapter(list[m.GqlField])

    def parse(data: dict[str, Any]) -> list[m.GqlField] | None:
        found = data.get("dataset")
        return adapter.validate_python(found["fields"]) if found is not None else None

    return graphql(GQL_FIELDS, {"namespace": namespace, "name": dataset, "path": path}, parse)


# -- answers and retries -------------------------------------------------------------------------------


def read_answer(call: Call[T], status: int, headers: Mapping[str, str], content: bytes) -> T:
    """The parsed body of a successful answer; the mapped exception otherwise."""
    if 200 <= status < 300:
        return call.parse(json.loads(content) if content else None)
    raise error_for(status, content, retry_after(headers))


def retry_after(headers: Mapping[str, str], now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date), None when absent."""
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries for 429 and 503 answers (the server did not act on the request), for 502 and 504 answers
    and connection failures of idempotent calls (a gateway or a lost connection leaves unknown whether
    the server acted): exponential backoff with jitter, or exactly the server's `Retry-After` when it
    sends one (capped by `max_delay`)."""

    retries: int = 3
    backoff: float = 0.5
    max_delay: float = 30.0
    statuses: frozenset[int] = frozenset({429, 503})
    idempotent_statuses: frozenset[int] = frozenset({502, 503, 504})

    def delay(
        self,
        attempt: int,
        status: int | None,
        headers: Mapping[str, str] | None = None,
        *,
        idempotent: bool = False,
    ) -> float | None:
        """How long to wait before attempt `attempt + 1` (attempt counts from 0), or None: do not retry.
        `status` None means the request failed to connect or timed out (the caller decides whether
        that failure is retryable for its call)."""
        if attempt >= self.retries:
            return None
        retryable = self.statuses | (self.idempotent_statuses if idempotent else frozenset())
        if status is not None and status not in retryable:
            return None
        told = retry_after(headers or {}) if status is not None else None
        if told is not None:
            return min(told, self.max_delay)
        base = self.backoff * (2**attempt)
        return float(min(base + random.uniform(0, base / 2), self.max_delay))


NO_RETRY = RetryPolicy(retries=0)


# -- read-your-writes -----------------------------------------------------------------------------------
LSN_HEADER = "Catalog-LSN"
# A log position: ingest answers carry it; a request sending it back is served once the catalog's
# projector has folded the log that far (bounded by the service), so the client reads its own events.
POSITION_HEADER = "Catalog-Position"


def _lsn_value(lsn: str) -> int | None:
    """A PostgreSQL WAL position ("16/B374D848") as a number, None when it is not one."""
    high, sep, low = lsn.strip().partition("/")
    try:
        return (int(high, 16) << 32) | int(low, 16) if sep else None
    except ValueError:
        return None


class WritePosition:
    """The furthest `Catalog-LSN` and `Catalog-Position` this client's writes were answered with, both sent
    back on every request (read-your-writes, on by default).

    `Catalog-Position`: an ingest is answered once the event is in the event log and projected moments
    later; a request carrying the position is served once the projection has passed it. `Catalog-LSN`: a
    service with read replicas serves a request carrying it no older than that write (waiting a bounded
    time for the replica, else reading the primary). Either way the client reads its own writes whichever
    service process or replica answers.
    """

    def __init__(self) -> None:
        self._lsn: str | None = None
        self._value = -1
        self.position = 0  # the furthest log position of this client's ingests (0: none yet)

    @property
    def lsn(self) -> str | None:
        return self._lsn

    def observe(self, headers: Mapping[str, str]) -> None:
        lsn = headers.get(LSN_HEADER)
        value = _lsn_value(lsn) if lsn else None
        if lsn and value is not None and value > self._value:
            self._lsn, self._value = lsn.strip(), value
        position = (headers.get(POSITION_HEADER) or "").strip()
        if position.isdigit() and int(position) > self.position:
            self.position = int(position)

    def headers(self) -> dict[str, str]:
        sent = {LSN_HEADER: self._lsn} if self._lsn else {}
        if self.position:
            sent[POSITION_HEADER] = str(self.position)
        return sent
