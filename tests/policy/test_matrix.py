"""The authorisation matrix: every route of the app × every role × own / other product, expected
decisions taken from the policy (`policies/policy.csv`), generated from the route table
(`catalog/policy/routes.py`) so that a new route without a policy — or without a matrix entry — fails.

One app and one database for the whole module; each case is one HTTP request, valid for its route (what
it acts on exists: state-changing cases set it up first). Allowed requests must answer exactly their
status (`ALLOWED_STATUS`: 200, 201 for creations, 405 for Marquez's writes); denials must be 403
problem+json naming the rule that denied, and recorded in `access_denials`. Every REST route's declared
need (`Requires`) must be its entry in the route table.
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.api.rest.requires import declared_policies, iter_routes, route_methods
from catalog.app import create_app
from catalog.config import Settings
from catalog.db.engine import create_engine
from catalog.policy.routes import ROUTES, RoutePolicy
from tests.conftest import ADMIN_TOKEN, PgServer
from tests.factories import dataset, run_event, schema
from tests.findings.helpers import FRAUD_DB, PAYMENTS_DB, source
from tests.keys import Key, make_key

ROLES = ("pipeline", "engineer", "steward", "auditor", "admin")
OWN, OTHER = "payments", "fraud"  # product keys act for `payments`; `fraud`'s resources are "other"
ALLOW = "allow"
DD = "default-deny"
NEVER = "auditor-never-writes"
INTERNALS = "other-products-internals-need-a-grant"

# Paths that need no credential and so have no policy.
# ... and "/" and "/ui": redirects to the web UI (/ui/, static files that hold no data; it calls the API with a key).
OPEN_PATHS = {"/health", "/ready", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/", "/ui"}

# What the policy says, per (object, action) of the route table: role -> (own product, other product).
# "allow", or the name of the rule that denies. Auditor and admin hold no product: one outcome.
EXPECTED: dict[tuple[str, str], dict[str, tuple[str, str]]] = {
    ("catalog.discover", "read"): {
        "pipeline": (DD, DD),
        "engineer": (ALLOW, ALLOW),
        "steward": (ALLOW, ALLOW),
        "auditor": (ALLOW, ALLOW),
        "admin": (ALLOW, ALLOW),
    },
    ("catalog.internals", "read"): {
        "pipeline": (DD, DD),
        "engineer": (ALLOW, INTERNALS),
        "steward": (ALLOW, INTERNALS),
        "auditor": (ALLOW, ALLOW),
        "admin": (ALLOW, ALLOW),
    },
    ("lineage.event", "write"): {
        "pipeline": (ALLOW, "pipeline-only-ingests-own-product"),
        "engineer": (ALLOW, DD),
        "steward": (DD, DD),
        "auditor": (NEVER, NEVER),
        "admin": (ALLOW, ALLOW),
    },
    ("events", "read"): {
        # a global route: product roles act as `<role>:other`; what they see is filtered per product
        "pipeline": (DD, DD),
        "engineer": (ALLOW, ALLOW),
        "steward": (ALLOW, ALLOW),
        "auditor": (ALLOW, ALLOW),
        "admin": (ALLOW, ALLOW),
    },
    ("session", "read"): {
        # every key reads itself (a global route: product roles act as `<role>:other`)
        "pipeline": (ALLOW, ALLOW),
        "engineer": (ALLOW, ALLOW),
        "steward": (ALLOW, ALLOW),
        "auditor": (ALLOW, ALLOW),
        "admin": (ALLOW, ALLOW),
    },
    ("graphql", "read"): {
        "pipeline": (DD, DD),
        "engineer": (ALLOW, ALLOW),
        "steward": (ALLOW, ALLOW),
        "auditor": (ALLOW, ALLOW),
        "admin": (ALLOW, ALLOW),
    },
    ("tags", "write"): {
        "pipeline": (DD, DD),
        "engineer": (DD, DD),
        "steward": (ALLOW, ALLOW),
        "auditor": (NEVER, NEVER),
        "admin": (ALLOW, ALLOW),
    },
    ("classification", "write"): {
        "pipeline": (DD, DD),
        "engineer": (DD, DD),
        "steward": (ALLOW, DD),
        "auditor": (NEVER, NEVER),
        "admin": (ALLOW, ALLOW),
    },
    ("findings", "read"): {
        "pipeline": (DD, DD),
        "engineer": (ALLOW, DD),
        "steward": (ALLOW, DD),
        "auditor": (ALLOW, ALLOW),
        "admin": (ALLOW, ALLOW),
    },
    ("finding", "waive"): {
        "pipeline": (DD, DD),
        "engineer": (DD, DD),
        "steward": (ALLOW, "steward-waives-only-own-product"),
        "auditor": (NEVER, NEVER),
        "admin": (ALLOW, ALLOW),
    },
    ("export", "read"): {
        "pipeline": (DD, DD),
        "engineer": (DD, DD),
        "steward": (DD, DD),
        "auditor": (ALLOW, ALLOW),
        "admin": (ALLOW, ALLOW),
    },
    ("grants", "read"): {
        "pipeline": (DD, DD),
        "engineer": (ALLOW, DD),
        "steward": (ALLOW, DD),
        "auditor": (ALLOW, ALLOW),
        "admin": (ALLOW, ALLOW),
    },
    ("grants", "write"): {
        "pipeline": (DD, DD),
        "engineer": (DD, DD),
        "steward": (ALLOW, "only-the-owning-steward-grants"),
        "auditor": (NEVER, NEVER),
        "admin": (ALLOW, ALLOW),
    },
    ("policy.products", "read"): {
        "pipeline": (DD, DD),
        "engineer": (ALLOW, ALLOW),
        "steward": (ALLOW, ALLOW),
        "auditor": (ALLOW, ALLOW),
        "admin": (ALLOW, ALLOW),
    },
    ("policy", "write"): {
        "pipeline": (DD, DD),
        "engineer": (DD, DD),
        "steward": (DD, DD),
        "auditor": (NEVER, NEVER),
        "admin": (ALLOW, ALLOW),
    },
    ("policy.denials", "read"): {
        "pipeline": (DD, DD),
        "engineer": (DD, DD),
        "steward": (DD, DD),
        "auditor": (ALLOW, ALLOW),
        "admin": (ALLOW, ALLOW),
    },
    ("metrics", "read"): {
        "pipeline": (DD, DD),
        "engineer": (DD, DD),
        "steward": (DD, DD),
        "auditor": (ALLOW, ALLOW),
        "admin": (ALLOW, ALLOW),
    },
}

# -- the world the requests touch ----------------------------------------------------------------------

JDBC_PLAIN = "jdbc:postgresql://{host}:5432/db"
SIDES: dict[str, dict[str, str]] = {
    OWN: {
        "ns": PAYMENTS_DB,
        "ds": "payments.transactions",
        "job_ns": "airflow-payments",
        "job": "payments_dag.load",
        "host": "payments-db-1.internal",
    },
    OTHER: {
        "ns": FRAUD_DB,
        "ds": "fraud.scores",
        "job_ns": "airflow-fraud",
        "job": "fraud_dag.score",
        "host": "fraud-db-1.internal",
    },
}


def side_event(product: str) -> dict[str, Any]:
    """A run of `product`'s job reading its own database over plaintext JDBC (an open finding)."""
    s = SIDES[product]
    read = dataset(
        s["ns"], s["ds"], dataSource=source(JDBC_PLAIN.format(host=s["host"])), schema=schema("id")
    )
    return run_event(job=(s["job_ns"], s["job"]), inputs=[read])


