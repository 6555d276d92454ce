"""The direct lane for single-event ingests (catalog/api/rest/ingest_lane.py) answers exactly as the FastAPI
route does: the same requests, sent to a service with the lane and to one without, get the same status,
headers that matter and body, and store the same events."""

from __future__ import annotations

import gzip
import secrets
from typing import Any

import fastapi.routing
import httpx
import orjson
import pytest
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import solve_dependencies
from fastapi.routing import APIRoute
from sqlalchemy import text
from sqlalchemy.engine import make_url

from catalog.api.rest.ingest_lane import IngestLane
from catalog.api.rest.requires import iter_routes
from catalog.app import create_app
from catalog.config import Settings
from catalog.db.engine import create_engine
from tests.factories import dataset, run_event, schema
from tests.keys import make_key

RUN = "0195d3a4-7b1e-7c6a-9f00-3c2d1e0f4a5b"
SECRET = "lane-s3cr3t"


def _event(event_type: str = "COMPLETE", **kwargs: Any) -> dict[str, Any]:
    return run_event(event_type, run_id=RUN, when="2026-11-01T10:00:00Z", **kwargs)


# (what is sent: method, path, body, extra headers, which key) — every answer the route can give
Case = tuple[str, str, bytes, dict[str, str], str]
CASES: list[tuple[str, Case]] = [
    ("created", ("POST", "/api/v1/lineage", orjson.dumps(_event()), {}, "payments")),
    ("duplicate", ("POST", "/api/v1/lineage", orjson.dumps(_event()), {}, "payments")),
    (
        "redacted",
        (
            "POST",
            "/api/v1/lineage",
            orjson.dumps(
                _event(
                    event_type="RUNNING",
                    inputs=[
                        dataset(
                            f"postgres://etl:{SECRET}@payments-db:5432", "payments.lane", schema=schema("id")
                        )
                    ],
                )
            ),
            {},
            "payments",
        ),
    ),
    (
        "gzip and wait=projected",
        (
            "POST",
            "/api/v1/lineage?wait=projected",
            gzip.compress(orjson.dumps(_event("START"))),
            {"Content-Encoding": "gzip"},
            "payments",
        ),
    ),
    ("wait=logged", ("POST", "/api/v1/lineage?wait=logged", orjson.dumps(_event("FAIL")), {}, "payments")),
    ("no key", ("POST", "/api/v1/lineage", orjson.dumps(_event()), {}, "none")),
    ("unknown key", ("POST", "/api/v1/lineage", orjson.dumps(_event()), {}, "bogus")),
    (
        "another product's job",
        (
            "POST",
            "/api/v1/lineage",
            orjson.dumps(_event(job=("airflow-fraud", "fraud_dag.score"))),
            {},
            "payments",
        ),
    ),
    ("auditor role", ("POST", "/api/v1/lineage", orjson.dumps(_event()), {}, "auditor")),
    ("not JSON", ("POST", "/api/v1/lineage", b'{"eventType": ', {}, "payments")),
    ("empty", ("POST", "/api/v1/lineage", b"", {}, "payments")),
    ("an array", ("POST", "/api/v1/lineage", b"[]", {}, "payments")),
    (
        "invalid event",
        ("POST", "/api/v1/lineage", orjson.dumps({**_event(), "eventTime": "yesterday"}), {}, "payments"),
    ),
    ("bad encoding", ("POST", "/api/v1/lineage", b"xx", {"Content-Encoding": "br"}, "payments")),
    (
        "corrupt gzip",
        ("POST", "/api/v1/lineage", b"\x1f\x8bnot gzip", {"Content-Encoding": "gzip"}, "payments"),
    ),
    ("too large", ("POST", "/api/v1/lineage", b"{" + b" " * (9 << 20) + b"}", {}, "payments")),
    (
        "NUL in a name",
        ("POST", "/api/v1/lineage", orjson.dumps(_event(job=("airflow-payments", "a\x00b"))), {}, "payments"),
    ),
    (
        "invalid wait (the normal way)",
        ("POST", "/api/v1/lineage?wait=soon", orjson.dumps(_event()), {}, "payments"),
    ),
    (
        "another parameter (the normal way)",
        ("POST", "/api/v1/lineage?x=1", orjson.dumps(_event("OTHER")), {}, "payments"),
    ),
    ("a trailing slash", ("POST", "/api/v1/lineage/", orjson.dumps(_event()), {}, "payments")),
    ("GET (not ingest)", ("GET", "/api/v1/lineage", b"", {}, "payments")),
]

# Headers that differ between any two answers (or between two services) whatever took the request.
VOLATILE_HEADERS = {"x-request-id", "date", "server", "catalog-lsn"}


