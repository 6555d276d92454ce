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
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.db.engine import raw_transaction
from catalog.db.errors import DatabaseUnavailable, is_unavailable
from catalog.ingest.service import PartitionCache, append_and_project
from catalog.ingest.statistics import GrowthAnalyzer
from catalog.openlineage.events import EventRejected, OpenLineageEvent

log = logging.getLogger(__name__)

RETRIES = 3  # for transactions PostgreSQL rolled back (deadlock, serialization failure)
RECONNECTS = 1  # for a group whose connection was lost (then 503: the client retries)
RECONNECT_PAUSE = 0.05
# PostgreSQL's data exceptions (SQLSTATE class 22): a value of this event it cannot store.
DATA_EXCEPTION_CLASS = "22"


@dataclass(slots=True)
class _Request:
    events: Sequence[OpenLineageEvent]
    done: asyncio.Future[tuple[int, int]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def _retry_later(exc: BaseException) -> DatabaseUnavailable:
    error = DatabaseUnavailable(f"nothing was stored ({type(exc).__name__}); retry")
    error.__cause__ = exc
    return error


def _failure(exc: Exception) -> Exception:
    """What one request's failed commit answers: its own data error (4xx), else 503 (retry).

    The events passed validation before they were queued, so a failure that is not about a value of
    theirs is the service's (a lost connection, a bug): nothing was stored and a retry is safe."""
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith(DATA_EXCEPTION_CLASS):
        rejected = EventRejected("", f"PostgreSQL cannot store a value of this event: {exc}", status=422)
        rejected.__cause__ = exc
        return rejected
    if not is_unavailable(exc):
        log.error("ingest failed on one request", exc_info=exc)
    return _retry_later(exc)


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
            except Exception as exc:  # the loop must survive anything
                log.exception("ingest writer failed on a group of %d requests", len(group))
                for request in group:
                    if not request.done.done():
                        # The events were valid and are not acknowledged; sending them again is safe
                        # (the event log deduplicates), so the caller gets 503 + Retry-After, not 500.
                        request.done.set_exception(_retry_later(exc))

    async def _commit_group(self, group: list[_Request]) -> None:
        try:
            counts = await self._commit([r.events for r in group])
        except Exception as exc:
            if is_unavailable(exc):
                self._partitions.forget()
                for request in group:
                    request.done.set_exception(_retry_later(exc))
                return
            if len(group) == 1:
                group[0].done.set_exception(_failure(exc))
                return
            # Isolate the faulty request: retry each alone.
            for request in group:
                try:
                    (counts_one,) = await self._commit([request.events])
                    request.done.set_result(counts_one)
                except Exception as one_exc:
                    request.done.set_exception(_failure(one_exc))
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
        reconnects = 0
        attempt = 0
        while True:
            try:
                async with raw_transaction(self._engine) as raw:
                    outcome = await append_and_project(raw, everything)
                break
            except asyncpg.exceptions.TransactionRollbackError as exc:
                # deadlock_detected / serialization_failure: nothing of it was stored; try again.
                if attempt == RETRIES:
                    raise
                attempt += 1
                log.info("ingest transaction rolled back by PostgreSQL (%s); retrying", exc.sqlstate)
                await asyncio.sleep(0.01 * attempt)
            except Exception as exc:
                # A lost connection (a backend terminated, a failover) usually leaves the pool with a
                # fresh one a moment later: try once more before answering 503. Safe even when the
                # COMMIT had gone through before the loss: the event log deduplicates.
                if not is_unavailable(exc) or reconnects == RECONNECTS:
                    raise
                reconnects += 1
                self._partitions.forget()
                log.info("ingest lost its database connection (%s); retrying once", type(exc).__name__)
                await asyncio.sleep(RECONNECT_PAUSE)
                await self._partitions.ensure(self._engine, [e.event_time for e in everything])
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