@dataclass
class World:
    http: httpx.AsyncClient
    engine: AsyncEngine
    keys: dict[str, Key]
    runs: dict[str, str]  # product -> run id
    findings: dict[str, int]  # product -> a finding id of that product
    grants: dict[str, int]  # grantor product -> a grant id
    decisions: dict[str, int]  # product -> a classification decision on one of its datasets
    versions: dict[str, str]  # product -> a version of its dataset


@pytest.fixture(scope="module")
async def world(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    name = f"t_matrix_{secrets.token_hex(4)}"
    pg_server.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_server.template}"')
    url = pg_server.url_for(name)
    settings = Settings(
        home=tmp_path_factory.mktemp("matrix-home"), admin_token=ADMIN_TOKEN, log_format="console"
    )
    app = create_app(settings, url)
    engine = create_engine(url, pool_size=2)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://catalog") as http,
        ):
            events = {p: side_event(p) for p in SIDES}
            loaded = await http.post(
                "/api/v1/lineage/batch", content=orjson.dumps(list(events.values())), headers=admin
            )
            assert loaded.status_code == 200, loaded.text
            found: dict[str, int] = {}
            grants: dict[str, int] = {}
            for product, s in SIDES.items():
                rows = (
                    await http.get("/api/v1/findings", params={"product": product}, headers=admin)
                ).json()["findings"]
                found[product] = rows[0]["id"]
                grant = await http.post(
                    "/api/v1/grants",
                    headers=admin,
                    json={
                        "grantor_product": product,
                        "grantee_product": "merchant",
                        "scope": "dataset",
                        "namespace": s["ns"],
                        "name": s["ds"],
                        "reason": "matrix fixture",
                    },
                )
                assert grant.status_code == 201, grant.text
                grants[product] = grant.json()["id"]
            decisions: dict[str, int] = {}
            for product in SIDES:
                decided = await http.post(
                    "/api/v1/classifications/decisions",
                    headers=admin,
                    json={**_qds(product), "field": "id", "tag": "PII.CPF", "action": "add"},
                )
                assert decided.status_code == 201, decided.text
                decisions[product] = decided.json()["id"]
            tag = await http.put("/api/v1/tags/matrix", json={"description": "matrix"}, headers=admin)
            assert tag.status_code < 300, tag.text
            versions: dict[str, str] = {}
            for product in SIDES:
                listed = await http.get(f"{_ds(product)}/versions", headers=admin)
                assert listed.status_code == 200, listed.text
                versions[product] = listed.json()["versions"][0]["version"]
            keys = {role: await make_key(engine, role, OWN if role in ROLES[:3] else None) for role in ROLES}
            yield World(
                http,
                engine,
                keys,
                {p: e["run"]["runId"] for p, e in events.items()},
                found,
                grants,
                decisions,
                versions,
            )
    finally:
        await engine.dispose()
        pg_server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- one representative request per route --------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    params: dict[str, str] | None = None
    json: Any = None


