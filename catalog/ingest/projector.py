"""The projector: folds the event log into the catalog (projection, PII classification, ownership-claim
audit, findings), in log order, in large batches, behind the accepting path.

- Resumes from `projector_state.position` (an `event_log.id`). Each step reads the position FOR UPDATE,
  folds the next events and advances the position in the SAME transaction: a crash anywhere rolls the
  whole step back, so nothing is applied twice and nothing is skipped. Reading "after N" is safe because
  ids commit in order (catalog/ingest/service.py explains the append lock).
- One active projector across every process: the leader holds a session advisory lock on a dedicated
  connection and runs its steps on that same connection. If the process dies or its connection is lost,
  PostgreSQL drops the lock with the connection (and rolls back the step in flight); the others try the
  lock every `standby_poll` seconds and one of them takes over. The FOR UPDATE on the position row would
  serialise two projectors anyway (each step re-reads the position after the other's commit).
- An event that fails to fold (a bug, a constraint) is set aside with its error in
  `projection_set_aside`, and the rest of the batch goes on (one savepoint per event, only after the
  batch as a whole failed). `retry_set_aside` folds them again after a fix. Lost connections and
  rollbacks PostgreSQL asked for (deadlock, serialization) are not the event's fault: the step is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.db.backend_priority import lower_backend_priority
from catalog.db.engine import create_engine, raw_connection, raw_transaction
from catalog.db.errors import is_unavailable
from catalog.ingest.accepting_load import YieldToAccepting
from catalog.ingest.extract import EventKey
from catalog.ingest.service import APPENDED_CHANNEL, IngestOutcome, append, fold
from catalog.ingest.statistics import GrowthAnalyzer
from catalog.memory import release_freed_memory
from catalog.openlineage.events import EventRejected, Limits, OpenLineageEvent
from catalog.openlineage.validation import parse_logged
from catalog.periodic import raise_if_cancelled
from catalog.policies_in_force import Policies

log = logging.getLogger(__name__)

STATE = "catalog"  # the projector_state row of the catalog's projector
# Session advisory lock held by the active projector (an arbitrary constant no other module uses).
PROJECTOR_LOCK_KEY = 0x0C47A107
# The most events one step folds (when behind; caught up, a step takes what is pending). Large, because
# a batch folds repeats of a field, an edge, a facet into one row write: on the bench's stream (jobs
# re-running with the same schema and column lineage) 5000 a step projected 1,934 events/s against
# 1,391 with 1000, for ~110 MB more at the peak (`bench/ingest.py`'s projector phase, same box, same run).
BATCH_SIZE = 5000
ANALYZE_FROM = 1000  # rows a table gains before the first ANALYZE (then every doubling)
# Events a step must have folded before the memory it freed is handed back to the system (see
# release_freed_memory): a large batch's texts leave the C heap fragmented, and the service's RSS would
# keep the high-water mark of the largest batch it ever folded.
TRIM_FROM = 1000
# Stored events were validated on the way in; re-parsing them must not reject one because "now" moved.
REPLAY_LIMITS = Limits(latest_skew=dt.timedelta(days=365 * 1000))

READ_IDS = """
SELECT id, digest, payload, emitter_product, emitter_key, redactions FROM event_log WHERE id = ANY($1::bigint[]) ORDER BY id
"""
READ_AFTER = """
SELECT id, digest, payload, emitter_product, emitter_key, redactions FROM event_log
WHERE id > $1 AND id <= $2 AND (NOT $4 OR id NOT IN (SELECT event_id FROM projection_set_aside WHERE event_id <= $2))
ORDER BY id LIMIT $3
"""
SET_ASIDE = """
INSERT INTO projection_set_aside (event_id, event_time, error)
SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[])
ON CONFLICT (event_id) DO UPDATE SET error = excluded.error, set_aside_at = now(),
    attempts = projection_set_aside.attempts + 1
