"""The projector reads "every event after position N": that is only safe if log ids commit in order.
Concurrent appenders, each committing at a random moment, and a reader that moves its position like the
projector must end up having read every committed event (catalog/ingest/service.py, the append lock)."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.db.engine import create_engine, raw_connection, raw_transaction
from catalog.ingest.projector import read_after
from catalog.ingest.service import APPENDED_CHANNEL, PartitionCache, append
from catalog.ingest.writer import IngestWriter
from catalog.openlineage.events import OpenLineageEvent
from catalog.openlineage.validation import parse_event
from tests.factories import at, dataset, run_event

APPENDERS = 8
TRANSACTIONS = 25


def _event(writer: int, i: int) -> OpenLineageEvent:
    payload: dict[str, Any] = run_event(
        when=at(1 + i % 20, writer, i % 60),
        run_id=str(uuid.uuid4()),
        job=("airflow", f"job_{writer}"),
        outputs=[dataset("bigquery", f"out_{writer}_{i % 3}")],
    )
    return parse_event(orjson.loads(orjson.dumps(payload)))


async def test_the_identity_sequence_hands_out_ids_one_at_a_time(engine: AsyncEngine) -> None:
    """A per-backend sequence cache would hand out ids out of commit order whatever the lock does."""
    async with engine.connect() as conn:
        cache = await conn.exec_driver_sql(
            "SELECT seqcache FROM pg_sequence WHERE seqrelid = pg_get_serial_sequence('event_log', 'id')::regclass"
        )
        assert cache.scalar_one() == 1


async def test_a_later_appender_waits_for_the_earlier_one_to_commit(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=3)
    try:
        partitions = PartitionCache()
        first, second = _event(1, 1), _event(2, 2)
        await partitions.ensure(engine, [first.event_time, second.event_time])
        async with raw_transaction(engine) as raw:
            earlier = await append(raw, [first])
            later_task = asyncio.create_task(_append_one(engine, second))
            await asyncio.sleep(0.3)
            # Without the lock the second would have drawn a later id and committed first.
            assert not later_task.done()
            async with engine.connect() as conn:
                seen = await conn.exec_driver_sql("SELECT count(*) FROM event_log")
                assert seen.scalar_one() == 0
        later = await later_task
        (first_id,) = earlier.positions.values()
        assert later > first_id
    finally:
        await engine.dispose()


async def _append_one(engine: AsyncEngine, event: OpenLineageEvent) -> int:
    async with raw_transaction(engine) as raw:
        outcome = await append(raw, [event])
    return max(outcome.positions.values())


async def test_concurrent_appenders_never_make_the_reader_skip_a_late_commit(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=APPENDERS + 2)
    partitions = PartitionCache()
    events = {w: [_event(w, i) for i in range(TRANSACTIONS)] for w in range(APPENDERS)}
    await partitions.ensure(engine, [e.event_time for batch in events.values() for e in batch])
    committed: set[int] = set()
    read: list[int] = []
    done = asyncio.Event()
    rng = random.Random(13)

    async def appender(writer: int) -> None:
        for event in events[writer]:
            async with raw_transaction(engine) as raw:
                outcome = await append(raw, [event])
                # Hold the transaction open a random while after drawing the id: without the lock this
                # is exactly how a lower id comes to commit after a higher one.
                await asyncio.sleep(rng.uniform(0, 0.01))
            committed.update(outcome.positions.values())

    try:
        reading = asyncio.create_task(_read_like_the_projector(engine, done, read, step=7))
        await asyncio.gather(*(appender(w) for w in range(APPENDERS)))
        done.set()
        await reading
    finally:
        await engine.dispose()
    assert len(committed) == APPENDERS * TRANSACTIONS
    assert read == sorted(read)  # in log order, each once
    assert set(read) == committed  # and none skipped


async def _read_like_the_projector(
    engine: AsyncEngine, done: asyncio.Event, read: list[int], step: int
) -> None:
    """Read "every event after my position", `step` at a time, moving the position past each, until
    `done` and nothing is left; `read` gets every id read, in the order read."""
    position = 0
    while True:
        finished = done.is_set()
        async with engine.connect() as conn:
            batch = await read_after(await raw_connection(conn), position, step)
        read.extend(logged.id for logged in batch)
        position = batch[-1].id if batch else position
        if finished and not batch:
            return
        await asyncio.sleep(0.001)


async def test_appenders_in_several_processes_create_a_new_months_partition_once(database_url: str) -> None:
    """Each process has its own PartitionCache: two may create the same month's partition at once (seen
    with `catalog serve --workers 2`: DuplicateTableError, a failed ingest). Every one must succeed."""
    import datetime as dt

    engines = [create_engine(database_url, pool_size=1) for _ in range(APPENDERS)]
    try:
        for month in range(1, 7):  # months no other test logs events in
            when = dt.datetime(2031, month, 15, tzinfo=dt.UTC)
            await asyncio.gather(*(PartitionCache().ensure(e, [when]) for e in engines))
        async with engines[0].connect() as conn:
            made = await conn.exec_driver_sql(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'event_log'::regclass "
                "AND inhrelid::regclass::text LIKE 'event_log_2031_%'"
            )
            assert made.scalar_one() == 6
    finally:
        for e in engines:
            await e.dispose()


async def test_writers_in_several_processes_never_make_the_reader_skip_a_late_commit(
    database_url: str,
) -> None:
    """The accepting path's writer appends with no transaction around its one statement (the statement is
    the transaction): the same guarantee as above, with several writers (one per service process)
    appending groups at once."""
    writers = [IngestWriter(create_engine(database_url, pool_size=2)) for _ in range(4)]
    events = {w: [_event(10 + w, i) for i in range(TRANSACTIONS * 2)] for w in range(len(writers))}
    reader_engine = create_engine(database_url, pool_size=2)
    read: list[int] = []
    done = asyncio.Event()

    async def writer(w: int) -> set[int]:
        positions = set()
        for i in range(0, len(events[w]), 3):
            accepted = await writers[w].submit(events[w][i : i + 3])
            assert accepted.stored == len(events[w][i : i + 3])
            positions.add(accepted.position)
        return positions

    for w in writers:
        await w.start()
    try:
        reading = asyncio.create_task(_read_like_the_projector(reader_engine, done, read, step=5))
        answered = await asyncio.gather(*(writer(w) for w in range(len(writers))))
        done.set()
        await reading
    finally:
        for w in writers:
            await w.stop()
            await w._engine.dispose()
        await reader_engine.dispose()
    assert len(read) == sum(len(batch) for batch in events.values())
    assert read == sorted(set(read))  # in log order, each once
    assert set().union(*answered) <= set(read)  # every answered position was read


async def test_an_append_answers_where_duplicates_are_and_notifies_only_for_new_events(
    database_url: str,
) -> None:
    engine = create_engine(database_url, pool_size=2)
    listening = await engine.connect()
    listener = await raw_connection(listening)
    notified: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(APPENDED_CHANNEL, lambda *args: notified.put_nowait(args[2]))
    first, second, third = _event(20, 1), _event(20, 2), _event(20, 3)
    try:
        await PartitionCache().ensure(engine, [first.event_time, second.event_time, third.event_time])
        async with engine.connect() as conn:
            raw = await raw_connection(conn)  # no transaction: the ingest writer's way
            earlier = await append(raw, [first, second])
            await asyncio.wait_for(notified.get(), 5)
            again = await append(raw, [second, first, first])
            await asyncio.sleep(0.3)
            assert notified.empty()  # nothing new: nobody woken
            mixed = await append(raw, [third, first])
            await asyncio.wait_for(notified.get(), 5)
        assert (earlier.stored, earlier.duplicates) == (2, 0)
        assert (again.stored, again.duplicates, again.fresh) == (0, 3, frozenset())
        assert again.positions == earlier.positions  # a retry is told where its events already are
        assert (mixed.stored, mixed.duplicates) == (1, 1)
        assert mixed.fresh == {(third.event_time, third.digest)}
        key = (first.event_time, first.digest)
        assert mixed.positions[key] == earlier.positions[key]
        assert mixed.positions[(third.event_time, third.digest)] > max(earlier.positions.values())
    finally:
        await listening.close()
        await engine.dispose()