def enc(value: str) -> str:
    return quote(value, safe="")


def grant_body(product: str) -> dict[str, Any]:
    s = SIDES[product]
    return {
        "grantor_product": product,
        "grantee_product": "merchant",
        "scope": "dataset",
        "namespace": s["ns"],
        "name": s["ds"],
        "reason": "matrix case",
    }


V1 = "/api/v1"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# A request for one side; those that change state first set up (as admin) what they act on, so each
# case finds it whatever the cases before it did.
Builder = Callable[[str, World], Call | Awaitable[Call]]


def _ds(p: str) -> str:
    return f"{V1}/namespaces/{enc(SIDES[p]['ns'])}/datasets/{enc(SIDES[p]['ds'])}"


def _job(p: str) -> str:
    return f"{V1}/namespaces/{enc(SIDES[p]['job_ns'])}/jobs/{enc(SIDES[p]['job'])}"


def _node(p: str) -> dict[str, str]:
    return {"nodeId": f"dataset:{SIDES[p]['ns']}:{SIDES[p]['ds']}"}


def _qds(p: str, **extra: str) -> dict[str, str]:
    return {"namespace": SIDES[p]["ns"], "dataset": SIDES[p]["ds"], **extra}


async def _admin(w: World, method: str, url: str, json: Any = None, expect: int = 200) -> Any:
    answer = await w.http.request(method, url, json=json, headers=ADMIN)
    assert answer.status_code == expect, answer.text
    return answer.json()


async def _fresh_decision(p: str, w: World) -> Call:
    body = {**_qds(p), "field": "id", "tag": "PII.CPF", "action": "add"}
    made = await _admin(w, "POST", f"{V1}/classifications/decisions", body, 201)
    return Call("DELETE", f"{V1}/classifications/decisions/{made['id']}")


async def _fresh_grant(p: str, w: World) -> Call:
    made = await _admin(w, "POST", f"{V1}/grants", grant_body(p), 201)
    return Call("DELETE", f"{V1}/grants/{made['id']}")


async def _tagged(p: str, w: World, field: str = "") -> Call:
    await _admin(w, "POST", f"{_ds(p)}{field}/tags/matrix")
    return Call("DELETE", f"{_ds(p)}{field}/tags/matrix")