"""
STATUS = """
SELECT s.position, s.updated_at, s.last_error, s.last_error_at,
       (SELECT count(*) FROM event_log WHERE id > s.position) AS lag_events,
       (SELECT extract(epoch FROM clock_timestamp() - min(received_at)) FROM event_log WHERE id > s.position)
           AS lag_seconds,
       (SELECT max(id) FROM event_log) AS head,
       (SELECT count(*) FROM projection_set_aside) AS set_aside,
       (SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted AND l.database = d.oid
           AND l.classid = ($2::bigint >> 32)::oid AND l.objid = ($2::bigint & 4294967295)::oid
           AND l.objsubid = 1) AS holder
FROM projector_state s, (SELECT oid FROM pg_database WHERE datname = current_database()) d
WHERE s.name = $1
"""
# The projector names its connection while it holds the lock, so `status` (any process) and
# pg_stat_activity tell which process projects: with `catalog serve --workers N` and several hosts,
# "is it projecting, and where" is the operator's first question.
HOLDER_PREFIX = "catalog projector "


def holder_name() -> str:
    """`<host>:<pid>` of this process (PostgreSQL keeps 63 bytes of an application_name)."""
    return f"{socket.gethostname()}:{os.getpid()}"


async def _take_the_lead(raw: asyncpg.Connection[Any]) -> bool:
    """Whether this connection now holds the projector's lock (then it carries this process's name)."""
    if not await raw.fetchval("SELECT pg_try_advisory_lock($1)", PROJECTOR_LOCK_KEY):
        return False
    await raw.execute("SELECT set_config('application_name', $1, false)", HOLDER_PREFIX + holder_name())
    return True


async def _let_go(raw: asyncpg.Connection[Any]) -> None:
    await raw.execute("SELECT pg_advisory_unlock($1)", PROJECTOR_LOCK_KEY)
    await raw.execute("RESET application_name")  # back to the pool as a plain `catalog` connection


@dataclass(frozen=True, slots=True)
class Logged:
    id: int
    event_time: dt.datetime
    event: OpenLineageEvent | None  # None: the payload no longer parses (set aside with `error`)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Step:
    folded: int  # events read from the log by this step (set-aside ones included)
    set_aside: int
    position: int


@dataclass(frozen=True, slots=True)
class Status:
    position: int
    head: int
    lag_events: int
    lag_seconds: float
    last_error: str | None
    last_error_at: dt.datetime | None
    set_aside: int
    updated_at: dt.datetime
    projector: str | None  # `<host>:<pid>` of the process projecting now (None: none holds the lock)


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


async def read_after(
    raw: asyncpg.Connection[Any],
    position: int,
    limit: int,
    *,
    upto: int = 2**63 - 1,
    skip_set_aside: bool = False,
) -> list[Logged]:
    """The next `limit` logged events after `position` (up to `upto`), in log order, parsed as they were
    accepted (the emitter's product read beside the payload: whose view its facets are; the pointers of
    the values redacted on the way in)."""
    return _parsed(await raw.fetch(READ_AFTER, position, upto, limit, skip_set_aside))


def _parsed(records: Sequence[asyncpg.Record]) -> list[Logged]:
    out = []
    for r in records:
        payload = _json(r["payload"])
        try:
            event = replace(
                parse_logged(payload, bytes(r["digest"]), limits=REPLAY_LIMITS),
                emitter=r["emitter_product"],
                emitter_key=r["emitter_key"],
                redactions=tuple(r["redactions"] or ()),  # what was redacted on the way in
            )
        except EventRejected as exc:
            when = dt.datetime.fromisoformat(str(payload.get("eventTime", "1970-01-01T00:00:00+00:00")))
            out.append(Logged(r["id"], when, None, f"{exc.pointer or '/'}: {exc.detail}"))
            continue
        out.append(Logged(r["id"], event.event_time, event))
    return out


async def fold_logged(
    raw: asyncpg.Connection[Any], batch: Sequence[Logged], policies: Policies, *, governance: bool = True
) -> None:
    """Fold parsed logged events (in log order); `governance` off: projection and classification only."""
    events = [e.event for e in batch if e.event is not None]
    if not events:
        return
    log_ids: dict[EventKey, int] = {(e.event.event_time, e.event.digest): e.id for e in batch if e.event}
    if governance:
        await fold(raw, events, log_ids, policies)
    else:
        from catalog.ingest.service import project_only

        await project_only(raw, events, log_ids, policies)


def _not_the_events_fault(exc: BaseException) -> bool:
    return is_unavailable(exc) or isinstance(
        exc, asyncpg.exceptions.TransactionRollbackError | asyncpg.exceptions.InterfaceError
    )


def _describe(exc: BaseException) -> str:
    sqlstate = getattr(exc, "sqlstate", None)
    return f"{type(exc).__name__}{f' [{sqlstate}]' if sqlstate else ''}: {exc}"[:2000]


async def _fold_isolating(
    raw: asyncpg.Connection[Any], batch: Sequence[Logged], policies: Policies
) -> list[tuple[Logged, str]]:
    """Fold the batch in one savepoint; if it fails, fold its halves, each in its own savepoint, and so
    on down to single events (in log order throughout). The events that still fail alone (with their
    error) are returned to be set aside. Halving, not one event at a time: one bad event in a batch of
    5000 costs about three batches' work instead of 5000 single-event folds."""
    failed = [(e, e.error or "") for e in batch if e.event is None]
    await _fold_or_halve(raw, [e for e in batch if e.event is not None], policies, failed)
    return failed