async def _answers(settings: Settings, admin_url: str, service_url: str) -> tuple[list[Any], list[Any]]:
    """Every case sent in order to a fresh service on its own database: the answers, and the log."""
    engine = create_engine(admin_url, pool_size=2)
    try:
        keys = {
            "payments": (await make_key(engine, "pipeline", "payments")).headers,
            "auditor": (await make_key(engine, "auditor")).headers,
            "bogus": {"Authorization": "Bearer cat_nope_nope"},
            "none": {},
        }
        answers = []
        app = create_app(settings, service_url)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://catalog") as http,
        ):
            for name, (method, path, body, headers, who) in CASES:
                response = await http.request(method, path, content=body, headers={**headers, **keys[who]})
                payload: Any = response.json() if response.content else None
                if isinstance(payload, dict):
                    payload.pop("requestId", None)
                kept = sorted((k, v) for k, v in response.headers.items() if k not in VOLATILE_HEADERS)
                answers.append((name, response.status_code, kept, payload))
        async with engine.connect() as conn:
            stored = await conn.execute(
                text(
                    "SELECT event_type, payload::text, emitter_product, redactions, emitter_key IS NOT NULL "
                    "FROM event_log ORDER BY id"
                )
            )
            return answers, [tuple(r) for r in stored]
    finally:
        await engine.dispose()


async def test_the_lane_answers_every_case_as_the_route_does(
    settings: Settings, database_url: str, pg_server: Any
) -> None:
    name = f"t_{secrets.token_hex(6)}"  # a second fresh database for the service without the lane
    pg_server.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_server.template}"')
    try:
        with_lane, logged = await _answers(
            settings, database_url, pg_server.service_url_for(make_url(database_url).database)
        )
        without, logged_without = await _answers(
            settings.model_copy(update={"ingest_lane": False}),
            pg_server.url_for(name),
            pg_server.service_url_for(name),
        )
    finally:
        pg_server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    for lane, route in zip(with_lane, without, strict=True):
        assert lane == route, lane[0]
    assert logged == logged_without
    # The cases do cover what they say (else equal answers would prove little).
    statuses = {answer[0]: answer[1] for answer in with_lane}
    assert [statuses["created"], statuses["duplicate"], statuses["wait=logged"]] == [201, 201, 201]
    assert [statuses["no key"], statuses["unknown key"]] == [401, 401]
    assert [statuses["another product's job"], statuses["auditor role"]] == [403, 403]
    assert [statuses["too large"], statuses["bad encoding"], statuses["invalid event"]] == [413, 415, 422]
    assert statuses["invalid wait (the normal way)"] == 400
    assert statuses["NUL in a name"] == 201  # stored with U+FFFD in its place
    assert [row[0] for row in logged] == ["COMPLETE", "RUNNING", "START", "FAIL", "COMPLETE", "OTHER"]
    assert all(SECRET not in row[1] for row in logged)


async def test_single_ingests_skip_fastapis_dependency_solving(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    solved: list[str] = []
    original = solve_dependencies  # what fastapi.routing calls for every route it handles

    async def counting(*args: Any, **kwargs: Any) -> Any:
        solved.append(kwargs["request"].url.path)
        return await original(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    response = await client.post("/api/v1/lineage", content=orjson.dumps(_event()))
    assert response.status_code == 201
    assert solved == []  # the lane answered
    response = await client.post("/api/v1/lineage?wait=bogus", content=orjson.dumps(_event()))
    assert response.status_code == 400
    assert solved == ["/api/v1/lineage"]  # the route answered what the lane does not take
    response = await client.post("/api/v1/lineage/batch", content=b"[" + orjson.dumps(_event()) + b"]")
    assert response.status_code == 200
    assert solved[-1] == "/api/v1/lineage/batch"  # batches go the normal way


def test_the_lane_refuses_a_route_it_does_not_know(settings: Settings, service_database_url: str) -> None:
    app = create_app(settings, service_database_url)
    IngestLane(app)  # the route as built: known
    (route,) = [
        r
        for r in iter_routes(app.routes)
        if isinstance(r, APIRoute) and r.path == "/api/v1/lineage" and "POST" in (r.methods or ())
    ]

    def extra() -> None:
        """A dependency the lane does not know and would skip."""

    # The route object is the ingest router's own (FastAPI keeps included routers as they are): put it back.
    route.dependant.dependencies.append(Dependant(call=extra))
    try:
        with pytest.raises(RuntimeError, match="changed its dependencies"):
            IngestLane(app)
    finally:
        route.dependant.dependencies.pop()
    IngestLane(app)