REQUESTS: dict[tuple[str, str], Builder] = {
    ("POST", f"{V1}/lineage"): lambda p, w: Call("POST", f"{V1}/lineage", json=side_event(p)),
    ("POST", f"{V1}/lineage/batch"): lambda p, w: Call("POST", f"{V1}/lineage/batch", json=[side_event(p)]),
    ("GET", f"{V1}/ingest/status"): lambda p, w: Call("GET", f"{V1}/ingest/status"),
    ("GET", f"{V1}/me"): lambda p, w: Call("GET", f"{V1}/me"),
    ("GET", f"{V1}/namespaces"): lambda p, w: Call("GET", f"{V1}/namespaces"),
    ("GET", f"{V1}/namespaces/{{namespace}}"): lambda p, w: Call(
        "GET", f"{V1}/namespaces/{enc(SIDES[p]['ns'])}"
    ),
    ("GET", f"{V1}/namespaces/{{namespace}}/datasets"): lambda p, w: Call(
        "GET", f"{V1}/namespaces/{enc(SIDES[p]['ns'])}/datasets"
    ),
    ("GET", f"{V1}/namespaces/{{namespace}}/datasets/{{dataset:path}}"): lambda p, w: Call("GET", _ds(p)),
    ("GET", f"{V1}/namespaces/{{namespace}}/datasets/{{dataset}}/versions"): lambda p, w: Call(
        "GET", f"{_ds(p)}/versions"
    ),
    ("GET", f"{V1}/namespaces/{{namespace}}/datasets/{{dataset}}/versions/{{version}}"): lambda p, w: Call(
        "GET", f"{_ds(p)}/versions/{w.versions[p]}"
    ),
    ("GET", f"{V1}/namespaces/{{namespace}}/jobs"): lambda p, w: Call(
        "GET", f"{V1}/namespaces/{enc(SIDES[p]['job_ns'])}/jobs"
    ),
    ("GET", f"{V1}/namespaces/{{namespace}}/jobs/{{job:path}}"): lambda p, w: Call(
        "GET", f"{V1}/namespaces/{enc(SIDES[p]['job_ns'])}/jobs/{enc(SIDES[p]['job'])}"
    ),
    ("GET", f"{V1}/namespaces/{{namespace}}/jobs/{{job}}/runs"): lambda p, w: Call(
        "GET", f"{V1}/namespaces/{enc(SIDES[p]['job_ns'])}/jobs/{enc(SIDES[p]['job'])}/runs"
    ),
    ("GET", f"{V1}/jobs/runs/{{run_id}}"): lambda p, w: Call("GET", f"{V1}/jobs/runs/{w.runs[p]}"),
    ("GET", f"{V1}/events/lineage"): lambda p, w: Call("GET", f"{V1}/events/lineage"),
    ("GET", f"{V1}/lineage"): lambda p, w: Call("GET", f"{V1}/lineage", params=_node(p)),
    ("GET", f"{V1}/column-lineage"): lambda p, w: Call("GET", f"{V1}/column-lineage", params=_node(p)),
    ("GET", f"{V1}/search"): lambda p, w: Call("GET", f"{V1}/search", params={"q": "scores"}),
    ("GET", f"{V1}/tags"): lambda p, w: Call("GET", f"{V1}/tags"),
    ("PUT", f"{V1}/tags/{{tag}}"): lambda p, w: Call("PUT", f"{V1}/tags/matrix", json={"description": "m"}),
    ("POST", f"{V1}/namespaces/{{namespace}}/datasets/{{dataset}}/tags/{{tag}}"): lambda p, w: Call(
        "POST", f"{_ds(p)}/tags/matrix"
    ),
    ("DELETE", f"{V1}/namespaces/{{namespace}}/datasets/{{dataset}}/tags/{{tag}}"): _tagged,
    ("POST", f"{V1}/namespaces/{{namespace}}/datasets/{{dataset}}/fields/{{field}}/tags/{{tag}}"): (
        lambda p, w: Call("POST", f"{_ds(p)}/fields/id/tags/matrix")
    ),
    ("DELETE", f"{V1}/namespaces/{{namespace}}/datasets/{{dataset}}/fields/{{field}}/tags/{{tag}}"): (
        lambda p, w: _tagged(p, w, "/fields/id")
    ),
    # the rest of Marquez's reads, and its writes (405 to whoever may ingest what they name)
    ("GET", f"{V1}/jobs"): lambda p, w: Call("GET", f"{V1}/jobs"),
    ("GET", f"{V1}/jobs/runs/{{run_id}}/facets"): lambda p, w: Call(
        "GET", f"{V1}/jobs/runs/{w.runs[p]}/facets"
    ),
    ("GET", f"{V1}/events"): lambda p, w: Call("GET", f"{V1}/events"),
    ("GET", f"{V1}/events/{{namespace}}"): lambda p, w: Call("GET", f"{V1}/events/{enc(SIDES[p]['job_ns'])}"),
    ("GET", f"{V1}/sources"): lambda p, w: Call("GET", f"{V1}/sources"),
    ("GET", f"{V1}/sources/{{source}}"): lambda p, w: Call("GET", f"{V1}/sources/source"),
    ("GET", f"{V1}/stats/lineage-events"): lambda p, w: Call(
        "GET", f"{V1}/stats/lineage-events", params={"period": "DAY"}
    ),
    ("GET", f"{V1}/stats/jobs"): lambda p, w: Call("GET", f"{V1}/stats/jobs", params={"period": "WEEK"}),
    ("GET", f"{V1}/stats/datasets"): lambda p, w: Call(
        "GET", f"{V1}/stats/datasets", params={"period": "DAY"}
    ),
    ("GET", f"{V1}/stats/sources"): lambda p, w: Call("GET", f"{V1}/stats/sources", params={"period": "DAY"}),
    ("PUT", f"{V1}/namespaces/{{namespace}}"): lambda p, w: Call(
        "PUT", f"{V1}/namespaces/{enc(SIDES[p]['ns'])}", json={"ownerName": "me"}
    ),
    ("DELETE", f"{V1}/namespaces/{{namespace}}"): lambda p, w: Call(
        "DELETE", f"{V1}/namespaces/{enc(SIDES[p]['ns'])}"
    ),
    ("PUT", f"{V1}/sources/{{source}}"): lambda p, w: Call("PUT", f"{V1}/sources/source", json={}),
    ("PUT", f"{V1}/namespaces/{{namespace}}/datasets/{{dataset:path}}"): lambda p, w: Call(
        "PUT", _ds(p), json={}
    ),
    ("DELETE", f"{V1}/namespaces/{{namespace}}/datasets/{{dataset}}"): lambda p, w: Call("DELETE", _ds(p)),
    ("PUT", f"{V1}/namespaces/{{namespace}}/jobs/{{job:path}}"): lambda p, w: Call("PUT", _job(p), json={}),
    ("DELETE", f"{V1}/namespaces/{{namespace}}/jobs/{{job}}"): lambda p, w: Call("DELETE", _job(p)),
    ("POST", f"{V1}/namespaces/{{namespace}}/jobs/{{job}}/runs"): lambda p, w: Call(
        "POST", f"{_job(p)}/runs", json={}
    ),
    ("POST", f"{V1}/jobs/runs/{{run_id}}/{{action}}"): lambda p, w: Call(
        "POST", f"{V1}/jobs/runs/{w.runs[p]}/complete"
    ),
    ("POST", f"{V1}/namespaces/{{namespace}}/jobs/{{job}}/tags/{{tag}}"): lambda p, w: Call(
        "POST", f"{_job(p)}/tags/matrix"
    ),
    ("PATCH", f"{V1}/namespaces/{{namespace}}/jobs/{{job}}/tags/{{tag}}"): lambda p, w: Call(
        "PATCH", f"{_job(p)}/tags/matrix"
    ),
    ("DELETE", f"{V1}/namespaces/{{namespace}}/jobs/{{job}}/tags/{{tag}}"): lambda p, w: Call(
        "DELETE", f"{_job(p)}/tags/matrix"
    ),
    ("POST", "/graphql"): lambda p, w: Call(
        "POST", "/graphql", json={"query": "{ namespaces { nodes { name } } }"}
    ),
    ("GET", f"{V1}/findings"): lambda p, w: Call("GET", f"{V1}/findings", params={"product": p}),
    ("GET", f"{V1}/findings/summary"): lambda p, w: Call(
        "GET", f"{V1}/findings/summary", params={"product": p}
    ),
    ("GET", f"{V1}/findings/{{finding_id}}"): lambda p, w: Call("GET", f"{V1}/findings/{w.findings[p]}"),
    ("POST", f"{V1}/findings/{{finding_id}}/waive"): lambda p, w: Call(
        "POST", f"{V1}/findings/{w.findings[p]}/waive", json={"reason": "matrix case"}
    ),
    ("POST", f"{V1}/findings/{{finding_id}}/unwaive"): lambda p, w: Call(
        "POST", f"{V1}/findings/{w.findings[p]}/unwaive", json={}
    ),
    ("GET", f"{V1}/findings/datasets/{{namespace}}/{{dataset:path}}"): lambda p, w: Call(
        "GET", f"{V1}/findings/datasets/{enc(SIDES[p]['ns'])}/{enc(SIDES[p]['ds'])}"
    ),
    ("GET", f"{V1}/findings/jobs/{{namespace}}/{{job:path}}"): lambda p, w: Call(
        "GET", f"{V1}/findings/jobs/{enc(SIDES[p]['job_ns'])}/{enc(SIDES[p]['job'])}"
    ),
    ("GET", f"{V1}/classifications"): lambda p, w: Call("GET", f"{V1}/classifications", params=_qds(p)),
    ("GET", f"{V1}/classifications/decisions"): lambda p, w: Call(
        "GET", f"{V1}/classifications/decisions", params=_qds(p)
    ),
    ("POST", f"{V1}/classifications/decisions"): lambda p, w: Call(
        "POST",
        f"{V1}/classifications/decisions",
        json={**_qds(p), "field": "id", "tag": "PII.CPF", "action": "reject", "reason": "a surrogate key"},
    ),
    ("DELETE", f"{V1}/classifications/decisions/{{decision_id}}"): _fresh_decision,
    ("GET", f"{V1}/pii/inventory"): lambda p, w: Call("GET", f"{V1}/pii/inventory", params={"product": p}),
    ("GET", f"{V1}/pii/flow"): lambda p, w: Call("GET", f"{V1}/pii/flow", params=_qds(p, field="id")),
    ("GET", f"{V1}/signing-keys"): lambda p, w: Call("GET", f"{V1}/signing-keys"),
    ("GET", f"{V1}/exports"): lambda p, w: Call("GET", f"{V1}/exports", params={"product": p}),
    ("GET", f"{V1}/grants"): lambda p, w: Call("GET", f"{V1}/grants", params={"product": p}),
    ("POST", f"{V1}/grants"): lambda p, w: Call("POST", f"{V1}/grants", json=grant_body(p)),
    ("DELETE", f"{V1}/grants/{{grant_id}}"): _fresh_grant,
    ("GET", f"{V1}/policy/products"): lambda p, w: Call("GET", f"{V1}/policy/products"),
    ("GET", f"{V1}/policy/discover"): lambda p, w: Call(
        "GET", f"{V1}/policy/discover", params={"product": p}
    ),
    ("POST", f"{V1}/policy/reload"): lambda p, w: Call("POST", f"{V1}/policy/reload"),
    ("GET", f"{V1}/policy/denials"): lambda p, w: Call("GET", f"{V1}/policy/denials"),
    ("GET", "/metrics"): lambda p, w: Call("GET", "/metrics"),
}

