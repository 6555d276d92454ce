"""POST /api/v1/lineage and /lineage/batch: acceptance, refusal, idempotency, ordering, limits."""

from __future__ import annotations

import gzip
import hashlib
import uuid
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.corpus import event_files, reject_files
from tests.factories import at, dataset, run_event, schema

CORPUS_EVENTS = event_files()
CORPUS_REJECTS = reject_files()


async def count(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


async def post(client: httpx.AsyncClient, event: Any, **kwargs: Any) -> httpx.Response:
    return await client.post("/api/v1/lineage", content=orjson.dumps(event), **kwargs)


async def test_every_corpus_event_is_accepted_and_stored_once(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    assert len(CORPUS_EVENTS) > 100
    statuses = {}
    for path in CORPUS_EVENTS:
        response = await client.post("/api/v1/lineage", content=path.read_bytes())
        statuses[path.name] = (response.status_code, response.text[:200])
    refused = {k: v for k, v in statuses.items() if v[0] != 201}
    assert not refused
    # the corpus has byte-identical events in several files? every distinct one is stored exactly once
    stored = await count(engine, "event_log")
    distinct = {
        orjson.dumps(orjson.loads(p.read_bytes()), option=orjson.OPT_SORT_KEYS) for p in CORPUS_EVENTS
    }
    assert stored <= len(distinct)
    assert stored >= len(distinct) - 5  # a few differ only in secrets that redaction makes equal
    assert await count(engine, "datasets") > 50
    assert await count(engine, "column_edges") > 10


@pytest.mark.parametrize("path", CORPUS_REJECTS, ids=[p.parent.name + "/" + p.name for p in CORPUS_REJECTS])
async def test_every_corpus_reject_is_refused_with_a_pointer(
    client: httpx.AsyncClient, engine: AsyncEngine, path: Any
) -> None:
    response = await client.post("/api/v1/lineage", content=path.read_bytes())
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["pointer"].startswith("/run")
    assert problem["detail"]
    assert await count(engine, "event_log") == 0
    assert await count(engine, "namespaces") == 0


@pytest.mark.parametrize(
    ("mutate", "pointer"),
    [
        (lambda e: e.pop("eventTime"), "/eventTime"),
        (lambda e: e.update(eventTime="yesterday"), "/eventTime"),
        (lambda e: e["run"].update(runId=42), "/run/runId"),
        (lambda e: e["job"].update(name=""), "/job/name"),
        (lambda e: e.update(inputs={"a": 1}), "/inputs"),
        (
            lambda e: e.update(outputs=[{"namespace": "x", "name": "y"}, {"namespace": "x"}]),
            "/outputs/1/name",
        ),
        (lambda e: e.update(eventType="FINISHED"), "/eventType"),
    ],
)
async def test_bad_event_names_the_field_and_stores_nothing(
    client: httpx.AsyncClient, engine: AsyncEngine, mutate: Any, pointer: str
) -> None:
    event = run_event(outputs=[dataset("bigquery", "x.y")])
    mutate(event)
    response = await post(client, event)
    assert response.status_code == 422, response.text
    assert response.json()["pointer"] == pointer
    assert await count(engine, "event_log") == 0
    assert await count(engine, "datasets") == 0


async def test_invalid_json_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/lineage", content=b'{"eventType": "START",')
    assert response.status_code == 400
    assert response.json()["type"] == "/problems/invalid-json"


async def test_same_event_twice_is_stored_once(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    event = run_event(outputs=[dataset("bigquery", "a.b", schema=schema("id"))])
    first = await post(client, event)
    second = await post(client, event)
    assert (first.status_code, first.json()["status"]) == (201, "created")
    assert (second.status_code, second.json()["status"]) == (201, "duplicate")
    assert await count(engine, "event_log") == 1


async def test_complete_before_start_leaves_the_run_complete(client: httpx.AsyncClient) -> None:
    run_id = str(uuid.uuid4())
    complete = run_event("COMPLETE", run_id=run_id, when=at(1, 10, 5))
    start = run_event("START", run_id=run_id, when=at(1, 10, 0))
    assert (await post(client, complete)).status_code == 201
    assert (await post(client, start)).status_code == 201
    run = (await client.get(f"/api/v1/jobs/runs/{run_id}")).json()
    assert run["state"] == "COMPLETE"
    assert run["startedAt"] == "2026-03-01T10:00:00Z"
    assert run["endedAt"] == "2026-03-01T10:05:00Z"
    assert run["durationMs"] == 300_000


async def test_gzip_body_is_accepted(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    body = gzip.compress(orjson.dumps(run_event()))
    response = await client.post("/api/v1/lineage", content=body, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 201
    assert await count(engine, "event_log") == 1


async def test_gzip_bomb_is_refused_with_413(client: httpx.AsyncClient) -> None:
    bomb = gzip.compress(b"{" + b" " * (64 * 1024 * 1024) + b"}", compresslevel=9)
    assert len(bomb) < 1024 * 1024
    response = await client.post("/api/v1/lineage", content=bomb, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_oversized_body_is_refused_with_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/lineage", content=b" " * (9 * 1024 * 1024))
    assert response.status_code == 413


async def test_nul_characters_are_sanitised_not_a_500(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    event = run_event(job_facets={"sql": {"query": "select '\u0000' from t", "_producer": "x"}})
    response = await post(client, event)
    assert response.status_code == 201, response.text
    async with engine.connect() as conn:
        query = (
            await conn.execute(text("SELECT payload #>> '{job,facets,sql,query}' FROM event_log"))
        ).scalar_one()
    assert "\u0000" not in query


async def test_credentials_in_uris_never_reach_storage(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    source = {
        "name": "payments",
        "uri": "postgres://etl:S3cretPassw0rd@payments-db:5432/payments?sslmode=require",
    }
    event = run_event(inputs=[dataset("postgres://payments-db:5432", "public.tx", dataSource=source)])
    assert (await post(client, event)).status_code == 201
    async with engine.connect() as conn:
        log = (await conn.execute(text("SELECT payload::text FROM event_log"))).scalar_one()
        facets = (await conn.execute(text("SELECT string_agg(value::text, '') FROM facets"))).scalar_one()
    assert "S3cretPassw0rd" not in log
    assert "S3cretPassw0rd" not in facets


async def test_the_log_stores_the_text_its_digest_was_computed_from(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """The payload is kept as accepted (json, not jsonb's re-encoding): anyone can check every logged
    event against its dedup digest with SQL alone, and it reads back as the same value."""
    events = [path.read_bytes() for path in CORPUS_EVENTS[:40]]
    for body in events:
        assert (await client.post("/api/v1/lineage", content=body)).status_code == 201
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT sha256(convert_to(payload::text, 'UTF8')) = digest AS intact, payload, digest,"
                    " pg_typeof(payload)::text AS type FROM event_log"
                )
            )
        ).all()
    assert len(rows) >= 30
    assert {r.type for r in rows} == {"json"}
    assert all(r.intact for r in rows)
    # decoded, it is the value that was hashed: its canonical encoding gives the digest back
    for r in rows:
        assert hashlib.sha256(orjson.dumps(r.payload, option=orjson.OPT_SORT_KEYS)).digest() == bytes(
            r.digest
        )


async def test_batch_json_array_reports_each_failure(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    good = [run_event(when=at(2, h)) for h in range(3)]
    bad = run_event()
    bad["run"]["runId"] = "not-a-uuid"
    response = await client.post(
        "/api/v1/lineage/batch", content=orjson.dumps([good[0], bad, good[1], good[2]])
    )
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "partial_success"
    assert body["summary"] == {
        "received": 4,
        "successful": 3,
        "failed": 1,
        "retriable": 0,
        "non_retriable": 1,
    }
    assert body["failed_events"][0]["index"] == 1
    assert body["failed_events"][0]["pointer"] == "/run/runId"
    assert await count(engine, "event_log") == 3


async def test_batch_ndjson(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    lines = b"\n".join(orjson.dumps(run_event(when=at(3, h))) for h in range(5)) + b"\n{broken\n"
    response = await client.post(
        "/api/v1/lineage/batch", content=lines, headers={"Content-Type": "application/x-ndjson"}
    )
    body = response.json()
    assert body["summary"]["successful"] == 5
    assert body["failed_events"][0]["index"] == 5
    assert await count(engine, "event_log") == 5


async def test_batch_that_is_not_an_array_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/lineage/batch", content=orjson.dumps(run_event()))
    assert response.status_code == 400


async def test_events_spread_over_months_land_in_monthly_partitions(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    events = [run_event(when=at(1, 0, 0, month)) for month in (1, 2, 7)]
    response = await client.post("/api/v1/lineage/batch", content=orjson.dumps(events))
    assert response.json()["summary"]["successful"] == 3
    async with engine.connect() as conn:
        parts = (
            await conn.execute(
                text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'event_log'::regclass"
                )
            )
        ).scalars()
        names = set(parts)
        per_part = (
            await conn.execute(text("SELECT tableoid::regclass::text, count(*) FROM event_log GROUP BY 1"))
        ).all()
    assert {"event_log_2026_01", "event_log_2026_02", "event_log_2026_07"} <= names
    assert sorted(p for p, _ in per_part) == ["event_log_2026_01", "event_log_2026_02", "event_log_2026_07"]
