"""Group commit for the HTTP ingest path: concurrent requests share one transaction.

Each request hands its validated events to the writer and waits. The writer takes everything queued
(up to a bound), appends and projects it in ONE transaction, and answers every waiter. Under load this
turns 32 clients x 1 event into a few transactions of dozens of events: far fewer commits and no row
lock convoys on the hot namespace/dataset rows. A request is never half-stored: if a shared
transaction fails, its requests are retried one by one so only the faulty one fails.

One writer per process: running two group transactions at once measured no gain on 2 cores (1,000
single events, 32 clients: 132-158/s with one, 120-134/s with two). Concurrent transactions from other
service processes lock projection rows in the same sorted order; a deadlock or serialization failure that still happens (e.g. in
the governance steps) rolls the whole transaction back and is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.db.engine import raw_transaction
from catalog.ingest.service import PartitionCache, append_and_project
from catalog.ingest.statistics import GrowthAnalyzer
from catalog.openlineage.events import OpenLineageEvent

log = logging.getLogger(__name__)

RETRIES = 3  # for transactions PostgreSQL rolled back (deadlock, serialization failure)


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL cannot be reached right now; the client should retry (HTTP 503)."""


@dataclass(slots=True)
class _Request:
    events: Sequence[OpenLineageEvent]
    done: asyncio.Future[tuple[int, int]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def is_unavailable(exc: BaseException) -> bool:
    """True for errors that mean 'the database is down or restarting', not 'this data is wrong'."""
    if isinstance(exc, OSError | ConnectionError | asyncio.TimeoutError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError):
        return True
    text = f"{type(exc).__name__} {exc}".lower()
    return any(
        marker in text
        for marker in (
            "cannotconnectnow",
            "connection was closed",
            "connectiondoesnotexist",
            "adminshutdown",
            "the database system is",
            "terminating connection",
            "connection refused",
            "too many clients",
        )
    )


class IngestWriter:
    """One per process; `submit` returns (stored, duplicates) once the events are committed."""

    def __init__(self, engine: AsyncEngine, *, max_group: int = 256) -> None:
        self._engine = engine
        self._max_group = max_group
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._partitions = PartitionCache()
        self._analyzer = GrowthAnalyzer(engine)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ingest-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            request = self._queue.get_nowait()
            if not request.done.done():
                request.done.set_exception(DatabaseUnavailable("the service is shutting down"))

    async def submit(self, events: Sequence[OpenLineageEvent]) -> tuple[int, int]:
        request = _Request(events)
        await self._queue.put(request)
        return await request.done

    async def _run(self) -> None:
        while True:
            group = [await self._queue.get()]
            size = len(group[0].events)
            while size < self._max_group and not self._queue.empty():
                request = self._queue.get_nowait()
                group.append(request)
                size += len(request.events)
            try:
                await self._commit_group(group)
            except Exception:  # the loop must survive anything
                log.exception("ingest writer failed on a group of %d requests", len(group))
                for request in group:
                    if not request.done.done():
                        request.done.set_exception(RuntimeError("ingest failed"))

    async def _commit_group(self, group: list[_Request]) -> None:
        try:
            counts = await self._commit([r.events for r in group])
        except Exception as exc:
            if is_unavailable(exc):
                self._partitions.forget()
                for request in group:
                    request.done.set_exception(DatabaseUnavailable(str(exc)))
                return
            if len(group) == 1:
                group[0].done.set_exception(exc)
                return
            # Isolate the faulty request: retry each alone.
            for request in group:
                try:
                    (counts_one,) = await self._commit([request.events])
                    request.done.set_result(counts_one)
                except Exception as one_exc:
                    request.done.set_exception(
                        DatabaseUnavailable(str(one_exc)) if is_unavailable(one_exc) else one_exc
                    )
            return
        for request, result in zip(group, counts, strict=True):
            request.done.set_result(result)
        try:
            await self._analyzer.maybe_analyze(sum(stored for stored, _ in counts))
        except Exception as exc:  # statistics are an optimisation: never fail ingest for them
            log.warning("ANALYZE after ingest failed: %s", exc)

    async def _commit(self, batches: list[Sequence[OpenLineageEvent]]) -> list[tuple[int, int]]:
        """Commit several requests' events in one transaction; (stored, duplicates) per request."""
        everything = [e for batch in batches for e in batch]
        await self._partitions.ensure(self._engine, [e.event_time for e in everything])
        for attempt in range(RETRIES + 1):
            try:
                async with raw_transaction(self._engine) as raw:
                    outcome = await append_and_project(raw, everything)
                break
            except asyncpg.exceptions.TransactionRollbackError as exc:
                # deadlock_detected / serialization_failure: nothing of it was stored; try again.
                if attempt == RETRIES:
                    raise
                log.info("ingest transaction rolled back by PostgreSQL (%s); retrying", exc.sqlstate)
                await asyncio.sleep(0.01 * (attempt + 1))
        results = []
        unclaimed = set(outcome.fresh)
        for batch in batches:
            stored = 0
            for event in batch:
                key = (event.event_time, event.digest)
                if key in unclaimed:
                    unclaimed.discard(key)
                    stored += 1
            results.append((stored, len(batch) - stored))
        return results