# What an allowed request of REQUESTS answers, exactly: 200 unless said here. Marquez's writes answer 405
# "send OpenLineage events" to whoever may ingest what they name (403 to the others).
INGEST = {("POST", f"{V1}/lineage"), ("POST", f"{V1}/lineage/batch")}
ALLOWED_STATUS: dict[tuple[str, str], int] = {
    ("POST", f"{V1}/lineage"): 201,
    ("POST", f"{V1}/grants"): 201,
    ("POST", f"{V1}/classifications/decisions"): 201,
    **{k: 405 for k, p in ROUTES.items() if p.obj == "lineage.event" and k not in INGEST},
}

# Routes in the table that the request matrix does not call, and why.
NOT_REQUESTED = {
    # the GraphiQL page: static HTML typed into by a person, no data; queries over GET are refused
    ("GET", "/graphql"): "GraphiQL page",
    # no subscriptions: every websocket is refused before any data is touched
    ("WEBSOCKET", "/graphql"): "subscriptions refused",
}


def app_routes() -> set[tuple[str, str]]:
    app = create_app(Settings(home=Path("/nonexistent"), admin_token=ADMIN_TOKEN), "postgresql://unused@/x")
    found: set[tuple[str, str]] = set()
    for route in iter_routes(app.routes):
        path = getattr(route, "path", "")
        if path in OPEN_PATHS or type(route).__name__ == "Mount":
            continue
        found.update((method, path) for method in route_methods(route))
    return found


