"""The central route table: every HTTP route's (object, action) and where its product domain comes from.

Keyed by (method, path template) exactly as the app declares them. Each route declares the same need in
its signature (`Requires(obj, act, domain)`, catalog/api/rest/requires.py), which is what runs; the
route-table test (tests/policy/test_matrix.py) fails when a route has no entry, an entry no route, or a
route's declaration differs from its entry — so this table is the one place to read who may call what.
Domain sources (each a finder in requires.py reading the route's own parameters):

- `global`: no product (catalog-wide lists; the role's ":other" form applies)
- `namespace` / `dataset` / `job`: the product of the path's namespace / dataset / job
- `run`: the product of the job of the path's run id
- `node`: the product of the `nodeId` query parameter (`dataset:<ns>:<name>` / `job:<ns>:<name>`)
- `query-dataset`: the dataset named by the `namespace` + `dataset` query parameters (else `own`)
- `body-dataset`: the dataset named by the JSON body's `namespace` + `dataset` members (else `own`)
- `decision`: the dataset of the classification decision in the path
- `product`: the `product` query parameter, else the caller's own product
- `finding` / `grant`: the product of the finding / the grantor of the grant in the path
- `own`: the caller's own product (the handler checks the body's product itself)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DomainSource = Literal[
    "global",
    "namespace",
    "dataset",
    "job",
    "run",
    "node",
    "query-dataset",
    "body-dataset",
    "decision",
    "product",
    "finding",
    "grant",
    "own",
]


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    obj: str
    act: str
    domain: DomainSource


V1 = "/api/v1"
NS = f"{V1}/namespaces/{{namespace}}"
DS = f"{NS}/datasets/{{dataset}}"

ROUTES: dict[tuple[str, str], RoutePolicy] = {
    # ingest: the route admits the caller; each event is then judged in its job's product domain.
    ("POST", f"{V1}/lineage"): RoutePolicy("lineage.event", "write", "own"),
    ("POST", f"{V1}/lineage/batch"): RoutePolicy("lineage.event", "write", "own"),
    # the calling key itself (id, name, role, product): every role, so a client can show what it may do
    ("GET", f"{V1}/me"): RoutePolicy("session", "read", "global"),
    # how far the projector is behind the log (counts and times only; no event content)
    ("GET", f"{V1}/ingest/status"): RoutePolicy("catalog.discover", "read", "global"),
    # Marquez-compatible reads
    ("GET", f"{V1}/namespaces"): RoutePolicy("catalog.discover", "read", "global"),
    ("GET", NS): RoutePolicy("catalog.discover", "read", "namespace"),
    # dataset pages carry columns: internals (another product needs a grant on the namespace)
    ("GET", f"{NS}/datasets"): RoutePolicy("catalog.internals", "read", "namespace"),
    ("GET", f"{NS}/datasets/{{dataset:path}}"): RoutePolicy("catalog.internals", "read", "dataset"),
    ("GET", f"{DS}/versions"): RoutePolicy("catalog.internals", "read", "dataset"),
    ("GET", f"{DS}/versions/{{version}}"): RoutePolicy("catalog.internals", "read", "dataset"),
    ("GET", f"{NS}/jobs"): RoutePolicy("catalog.discover", "read", "namespace"),
    ("GET", f"{NS}/jobs/{{job:path}}"): RoutePolicy("catalog.discover", "read", "job"),
    ("GET", f"{NS}/jobs/{{job}}/runs"): RoutePolicy("catalog.internals", "read", "job"),
    ("GET", f"{V1}/jobs/runs/{{run_id}}"): RoutePolicy("catalog.internals", "read", "run"),
    # The raw event log: auditors and admins read every event; engineers and stewards only events of
    # jobs whose internals they may read, every dataset in them by the per-dataset rule (an event of
    # one's own job carries the facets of every dataset it touches, other products' included).
    ("GET", f"{V1}/events/lineage"): RoutePolicy("events", "read", "global"),
    ("GET", f"{V1}/lineage"): RoutePolicy("catalog.internals", "read", "node"),
    ("GET", f"{V1}/column-lineage"): RoutePolicy("catalog.internals", "read", "node"),
    ("GET", f"{V1}/search"): RoutePolicy("catalog.discover", "read", "global"),
    # tags: a global vocabulary stewards maintain; tagging a dataset/field is classifying it
    ("GET", f"{V1}/tags"): RoutePolicy("catalog.discover", "read", "global"),
    ("PUT", f"{V1}/tags/{{tag}}"): RoutePolicy("tags", "write", "global"),
    ("POST", f"{DS}/tags/{{tag}}"): RoutePolicy("classification", "write", "dataset"),
    ("DELETE", f"{DS}/tags/{{tag}}"): RoutePolicy("classification", "write", "dataset"),
    ("POST", f"{DS}/fields/{{field}}/tags/{{tag}}"): RoutePolicy("classification", "write", "dataset"),
    ("DELETE", f"{DS}/fields/{{field}}/tags/{{tag}}"): RoutePolicy("classification", "write", "dataset"),
    # The rest of Marquez's reads (catalog/api/rest/marquez.py): every job (another product's by name,
    # inputs and outputs only), a run's facets (its job's internals), the event log by namespace and its
    # counts (the /events/lineage rule), sources (from the dataSource facets of datasets whose internals
    # the caller may read) and growth counts.
    ("GET", f"{V1}/jobs"): RoutePolicy("catalog.discover", "read", "global"),
    ("GET", f"{V1}/jobs/runs/{{run_id}}/facets"): RoutePolicy("catalog.internals", "read", "run"),
    ("GET", f"{V1}/events"): RoutePolicy("events", "read", "global"),
    ("GET", f"{V1}/events/{{namespace}}"): RoutePolicy("events", "read", "global"),
    ("GET", f"{V1}/sources"): RoutePolicy("catalog.discover", "read", "global"),
    ("GET", f"{V1}/sources/{{source}}"): RoutePolicy("catalog.discover", "read", "global"),
    ("GET", f"{V1}/stats/lineage-events"): RoutePolicy("events", "read", "global"),
    ("GET", f"{V1}/stats/jobs"): RoutePolicy("catalog.discover", "read", "global"),
    ("GET", f"{V1}/stats/datasets"): RoutePolicy("catalog.discover", "read", "global"),
    ("GET", f"{V1}/stats/sources"): RoutePolicy("catalog.discover", "read", "global"),
    # Marquez's writes answer 405 "send OpenLineage events": judged as the ingest they stand for, in the
    # product of what they name, so a caller who may ingest it is told how (others get the 403).
    ("PUT", NS): RoutePolicy("lineage.event", "write", "namespace"),
    ("DELETE", NS): RoutePolicy("lineage.event", "write", "namespace"),
    ("PUT", f"{V1}/sources/{{source}}"): RoutePolicy("lineage.event", "write", "global"),
    ("PUT", f"{NS}/datasets/{{dataset:path}}"): RoutePolicy("lineage.event", "write", "dataset"),
    ("DELETE", DS): RoutePolicy("lineage.event", "write", "dataset"),
    ("PUT", f"{NS}/jobs/{{job:path}}"): RoutePolicy("lineage.event", "write", "job"),
    ("DELETE", f"{NS}/jobs/{{job}}"): RoutePolicy("lineage.event", "write", "job"),
    ("POST", f"{NS}/jobs/{{job}}/runs"): RoutePolicy("lineage.event", "write", "job"),
    ("POST", f"{V1}/jobs/runs/{{run_id}}/{{action}}"): RoutePolicy("lineage.event", "write", "run"),
    ("POST", f"{NS}/jobs/{{job}}/tags/{{tag}}"): RoutePolicy("lineage.event", "write", "job"),
    ("PATCH", f"{NS}/jobs/{{job}}/tags/{{tag}}"): RoutePolicy("lineage.event", "write", "job"),
    ("DELETE", f"{NS}/jobs/{{job}}/tags/{{tag}}"): RoutePolicy("lineage.event", "write", "job"),
    # GraphQL: the endpoint admits any catalog user; each field/mutation calls `authorize` itself.
    ("GET", "/graphql"): RoutePolicy("graphql", "read", "global"),
    ("POST", "/graphql"): RoutePolicy("graphql", "read", "global"),
    ("WEBSOCKET", "/graphql"): RoutePolicy("graphql", "read", "global"),
    # findings
    ("GET", f"{V1}/findings"): RoutePolicy("findings", "read", "product"),
    ("GET", f"{V1}/findings/summary"): RoutePolicy("findings", "read", "product"),
    ("GET", f"{V1}/findings/{{finding_id}}"): RoutePolicy("findings", "read", "finding"),
    ("POST", f"{V1}/findings/{{finding_id}}/waive"): RoutePolicy("finding", "waive", "finding"),
    ("POST", f"{V1}/findings/{{finding_id}}/unwaive"): RoutePolicy("finding", "waive", "finding"),
    ("GET", f"{V1}/findings/datasets/{{namespace}}/{{dataset:path}}"): RoutePolicy(
        "findings", "read", "dataset"
    ),
    ("GET", f"{V1}/findings/jobs/{{namespace}}/{{job:path}}"): RoutePolicy("findings", "read", "job"),
    # classification (catalog/api/rest/classification.py)
    ("GET", f"{V1}/classifications"): RoutePolicy("catalog.internals", "read", "query-dataset"),
    ("GET", f"{V1}/classifications/decisions"): RoutePolicy("catalog.internals", "read", "query-dataset"),
    # a decision is judged in the product of the dataset it is about (body / stored decision)
    ("POST", f"{V1}/classifications/decisions"): RoutePolicy("classification", "write", "body-dataset"),
    ("DELETE", f"{V1}/classifications/decisions/{{decision_id}}"): RoutePolicy(
        "classification", "write", "decision"
    ),
    ("GET", f"{V1}/pii/inventory"): RoutePolicy("catalog.internals", "read", "product"),
    ("GET", f"{V1}/pii/flow"): RoutePolicy("catalog.internals", "read", "query-dataset"),
    # audit (catalog/api/rest/audit.py): public keys are public to catalog users; exports to auditors
    ("GET", f"{V1}/signing-keys"): RoutePolicy("catalog.discover", "read", "global"),
    ("GET", f"{V1}/exports"): RoutePolicy("export", "read", "product"),
    # grants and the policy itself
    ("GET", f"{V1}/grants"): RoutePolicy("grants", "read", "product"),
    ("POST", f"{V1}/grants"): RoutePolicy("grants", "write", "own"),
    ("DELETE", f"{V1}/grants/{{grant_id}}"): RoutePolicy("grants", "write", "grant"),
    ("GET", f"{V1}/policy/products"): RoutePolicy("policy.products", "read", "global"),
    ("GET", f"{V1}/policy/discover"): RoutePolicy("catalog.discover", "read", "product"),
    ("POST", f"{V1}/policy/reload"): RoutePolicy("policy", "write", "global"),
    ("GET", f"{V1}/policy/denials"): RoutePolicy("policy.denials", "read", "global"),
    # operations: Prometheus metrics (admin, auditor, CATALOG_METRICS_TOKEN's `monitor` role)
    ("GET", "/metrics"): RoutePolicy("metrics", "read", "global"),
}
