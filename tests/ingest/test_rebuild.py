"""`catalog rebuild` reproduces the live projection exactly, and arrival order does not matter."""

from __future__ import annotations

import random

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.ingest.projector import append_and_project
from catalog.ingest.rebuild import projection_fingerprint, rebuild_projection
from catalog.ingest.service import PartitionCache
from catalog.openlineage.validation import parse_event
from catalog.policies_in_force import Policies
from tests.conftest import PgServer
from tests.corpus import event_files


async def test_rebuild_after_the_whole_corpus_is_identical(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    for path in event_files():
        assert (await client.post("/api/v1/lineage", content=path.read_bytes())).status_code == 201
    async with engine.connect() as conn:
        live = await projection_fingerprint(conn)
    assert live["datasets"][0] > 50
    assert live["column_edges"][0] > 10
    assert live["runs"][0] > 50
    replayed = await rebuild_projection(engine, Policies.load(), batch_size=37)
    assert replayed > 100
    async with engine.connect() as conn:
        rebuilt = await projection_fingerprint(conn)
    assert rebuilt == live


async def test_projection_does_not_depend_on_arrival_order(engine: AsyncEngine, pg_server: PgServer) -> None:
    import orjson

    from catalog.db.engine import create_engine, raw_transaction

    events = [parse_event(orjson.loads(p.read_bytes())) for p in event_files()]
    shuffled = events[:]
    random.Random(7).shuffle(shuffled)

    policies = Policies.load()  # parsed once: every chunk folds by the same files

    async def load(target: AsyncEngine, batch: list[object], size: int) -> None:
        partitions = PartitionCache()
        for i in range(0, len(batch), size):
            chunk = batch[i : i + size]
            await partitions.ensure(target, [e.event_time for e in chunk])  # type: ignore[attr-defined]
            async with raw_transaction(target) as raw:
                await append_and_project(raw, chunk, policies)  # type: ignore[arg-type]

    name = "t_order_" + str(random.randrange(1 << 30))
    pg_server.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_server.template}"')
    other = create_engine(pg_server.url_for(name), pool_size=1)
    try:
        await load(engine, list(events), 1)
        await load(other, list(reversed(shuffled)), 50)
        async with engine.connect() as a, other.connect() as b:
            first, second = await projection_fingerprint(a), await projection_fingerprint(b)
        differing = {t for t in first if first[t] != second[t]}
        assert not differing
    finally:
        await other.dispose()
        pg_server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