def test_every_route_has_a_policy_and_every_policy_a_route() -> None:
    """A new route without an entry in catalog/policy/routes.py fails here (at run time it would be
    admin-only); an entry for a route that is gone fails too."""
    routes = app_routes()
    assert len(routes) >= 40
    assert sorted(routes - set(ROUTES)) == [], "routes without a policy in catalog/policy/routes.py"
    assert sorted(set(ROUTES) - routes) == [], "policies for routes that do not exist"


def test_every_route_declares_the_need_the_route_table_gives_it() -> None:
    """Each REST route states what it needs in its signature (`Requires(obj, act, domain)`, catalog/api/rest/
    requires.py), exactly once, and that is its entry in the route table. /graphql authorises in its
    context (the same `graphql` read, then per field: the GraphQL matrix below)."""
    app = create_app(Settings(home=Path("/nonexistent"), admin_token=ADMIN_TOKEN), "postgresql://unused@/x")
    checked = 0
    for route in iter_routes(app.routes):
        path = getattr(route, "path", "")
        if path in OPEN_PATHS or path == "/graphql" or type(route).__name__ == "Mount":
            continue
        declared = declared_policies(getattr(route, "dependant", None))
        for method in route_methods(route):
            assert declared == [ROUTES[(method, path)]], f"{method} {path}"
            checked += 1
    assert checked == len(ROUTES) - len([k for k in ROUTES if k[1] == "/graphql"])


def test_every_policy_has_expected_decisions_and_every_route_a_matrix_request() -> None:
    missing = sorted({(p.obj, p.act) for p in ROUTES.values()} - set(EXPECTED))
    assert missing == [], "add the expected decisions of these (object, action) pairs to EXPECTED"
    unrequested = sorted(set(ROUTES) - set(REQUESTS) - set(NOT_REQUESTED))
    assert unrequested == [], "add a representative request for these routes to REQUESTS"


def sides(policy: RoutePolicy, key: tuple[str, str]) -> tuple[str, ...]:
    """Routes with no product domain have one side."""
    if policy.domain == "global":
        return (OTHER,)  # a product role acts as `<role>:other` outside its own product
    return (OWN, OTHER)


CASES = [
    pytest.param(key, role, side, id=f"{key[0]} {key[1]} {role} {'own' if side == OWN else 'other'}")
    for key in sorted(REQUESTS)
    for role in ROLES
    for side in sides(ROUTES[key], key)
]


def expected(key: tuple[str, str], role: str, side: str) -> str:
    policy = ROUTES[key]
    own, other = EXPECTED[(policy.obj, policy.act)][role]
    return own if side == OWN else other


@pytest.mark.parametrize(("key", "role", "side"), CASES)
async def test_route_matrix(world: World, key: tuple[str, str], role: str, side: str) -> None:
    built = REQUESTS[key](side, world)
    call = await built if inspect.isawaitable(built) else built
    response = await world.http.request(
        call.method,
        call.url,
        params=call.params,
        content=orjson.dumps(call.json) if call.json is not None else None,
        headers={**world.keys[role].headers, "Content-Type": "application/json"},
    )
    outcome = expected(key, role, side)
    await check(world, response, outcome, ALLOWED_STATUS.get(key, 200))


async def check(world: World, response: httpx.Response, outcome: str, allowed: int = 200) -> None:
    if outcome == ALLOW:
        assert response.status_code == allowed, response.text
        return
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["rule"] == outcome, problem
    assert outcome in problem["detail"]
    async with world.engine.connect() as conn:
        last = (
            await conn.execute(text("SELECT rule, path, role FROM access_denials ORDER BY id DESC LIMIT 1"))
        ).one()
    assert last.rule == outcome
    assert unquote(last.path) == unquote(response.request.url.path)


# -- GraphQL operations --------------------------------------------------------------------------------
#
# The /graphql route admits catalog users (the ("graphql", "read") row above); each root field and each
# field of Dataset and Job is then authorised on its own in the product domain of what it reads
# (catalog/policy/authoriser.py). A denied field is null with an error whose extensions carry
# code FORBIDDEN and the rule, and the denial is recorded (path /graphql).

DISCOVER = ("catalog.discover", "read")
INTERNALS_READ = ("catalog.internals", "read")
DATASET_VARS = "query($ns: String!, $n: String!)"
Variables = Callable[[str, World], dict[str, Any] | Awaitable[dict[str, Any]]]


