"""Group commit for the accepting path: concurrent requests share one append transaction.

Each request hands its validated events to the writer and waits. The writer takes everything queued
(up to a bound), appends it to the event log in ONE transaction (catalog/ingest/service.py `append`:
nothing is projected here) and answers every waiter with its events' log position. Under load this
turns 32 clients x 1 event into a few transactions of dozens of events: far fewer commits, and the
append lock (which keeps log ids committing in order) is taken once per group, not per request. A
request is never half-stored: if a shared transaction fails, its requests are retried one by one so only
the faulty one fails. Every service process runs one writer; the projector folds the log behind them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from catalog.db.engine import raise_if_lost, raw_connection
from catalog.db.errors import DatabaseUnavailable, is_unavailable
from catalog.ingest.service import IngestOutcome, PartitionCache, append
from catalog.openlineage.events import EventRejected, OpenLineageEvent
from catalog.periodic import raise_if_cancelled

log = logging.getLogger(__name__)

RETRIES = 3  # for transactions PostgreSQL rolled back (deadlock, serialization failure)
RECONNECTS = 1  # for a group whose connection was lost (then 503: the client retries)
RECONNECT_PAUSE = 0.05
# PostgreSQL's data exceptions (SQLSTATE class 22): a value of this event it cannot store.
DATA_EXCEPTION_CLASS = "22"


@dataclass(frozen=True, slots=True)
class Accepted:
    """One request's answer: events stored, already stored (duplicates), and the log position to wait
    for (the furthest of its events; 0 when it had none)."""

    stored: int
    duplicates: int
    position: int


@dataclass(slots=True)
class _Request:
    events: Sequence[OpenLineageEvent]
    done: asyncio.Future[Accepted] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


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
    """One per process; `submit` answers once the events are committed to the log. `appended` is called
    after each commit that stored something (the process's projector wakes at once)."""

    def __init__(
        self, engine: AsyncEngine, *, max_group: int = 256, appended: Callable[[], None] | None = None
    ) -> None:
        self._engine = engine
        self._appended = appended
        self._max_group = max_group
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._partitions = PartitionCache()
        self._task: asyncio.Task[None] | None = None
        self._held: AsyncConnection | None = None  # the writer's own connection (see `_append`)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ingest-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._held is not None:
            held, self._held = self._held, None
            with contextlib.suppress(Exception):
                await held.close()  # back to the pool
        while not self._queue.empty():
            request = self._queue.get_nowait()
            if not request.done.done():
                request.done.set_exception(DatabaseUnavailable("the service is shutting down"))

    async def submit(self, events: Sequence[OpenLineageEvent]) -> Accepted:
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
                raise_if_cancelled(exc)

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
        if self._appended is not None and any(result.stored for result in counts):
            self._appended()

    async def _append(self, events: Sequence[OpenLineageEvent]) -> IngestOutcome:
        """`append` on the writer's own connection, with no transaction around it: the one statement is the
        transaction (one round trip; through the pool, the checkout's ping, BEGIN and COMMIT were three
        more, and the serving process waited for each). A connection that fails is dropped: the next
        append takes a fresh one from the pool."""
        if self._held is None:
            self._held = await self._engine.connect()
        raw = await raw_connection(self._held)
        try:
            return await append(raw, events)
        except Exception as exc:
            lost = raw.is_closed()
            if lost or is_unavailable(exc):
                await self._drop_connection()
            raise_if_lost(exc, lost)
            raise

    async def _drop_connection(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            with contextlib.suppress(Exception):
                await held.invalidate()
            with contextlib.suppress(Exception):
                await held.close()

    async def _commit(self, batches: list[Sequence[OpenLineageEvent]]) -> list[Accepted]:
        """Commit several requests' events in one transaction; what each request stored."""
        everything = [e for batch in batches for e in batch]
        await self._partitions.ensure(self._engine, [e.event_time for e in everything])
        reconnects = 0
        attempt = 0
        while True:
            try:
                outcome = await self._append(everything)
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
            position = max((outcome.positions.get((e.event_time, e.digest), 0) for e in batch), default=0)
            results.append(Accepted(stored, len(batch) - stored, position))
        return results
