"""Builders and checks for the projector's tests: a varied stream of events, a backlog appended without
projecting, the backend of the active projector, and the proofs that nothing was lost or applied twice."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.config import Settings
from catalog.db.engine import libpq_dsn, raw_connection, raw_transaction
from catalog.ingest.projector import PROJECTOR_LOCK_KEY, status
from catalog.ingest.rebuild import projection_fingerprint, rebuild_projection
from catalog.ingest.service import PartitionCache, append
from catalog.openlineage.validation import parse_event
from catalog.policies_in_force import Policies
from tests.conftest import ADMIN_TOKEN
from tests.factories import at, column_lineage, dataset, run_event, schema

PG = "postgres://payments-db:5432"


def asynchronous_settings(tmp_path: Path, **more: Any) -> Settings:
    """Ingest answers once logged (the asynchronous path itself), and quick failover."""
    return Settings(
        home=tmp_path / "home",
        admin_token=ADMIN_TOKEN,
        log_format="console",
        ingest_default_wait="logged",
        projector_standby_seconds=0.2,
        **more,
    )


def stream(count: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """Jobs reading and writing shared datasets, with PII-looking columns (classification and its
    propagation run), column lineage, credentials in URIs (findings) and ownership facets."""
    events = []
    for i in range(count):
        n = i + seed
        source = dataset(
            PG,
            f"public.users_{n % 7}",
            schema=schema("id", "email", "cpf", "amount"),
            dataSource={"name": "payments-db", "uri": f"postgres://app:pw{n % 3}@payments-db:5432/payments"},
        )
        target = dataset(
            "bigquery",
            f"mart.out_{n % 11}",
            schema=schema("id", "email_hash", "amount"),
            columnLineage=column_lineage(
                {
                    "email_hash": [
                        (PG, f"public.users_{n % 7}", "email", "INDIRECT", "TRANSFORMATION", n % 2 == 0)
                    ],
                    "amount": [(PG, f"public.users_{n % 7}", "amount", "DIRECT", "IDENTITY", False)],
                }
            ),
            ownership={"owners": [{"name": f"team:t{n % 4}", "type": "TEAM"}]},
        )
        events.append(
            run_event(
                "COMPLETE" if n % 3 else "START",
                when=at(1 + n % 27, n % 24, n % 60),
                run_id=str(uuid.uuid4()),
                job=(f"airflow-{n % 5}", f"dag_{n % 13}.task"),
                inputs=[source],
                outputs=[target],
            )
        )
    return events


async def append_backlog(engine: AsyncEngine, payloads: list[dict[str, Any]], *, batch: int = 500) -> int:
    """Append events through the accepting path's code without projecting them; the last position."""
    events = [parse_event(orjson.loads(orjson.dumps(p))) for p in payloads]
    partitions = PartitionCache()
    position = 0
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        await partitions.ensure(engine, [e.event_time for e in chunk])
        async with raw_transaction(engine) as raw:
            outcome = await append(raw, chunk)
        position = max([position, *outcome.positions.values()])
    return position


async def projector_status(engine: AsyncEngine) -> Any:
    async with engine.connect() as conn:
        return await status(await raw_connection(conn))


def projector_backend(database_url: str) -> dict[str, Any] | None:
    """The backend holding the projector's lock: its pid and whether it is inside a transaction."""
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT a.pid, a.xact_start IS NOT NULL AS in_transaction, a.state FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.objid = %s AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (PROJECTOR_LOCK_KEY & 0xFFFFFFFF,),
        ).fetchone()
    return None if row is None else {"pid": row[0], "in_transaction": row[1], "state": row[2]}


async def rebuild_matches(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        live = await projection_fingerprint(conn)
    await rebuild_projection(engine, Policies.load(), batch_size=200)
    async with engine.connect() as conn:
        rebuilt = await projection_fingerprint(conn)
    assert {t for t in live if live[t] != rebuilt[t]} == set()
    assert live["column_edges"][0] > 0
    assert live["classifications"][0] > 0


async def no_audit_row_twice(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        doubled = await conn.execute(
            text(
                "SELECT action, subject, details ->> 'owner' FROM audit_log WHERE action LIKE 'ownership.%' "
                "GROUP BY 1, 2, 3 HAVING count(*) > 1"
            )
        )
        assert doubled.all() == []


def gone(pid: int) -> bool:
    """Exited (reaped, or a zombie nobody reaps yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def until_a_step_is_in_flight(database_url: str, engine: AsyncEngine, *, after: int = 0) -> None:
    """Until the projector has committed a step past `after` and is inside its next one (a kill now lands
    mid-batch)."""
    deadline = time.monotonic() + 90
    while True:
        assert time.monotonic() < deadline, "the projector made no progress"
        backend = projector_backend(database_url)
        in_flight = backend is not None and backend["in_transaction"] and backend["state"] == "active"
        if in_flight and (await projector_status(engine)).position > after:
            return
        await asyncio.sleep(0.02)