def _dataset_vars(p: str, w: World) -> dict[str, Any]:
    return {"ns": SIDES[p]["ns"], "n": SIDES[p]["ds"]}


def _job_vars(p: str, w: World) -> dict[str, Any]:
    return {"ns": SIDES[p]["job_ns"], "n": SIDES[p]["job"]}


@dataclass(frozen=True)
class GqlOp:
    query: str
    variables: Variables | None  # None: the operation names no product's resource (one side)
    policy: tuple[str, str]


async def _fresh_decision_id(p: str, w: World) -> dict[str, Any]:
    """A decision of its own per case: an allowed retirement answers it, whatever the cases before did."""
    body = {**_qds(p), "field": "id", "tag": "PII.CPF", "action": "add"}
    made = await _admin(w, "POST", f"{V1}/classifications/decisions", body, 201)
    return {"id": made["id"]}


# Every root field of the schema.
GRAPHQL_OPS: dict[str, GqlOp] = {
    "namespaces": GqlOp("{ namespaces { nodes { name } } }", None, DISCOVER),
    "datasets": GqlOp("{ datasets(first: 5) { nodes { name } } }", None, DISCOVER),
    "dataset": GqlOp(
        f"{DATASET_VARS} {{ dataset(namespace: $ns, name: $n) {{ name }} }}", _dataset_vars, DISCOVER
    ),
    "job": GqlOp(f"{DATASET_VARS} {{ job(namespace: $ns, name: $n) {{ name }} }}", _job_vars, DISCOVER),
    "search": GqlOp('{ search(query: "scores") { __typename } }', None, DISCOVER),
    "run": GqlOp("query($id: UUID!) { run(id: $id) { id } }", lambda p, w: {"id": w.runs[p]}, INTERNALS_READ),
    "lineage": GqlOp(
        f"{DATASET_VARS} {{ lineage(node: {{kind: DATASET, namespace: $ns, name: $n}}) {{ root }} }}",
        _dataset_vars,
        INTERNALS_READ,
    ),
    "columnLineage": GqlOp(
        f"{DATASET_VARS} {{ columnLineage(namespace: $ns, dataset: $n) {{ root }} }}",
        _dataset_vars,
        INTERNALS_READ,
    ),
    # the inventory of one product: that product's internals, as GET /api/v1/pii/inventory?product=
    "piiInventory": GqlOp(
        "query($p: String) { piiInventory(product: $p) { totalCount } }",
        lambda p, w: {"p": p},
        INTERNALS_READ,
    ),
    "decideClassification": GqlOp(
        'mutation($ns: String!, $n: String!) { decideClassification(namespace: $ns, dataset: $n, field: "id", '
        'tag: "PII.CPF", action: REJECT, reason: "a surrogate key") { id } }',
        _dataset_vars,
        ("classification", "write"),
    ),
    "retireClassificationDecision": GqlOp(
        "mutation($id: Int!) { retireClassificationDecision(decisionId: $id) { id } }",
        _fresh_decision_id,
        ("classification", "write"),
    ),
    "piiFlow": GqlOp(
        f'{DATASET_VARS} {{ piiFlow(namespace: $ns, dataset: $n, field: "id") {{ hops {{ depth }} }} }}',
        _dataset_vars,
        INTERNALS_READ,
    ),
}

# Every field of the catalog's object types, with its selection and policy: a new field without an
# entry fails `test_every_graphql_field_has_a_policy`.
D, INT = DISCOVER, INTERNALS_READ
GRAPHQL_FIELDS: dict[str, dict[str, tuple[str, tuple[str, str]]]] = {
    "Dataset": {
        "id": ("id", D),
        "namespace": ("namespace", D),
        "name": ("name", D),
        "firstSeen": ("firstSeen", D),
        "lastSeen": ("lastSeen", D),
        "description": ("description", D),
        "product": ("product", D),
        "tier": ("tier", D),
        "owners": ("owners { name }", D),
        "producers": ("producers { name }", D),
        "consumers": ("consumers { name }", D),
        "sourceUri": ("sourceUri", INT),
        "fields": ("fields { path type }", INT),
        "field": ('field(path: "id") { path }', INT),
        "versions": ("versions { id fields }", INT),
        "facets": ("facets", INT),
        "hasPii": ("hasPii", INT),
    },
    "Job": {
        "id": ("id", D),
        "namespace": ("namespace", D),
        "name": ("name", D),
        "firstSeen": ("firstSeen", D),
        "lastSeen": ("lastSeen", D),
        "product": ("product", D),
        "owners": ("owners { name }", D),
        "inputs": ("inputs { name }", D),
        "outputs": ("outputs { name }", D),
        "facets": ("facets", INT),
        "runs": ("runs { nodes { id } }", INT),
    },
}
ROOT_OF = {"Dataset": ("dataset", _dataset_vars), "Job": ("job", _job_vars)}