async def _fold_or_halve(
    raw: asyncpg.Connection[Any],
    events: Sequence[Logged],
    policies: Policies,
    failed: list[tuple[Logged, str]],
) -> None:
    if not events:
        return
    try:
        async with raw.transaction():
            await fold_logged(raw, events, policies)
        return
    except Exception as exc:
        if _not_the_events_fault(exc):
            raise
        if len(events) == 1:
            log.error("event %d set aside: %s", events[0].id, _describe(exc))
            failed.append((events[0], _describe(exc)))
            return
        log.warning(
            "%d events failed to fold together (%s); folding them in halves", len(events), _describe(exc)
        )
    half = len(events) // 2
    await _fold_or_halve(raw, events[:half], policies, failed)
    await _fold_or_halve(raw, events[half:], policies, failed)


async def project_step(raw: asyncpg.Connection[Any], policies: Policies, *, limit: int = BATCH_SIZE) -> Step:
    """Fold the next `limit` events of the log and advance the position, in one transaction."""
    async with raw.transaction():
        position = await raw.fetchval(
            "SELECT position FROM projector_state WHERE name = $1 FOR UPDATE", STATE
        )
        if position is None:
            raise RuntimeError("projector_state has no row: migrate the database (revision 0011)")
        batch = await read_after(raw, position, limit)
        if not batch:
            return Step(0, 0, position)
        failed = await _fold_isolating(raw, batch, policies)
        if failed:
            await raw.execute(
                SET_ASIDE,
                [e.id for e, _ in failed],
                [e.event_time for e, _ in failed],
                [m for _, m in failed],
            )
        last_error = failed[-1][1] if failed else None
        await raw.execute(
            "UPDATE projector_state SET position = $2, updated_at = now(), "
            "last_error = coalesce($3, last_error), last_error_at = CASE WHEN $3 IS NULL THEN last_error_at "
            "ELSE now() END WHERE name = $1",
            STATE,
            batch[-1].id,
            last_error,
        )
        return Step(len(batch), len(failed), batch[-1].id)


