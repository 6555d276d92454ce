"""Backends killed mid-load (pg_terminate_backend, three times) while 8 clients ingest and read over real
HTTP: every answer is a success or a 503 with Retry-After (never another 5xx), and every acknowledged
event is stored exactly once."""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from typing import Any

import httpx
import orjson
import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.db.engine import libpq_dsn
from catalog.ingest.service import APPEND_LOCK_KEY
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.factories import at, dataset, run_event, schema

CLIENTS = 8
EVENTS_PER_CLIENT = 40
KILLS = 3

GQL = "query($ns: String) { datasets(namespace: $ns, first: 5) { nodes { name fields { name } } } }"


def _terminate_service_backends(database_url: str) -> tuple[int, int]:
    """Kill every backend of the service (application_name 'catalog…': the projector's is named
    'catalog projector <host>:<pid>') on the test database, once some
    of them are busy: (killed, of which busy). Polls until a statement or transaction is in flight (for up
    to 10 s: a group append is one short statement, so a few hundred polls can all fall between two)."""
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as conn:
        busy = 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            busy = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name LIKE 'catalog%' AND state IN ('active', 'idle in transaction')"
            ).fetchone()[0]  # type: ignore[index]
            if busy:
                break
        killed = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE 'catalog%'"
        ).fetchone()[0]  # type: ignore[index]
    return int(killed), int(busy)


def _event(client: int, i: int) -> dict[str, Any]:
    return run_event(
        when=at(1 + i % 25, client, i % 60),
        run_id=str(uuid.uuid4()),
        job=(f"airflow-team{client % 3}", f"job_{i % 5}"),
        inputs=[dataset("bigquery", f"raw.in_{i % 4}", schema=schema("id", "cpf", "amount"))],
        outputs=[dataset("bigquery", f"mart.out_{client}_{i % 3}", schema=schema("id", "amount"))],
    )


async def test_backends_killed_mid_load_answer_503_and_lose_nothing(
    live_server: LiveServer, database_url: str, engine: AsyncEngine
) -> None:
    statuses: collections.Counter[tuple[str, int]] = collections.Counter()
    bad: list[str] = []
    acknowledged: list[str] = []
    total = CLIENTS * EVENTS_PER_CLIENT

    def check(what: str, response: httpx.Response, ok: int) -> bool:
        """Record an answer; True when it succeeded, False for a 503 to retry."""
        statuses[(what, response.status_code)] += 1
        if response.status_code == ok:
            return True
        if response.status_code == 503:
            if not response.headers.get("retry-after") or not response.headers["content-type"].startswith(
                "application/problem+json"
            ):
                bad.append(f"{what}: 503 without Retry-After/problem+json: {response.headers}")
            return False
        bad.append(f"{what}: {response.status_code} {response.text[:300]}")
        return True  # not retried: it is a failure of the test already

    async def client(number: int) -> None:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with httpx.AsyncClient(base_url=live_server.url, headers=headers, timeout=30) as http:
            for i in range(EVENTS_PER_CLIENT):
                event = _event(number, i)
                while True:
                    answer = await http.post("/api/v1/lineage", content=orjson.dumps(event))
                    if check("ingest", answer, 201):
                        if answer.status_code == 201:
                            acknowledged.append(event["run"]["runId"])
                        break
                    await asyncio.sleep(0.02)  # the server asks for 1 s; the test does not wait that long
                if i % 4 == number % 4:  # reads in between: REST (SQLAlchemy and raw asyncpg) and GraphQL
                    read = await http.get("/api/v1/namespaces/bigquery/datasets", params={"limit": 5})
                    check("datasets", read, 200)
                    read = await http.get("/api/v1/lineage", params={"nodeId": "dataset:bigquery:raw.in_0"})
                    check("lineage", read, 200)
                    read = await http.post("/graphql", json={"query": GQL, "variables": {"ns": "bigquery"}})
                    if check("graphql", read, 200) and read.status_code == 200 and read.json().get("errors"):
                        bad.append(f"graphql: {read.json()['errors']}")

    async def killer() -> list[tuple[int, int]]:
        kills: list[tuple[int, int]] = []
        for k in range(KILLS):
            while len(acknowledged) < total * (k + 1) // (KILLS + 2):  # noqa: ASYNC110 - a progress poll
                await asyncio.sleep(0.005)
            kills.append(await asyncio.to_thread(_terminate_service_backends, database_url))
        return kills

    kill_task = asyncio.create_task(killer())
    await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    kills = await asyncio.wait_for(kill_task, 30)

    print(dict(statuses), kills)
    assert bad == []
    assert len(kills) == KILLS
    assert all(killed > 0 and busy > 0 for killed, busy in kills), kills
    assert {status for _, status in statuses} <= {200, 201, 503}, statuses
    assert len(acknowledged) == total
    async with engine.connect() as conn:
        rows = (
            await conn.execute(text("SELECT run_uuid::text, count(*) FROM event_log GROUP BY run_uuid"))
        ).all()
    stored: dict[str, int] = dict(rows)
    assert sorted(stored) == sorted(acknowledged)
    assert set(stored.values()) == {1}