async def test_every_graphql_operation_is_in_the_matrix(world: World) -> None:
    answer = await world.http.post(
        "/graphql",
        json={"query": "{ __schema { queryType { fields { name } } mutationType { fields { name } } } }"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    schema_ = answer.json()["data"]["__schema"]
    operations = {f["name"] for f in schema_["queryType"]["fields"]}
    operations |= {f["name"] for f in (schema_["mutationType"] or {}).get("fields") or []}
    assert sorted(operations - set(GRAPHQL_OPS)) == [], "add these GraphQL operations to GRAPHQL_OPS"
    assert sorted(set(GRAPHQL_OPS) - operations) == [], "operations in GRAPHQL_OPS that do not exist"


async def test_every_graphql_field_has_a_policy(world: World) -> None:
    for type_name, policies in GRAPHQL_FIELDS.items():
        answer = await world.http.post(
            "/graphql",
            json={"query": f'{{ __type(name: "{type_name}") {{ fields {{ name }} }} }}'},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        fields = {f["name"] for f in answer.json()["data"]["__type"]["fields"]}
        assert fields == set(policies), f"{type_name}: classify every field in GRAPHQL_FIELDS"


def gql_outcome(policy: tuple[str, str], role: str, side: str) -> tuple[str, bool]:
    """(outcome, at the endpoint): the endpoint's denial comes first (403), then the field's."""
    endpoint = EXPECTED[("graphql", "read")][role][1]
    if endpoint != ALLOW:
        return endpoint, True
    own, other = EXPECTED[policy][role]
    return (own if side == OWN else other), False


async def post_gql(world: World, role: str, query: str, variables: dict[str, Any]) -> httpx.Response:
    return await world.http.post(
        "/graphql", json={"query": query, "variables": variables}, headers=world.keys[role].headers
    )


async def check_gql(
    world: World,
    response: httpx.Response,
    outcome: str,
    at_endpoint: bool,
    path: list[str],
    obj: str = "catalog.internals",
) -> None:
    """Allowed: data at `path`, no error. Denied at the endpoint: 403 problem+json. Denied on the
    field: null at `path`, one FORBIDDEN error there naming the rule, and the denial recorded."""
    if at_endpoint:
        await check(world, response, outcome)
        return
    assert response.status_code == 200, response.text
    body = response.json()
    value: Any = body["data"]
    for key in path[:-1]:
        value = value[key]
    if outcome == ALLOW:
        assert "errors" not in body, body
        assert value is not None, body
        # a root operation answers; a field may be legitimately null (no description, say)
        assert value[path[-1]] is not None or len(path) > 1, body
        return
    assert value is not None, body  # the rest of the object is answered
    assert value[path[-1]] is None, body
    [error] = body["errors"]
    assert error["path"] == path, error
    assert error["extensions"]["code"] == "FORBIDDEN", error
    assert error["extensions"]["rule"] == outcome, error
    assert outcome in error["message"]
    async with world.engine.connect() as conn:
        last = (
            await conn.execute(text("SELECT rule, path, obj FROM access_denials ORDER BY id DESC LIMIT 1"))
        ).one()
    assert (last.rule, last.path, last.obj) == (outcome, "/graphql", obj)


GQL_CASES = [
    pytest.param(op, role, side, id=f"graphql {op} {role} {'own' if side == OWN else 'other'}")
    for op, spec in sorted(GRAPHQL_OPS.items())
    for role in ROLES
    for side in ((OWN, OTHER) if spec.variables is not None else (OTHER,))
]


@pytest.mark.parametrize(("op", "role", "side"), GQL_CASES)
async def test_graphql_matrix(world: World, op: str, role: str, side: str) -> None:
    spec = GRAPHQL_OPS[op]
    made = spec.variables(side, world) if spec.variables is not None else {}
    variables = await made if inspect.isawaitable(made) else made
    response = await post_gql(world, role, spec.query, variables)
    outcome, at_endpoint = gql_outcome(spec.policy, role, side)
    await check_gql(world, response, outcome, at_endpoint, [op], spec.policy[0])


GQL_FIELD_CASES = [
    pytest.param(
        type_name,
        field,
        role,
        side,
        id=f"graphql {type_name}.{field} {role} {'own' if side == OWN else 'other'}",
    )
    for type_name, fields in sorted(GRAPHQL_FIELDS.items())
    for field in sorted(fields)
    for role in ROLES
    for side in (OWN, OTHER)
]


@pytest.mark.parametrize(("type_name", "field", "role", "side"), GQL_FIELD_CASES)
async def test_graphql_field_matrix(world: World, type_name: str, field: str, role: str, side: str) -> None:
    selection, policy = GRAPHQL_FIELDS[type_name][field]
    root, variables = ROOT_OF[type_name]
    # the discoverable `name` next to the field: a denied field leaves the rest of the object answered
    query = f"{DATASET_VARS} {{ {root}(namespace: $ns, name: $n) {{ name {selection} }} }}"
    response = await post_gql(world, role, query, variables(side, world))
    outcome, at_endpoint = gql_outcome(policy, role, side)
    await check_gql(world, response, outcome, at_endpoint, [root, field])
    if not at_endpoint:
        assert response.json()["data"][root]["name"] == variables(side, world)["n"]