async def retry_set_aside(engine: AsyncEngine, policies: Policies) -> tuple[int, int]:
    """Fold the set-aside events again (in log order, after whatever was folded since: a fix's second
    chance, not a replay in place); those that fold leave the table. Returns (folded, still failing)."""
    async with raw_transaction(engine) as raw:
        # The position row's lock keeps the active projector out meanwhile (its steps wait).
        await raw.fetchval("SELECT position FROM projector_state WHERE name = $1 FOR UPDATE", STATE)
        ids = await raw.fetchval("SELECT coalesce(array_agg(event_id), '{}') FROM projection_set_aside")
        batch = _parsed(await raw.fetch(READ_IDS, ids))
        failed = await _fold_isolating(raw, batch, policies)
        still = {e.id for e, _ in failed}
        await raw.execute(
            "DELETE FROM projection_set_aside WHERE event_id = ANY($1::bigint[])",
            [e.id for e in batch if e.id not in still],
        )
        if failed:
            await raw.execute(
                SET_ASIDE,
                [e.id for e, _ in failed],
                [e.event_time for e, _ in failed],
                [m for _, m in failed],
            )
        return len(batch) - len(failed), len(failed)


async def status(raw: asyncpg.Connection[Any]) -> Status:
    row = await raw.fetchrow(STATUS, STATE, PROJECTOR_LOCK_KEY)
    if row is None:
        raise RuntimeError("projector_state has no row: migrate the database (revision 0011)")
    return Status(
        position=row["position"],
        head=row["head"] or 0,
        lag_events=row["lag_events"],
        lag_seconds=float(row["lag_seconds"] or 0.0),
        last_error=row["last_error"],
        last_error_at=row["last_error_at"],
        set_aside=row["set_aside"],
        updated_at=row["updated_at"],
        projector=row["holder"].removeprefix(HOLDER_PREFIX) if row["holder"] else None,
    )


class Watermark:
    """How far the catalog is projected, as this process knows it: advanced at once by a local leader,
    else re-read from `projector_state` (at most every `poll` seconds, shared by all waiters)."""

    def __init__(self, engine: AsyncEngine, *, poll: float = 0.05) -> None:
        self._engine = engine
        self._poll = poll
        self.position = 0
        self._changed = asyncio.Event()
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    def advance(self, position: int) -> None:
        if position > self.position:
            self.position = position
            self._changed.set()
            self._changed = asyncio.Event()

    async def refresh(self) -> int:
        async with self._lock:
            if time.monotonic() - self._read_at >= self._poll:
                try:
                    async with self._engine.connect() as conn:
                        raw = await raw_connection(conn)
                        found = await raw.fetchval(
                            "SELECT position FROM projector_state WHERE name = $1", STATE
                        )
                finally:
                    self._read_at = time.monotonic()  # a failed read waits its turn too
                self.advance(int(found or 0))
        return self.position

    async def wait_for(self, position: int, within: float) -> bool:
        """Whether the projector passed `position` within `within` seconds. A database that cannot be
        asked right now counts as "not yet": the callers' work is done or still to do either way (an
        ingest answered once its events were committed; a read that then meets the database answers 503
        itself), so a wait never turns a lost connection into an error of its own."""
        deadline = time.monotonic() + within
        while True:
            if self.position >= position or await self._refreshed_or_unknown() >= position:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(self._poll, remaining))

    async def _refreshed_or_unknown(self) -> int:
        try:
            return await self.refresh()
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            log.debug("projection position unknown for now (%s); still waiting", type(exc).__name__)
            return self.position


