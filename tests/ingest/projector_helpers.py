"""Builders for the projector's tests: a varied stream of events, a backlog appended without projecting,
and the backend of the active projector."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import psycopg
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.db.engine import libpq_dsn, raw_connection, raw_transaction
from catalog.ingest.projector import PROJECTOR_LOCK_KEY, status
from catalog.ingest.service import PartitionCache, append
from catalog.openlineage.validation import parse_event
from tests.factories import at, column_lineage, dataset, run_event, schema

PG = "postgres://payments-db:5432"


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