def test_unavailability_is_classified_by_class_and_sqlstate() -> None:
    import asyncpg
    from sqlalchemy.exc import DBAPIError

    from catalog.db.errors import DatabaseUnavailable, is_unavailable

    # The error asyncpg raises when a backend is killed inside `async with conn.transaction()`: by
    # itself (class InterfaceError, also used for misuse) it says nothing; its context does.
    lost = asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    try:
        try:
            raise lost
        except Exception:
            raise asyncpg.InterfaceError(  # noqa: B904 - asyncpg raises it implicitly chained, like this
                "cannot call Transaction.__aexit__(): the underlying connection is closed"
            )
    except asyncpg.InterfaceError as exc:
        wrapped = exc
    assert wrapped.__context__ is lost
    assert is_unavailable(wrapped)
    assert not is_unavailable(asyncpg.InterfaceError("cannot perform operation: another operation"))
    for state_class in (
        asyncpg.AdminShutdownError,
        asyncpg.CannotConnectNowError,
        asyncpg.TooManyConnectionsError,
    ):
        assert is_unavailable(state_class("any wording"))
    assert is_unavailable(asyncpg.exceptions.CrashShutdownError("x"))
    assert not is_unavailable(asyncpg.exceptions.CharacterNotInRepertoireError("x"))  # 22021: bad data
    assert not is_unavailable(asyncpg.exceptions.UniqueViolationError("x"))
    assert is_unavailable(ConnectionRefusedError(111, "refused"))
    assert is_unavailable(OSError("Multiple exceptions: [Errno 111] Connect call failed"))
    assert is_unavailable(FileNotFoundError(2, "No such file or directory"))  # a Unix socket
    assert not is_unavailable(FileNotFoundError(2, "No such file or directory", "/keys/kek"))  # a file
    assert not is_unavailable(PermissionError(13, "Permission denied", "/exports/x.zip"))
    assert is_unavailable(DatabaseUnavailable("lost"))
    wrapped_sa = DBAPIError("SELECT 1", {}, asyncpg.exceptions.AdminShutdownError("bye"))
    assert is_unavailable(wrapped_sa)
    assert not is_unavailable(ValueError("connection refused"))  # the words alone do not count


async def test_a_flush_whose_connection_dies_answers_503_to_every_waiting_request(
    client: httpx.AsyncClient, database_url: str, engine: AsyncEngine
) -> None:
    # Deterministic: the writer's transactions are held mid-way on a lock this test holds, and their
    # backends are terminated while they wait, every time (so the writer's one reconnect fails too).
    assert (await client.post("/api/v1/lineage", content=orjson.dumps(_event(0, 0)))).status_code == 201
    events = [_event(1, i) for i in range(3)]
    with psycopg.connect(libpq_dsn(database_url)) as blocker:
        # The accepting path's append lock (catalog/ingest/service.py): appends wait on it.
        blocker.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK_KEY,))
        sends = [asyncio.create_task(client.post("/api/v1/lineage", content=orjson.dumps(e))) for e in events]
        killed = 0
        with psycopg.connect(libpq_dsn(database_url), autocommit=True) as killer:
            while not all(s.done() for s in sends):
                row = killer.execute(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name LIKE 'catalog%' "
                    "AND wait_event_type = 'Lock'"
                ).fetchone()
                killed += row[0] if row else 0
                await asyncio.sleep(0.02)
        blocker.rollback()
    answers = [s.result() for s in sends]
    assert killed >= 2  # the first attempt and the writer's retry, at least
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "1"
        assert answer.json()["type"] == "/problems/database-unavailable"
    async with engine.connect() as conn:
        assert (
            await conn.execute(text("SELECT count(*) FROM event_log"))
        ).scalar_one() == 1  # nothing half-stored
    # The client retries: now stored, once each.
    for event in events:
        answer = await client.post("/api/v1/lineage", content=orjson.dumps(event))
        assert answer.json()["status"] == "created"
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM event_log"))).scalar_one() == 4