class Projector:
    """Runs in every service process; only the one holding the lock projects (see the module docstring)."""

    def __init__(
        self,
        engine: AsyncEngine,
        advanced: Callable[[int], None],
        policies: Policies,
        *,
        batch_size: int = BATCH_SIZE,
        standby_poll: float = 1.0,
        idle_poll: float = 1.0,
        leading_changed: Callable[[bool], None] | None = None,
        pacer: YieldToAccepting | None = None,
    ) -> None:
        self._engine = engine
        self._pacer = pacer  # the projector process's: folds a share of the time while acceptance is busy
        self._advanced = advanced  # told every position reached (the process's Watermark)
        self._leading_changed = leading_changed  # told when this process starts and stops leading
        self._policies = policies  # what the fold assigns, classifies and judges by
        self._batch_size = batch_size
        self._standby_poll = standby_poll
        self._idle_poll = idle_poll
        self._wake = asyncio.Event()
        # Doubling, from what the catalog holds when this process starts leading: ANALYZE reads a sample of
        # every catalog table (seconds on a busy box), so every 50 % from a cold start cost the projector
        # half its throughput on the benchmark (72-146 events/s against 298 without; 209 doubling).
        self._analyzer = GrowthAnalyzer(engine, growth=1.0, minimum=ANALYZE_FROM)
        self._task: asyncio.Task[None] | None = None
        self.leading = False
        self.last_error: str | None = None

    def wake(self) -> None:
        """Something was appended: fold it now rather than at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="projector")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._analyzer.stop()

    async def _run(self) -> None:
        while True:
            try:
                led = await self._try_to_lead()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop must survive anything; the lock went with the connection
                raise_if_cancelled(exc)
                self.last_error = _describe(exc)
                log.warning("projector stopped leading (%s); trying again", self.last_error)
                led = False
            raise_if_cancelled()
            if not led:  # another process projects: try again later (appends here do not wake us)
                await asyncio.sleep(self._standby_poll)

    async def _try_to_lead(self) -> bool:
        async with self._engine.connect() as conn:
            raw = await raw_connection(conn)
            if not await _take_the_lead(raw):
                return False
            log.info("this process is now the projector")
            self._set_leading(True)
            try:
                await raw.add_listener(APPENDED_CHANNEL, self._notified)
                await self._lead(raw)
            finally:
                self._set_leading(False)
                # Never hand a connection that still holds the lock back to the pool.
                try:
                    await asyncio.shield(self._release(raw))
                except BaseException:
                    await conn.invalidate()
                    raise
            return True

    def _set_leading(self, leading: bool) -> None:
        self.leading = leading
        if self._leading_changed is not None:
            self._leading_changed(leading)

    async def _release(self, raw: asyncpg.Connection[Any]) -> None:
        await raw.remove_listener(APPENDED_CHANNEL, self._notified)
        await _let_go(raw)

    def _notified(self, *_: Any) -> None:
        self._wake.set()

    async def _lead(self, raw: asyncpg.Connection[Any]) -> None:
        self._analyzer.start_from(
            int(await raw.fetchval("SELECT position FROM projector_state WHERE name = $1", STATE) or 0)
        )
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            limit = self._batch_size if self._pacer is None else self._pacer.batch_limit(self._batch_size)
            started = loop.time()
            step = await self._step(raw, limit)
            log.debug(
                "step: %d events of at most %d in %.0f ms", step.folded, limit, (loop.time() - started) * 1e3
            )
            if self._pacer is not None:
                self._pacer.stepped(behind=step.folded >= limit)
            self._advanced(step.position)
            if step.folded:
                self._analyzer.analyze_behind(step.folded)
                if step.folded >= TRIM_FROM:
                    release_freed_memory()
                if self._pacer is not None:
                    await self._pacer.pause(loop.time() - started)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._idle_poll)

    async def _step(self, raw: asyncpg.Connection[Any], limit: int) -> Step:
        for attempt in range(4):
            try:
                return await project_step(raw, self._policies, limit=limit)
            except asyncpg.exceptions.TransactionRollbackError as exc:
                if attempt == 3:
                    raise
                log.info("projector step rolled back by PostgreSQL (%s); retrying", exc.sqlstate)
                await asyncio.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")


class ProjectorThread:
    """The service's projector on its own thread, event loop and connections: with
    `projector_process=false`, and in the apps the test suite builds. (`catalog serve` runs it in a
    process of its own by default, catalog/ingest/projector_process.py: a thread shares the GIL.)

    A projector step is seconds of Python (parsing, extraction) between database round trips: on the
    event loop that serves HTTP it would stall every request for as long, so the accepting path would
    answer only between batches. On its own thread the interpreter switches between the two every few
    milliseconds. It dies with the process (so a killed process's leadership goes with it)."""

    def __init__(
        self,
        database_url: str,
        watermark: Watermark,
        policies: Policies,
        *,
        batch_size: int,
        standby_poll: float,
    ) -> None:
        self._url = database_url
        self._policies = policies
        self._watermark = watermark
        self._batch_size = batch_size
        self._standby_poll = standby_poll
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._projector: Projector | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()

    @property
    def leading(self) -> bool:
        return self._projector is not None and self._projector.leading

    def wake(self) -> None:
        if self._loop is not None and self._projector is not None:
            self._loop.call_soon_threadsafe(self._projector.wake)

    async def start(self) -> None:
        home = asyncio.get_running_loop()

        def advanced(position: int) -> None:
            home.call_soon_threadsafe(self._watermark.advance, position)

        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._serve(advanced)), name="projector", daemon=True
        )
        self._thread.start()
        await asyncio.to_thread(self._started.wait, 10)

    async def _serve(self, advanced: Callable[[int], None]) -> None:
        engine = create_engine(self._url, pool_size=2)
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._projector = Projector(
            engine, advanced, self._policies, batch_size=self._batch_size, standby_poll=self._standby_poll
        )
        try:
            await self._projector.start()
            self._started.set()
            await self._stopping.wait()
            await self._projector.stop()
        finally:
            await engine.dispose()

    async def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        await asyncio.to_thread(self._thread.join, 15)
        self._thread = None


async def follow(
    database_url: str,
    policies: Policies,
    *,
    batch_size: int,
    standby_poll: float,
    advanced: Callable[[int], None],
    until: asyncio.Event,
    leading_changed: Callable[[bool], None] | None = None,
    backend_niceness: int = 0,
    backend_idle: bool = False,
    pacer: YieldToAccepting | None = None,
) -> None:
    """Run a projector on its own engine, standing by or leading, until `until` is set (or this is
    cancelled): `catalog projector run --follow` and the service's projector process (which lowers its
    PostgreSQL backends' priority with its own: `backend_niceness`, `backend_idle`,
    catalog/db/backend_priority.py, and paces itself by the service process's load: `pacer`,
    catalog/ingest/accepting_load.py)."""
    engine = create_engine(database_url, pool_size=2)
    lower_backend_priority(engine, backend_niceness, idle=backend_idle)
    projector = Projector(
        engine,
        advanced,
        policies,
        batch_size=batch_size,
        standby_poll=standby_poll,
        leading_changed=leading_changed,
        pacer=pacer,
    )
    try:
        await projector.start()
        try:
            await until.wait()
        finally:
            await projector.stop()
    finally:
        await engine.dispose()


async def catch_up(
    engine: AsyncEngine, policies: Policies, *, batch_size: int = BATCH_SIZE, wait: float = 600.0
) -> int:
    """Fold the log up to its head now (the CLI's backfill): as the projector when no process is one,
    else by waiting for the active projector. Returns the position reached."""
    async with engine.connect() as conn:
        raw = await raw_connection(conn)
        head = int(await raw.fetchval("SELECT coalesce(max(id), 0) FROM event_log"))
        if await _take_the_lead(raw):
            try:
                position = 0
                while True:
                    step = await project_step(raw, policies, limit=batch_size)
                    position = step.position
                    if not step.folded:
                        return position
            finally:
                await _let_go(raw)
    watermark = Watermark(engine, poll=0.2)
    await watermark.wait_for(head, wait)
    return watermark.position


async def append_and_project(
    raw: asyncpg.Connection[Any], events: Sequence[OpenLineageEvent], policies: Policies
) -> IngestOutcome:
    """Append and fold in the caller's ONE transaction (loading tools and benchmarks that measure the
    synchronous cost; the service never does this). The append lock is held, so no other appender can
    slip a row in between; the projector's step folds everything pending, these events included."""
    outcome = await append(raw, events)
    while (await project_step(raw, policies, limit=BATCH_SIZE)).folded:
        pass
    return outcome
