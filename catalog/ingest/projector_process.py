"""The service's projector in a child process of its own: the default under `catalog serve`.

Why a process and not a thread: a projector step is seconds of Python (parsing, extraction), and a
thread of the accepting process shares its one GIL. On this project's 2-core bench, acceptance with
the projector on a thread reached about half of what it reached with the projector in a process of its
own, on the same stream in the same run (`bench/ingest.py`): whatever the accepting path saved, the
projector, folding the same stream behind it, spent. The thread (catalog/ingest/projector.py's
ProjectorThread) stays for apps built in-process (tests, embedding): `projector_process=false`.

The child runs the same Projector as the thread and `catalog projector run --follow` (election,
failover, set-aside: catalog/ingest/projector.py). It is woken by the NOTIFY every append sends, and it
reports over a pipe the positions it reaches and whether it leads, so `?wait=projected` and reads that
wait for a position answer as soon as a fold commits. It dies with its parent (PR_SET_PDEATHSIG); the
parent restarts it if it dies alone (a crash, the OOM killer), so the service never stays without a
projector candidate."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from catalog.ingest.projector import Watermark, follow

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from catalog.config import Settings
    from catalog.policies_in_force import Policies

log = logging.getLogger(__name__)

# A child that dies alone is started again after this long, doubling while it keeps dying young
# (a projector that fails at startup must not spin a core), up to RESTART_MAX.
RESTART_AFTER = 1.0
RESTART_MAX = 30.0
LIVED_LONG = 60.0  # seconds a child must have lived for its successor to start at RESTART_AFTER again
STOP_WITHIN = 15.0  # seconds a stopping child gets to roll back its step and let go of the lock


class ProjectorProcess:
    """Runs, watches and stops this service process's projector process."""

    def __init__(self, settings: Settings, database_url: str, watermark: Watermark) -> None:
        self._settings = settings
        self._url = database_url
        self._watermark = watermark
        self._process: BaseProcess | None = None
        self._reports: Connection | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.leading = False  # as the child last reported
        # whether it pauses for this process's accepting (catalog/ingest/accepting_load.py), and how long so far
        self.yielding = False
        self.paused_seconds = 0.0  # over every child this process started (a counter)
        self._paused_before = 0.0  # by the children that ended
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.exitcode is None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(), name="projector process")

    async def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        process = self._process
        if process is not None and process.is_alive():
            process.terminate()  # SIGTERM: the child stops its projector (the step in flight rolls back)
            await asyncio.to_thread(process.join, STOP_WITHIN)
            if process.is_alive():
                log.warning("the projector process did not stop within %.0f s; killing it", STOP_WITHIN)
                process.kill()
                await asyncio.to_thread(process.join, 5)
        self._close_reports()
        self._process = None

    def _spawn(self) -> None:
        assert self._loop is not None
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no copy of the app's state
        reports, child_end = context.Pipe(duplex=False)
        process = context.Process(
            target=run_child,
            args=(self._settings, self._url, child_end),
            name="catalog projector",
            daemon=True,  # never left behind by an exiting parent (multiprocessing terminates it)
        )
        process.start()
        child_end.close()  # the child holds its own copy: this end reads EOF when the child is gone
        self._process = process
        self._reports = reports
        self._loop.add_reader(reports.fileno(), self._read_reports)
        log.info("projector process started (pid %s)", process.pid)

    def _read_reports(self) -> None:
        reports = self._reports
        if reports is None:
            return
        try:
            while reports.poll():
                kind, value = reports.recv()
                if kind == "position":
                    self._watermark.advance(int(value))
                elif kind == "leading":
                    self.leading = bool(value)
                    self.yielding = self.yielding and self.leading  # only a leader yields
                elif kind == "pacing":
                    self.yielding = bool(value[0])
                    self.paused_seconds = self._paused_before + float(value[1])
        except (EOFError, OSError):  # the child is gone; the supervisor sees to it
            self._close_reports()

    def _close_reports(self) -> None:
        self.leading = self.yielding = False
        self._paused_before = self.paused_seconds
        if self._reports is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._reports.fileno())
            self._reports.close()
            self._reports = None

    async def _supervise(self) -> None:
        """Start the child again whenever it dies while this process still serves."""
        loop = asyncio.get_running_loop()
        delay = RESTART_AFTER
        while True:
            process = self._process
            assert process is not None
            started = loop.time()
            await _ended(process)
            self._close_reports()
            lived = loop.time() - started
            if lived >= LIVED_LONG:
                delay = RESTART_AFTER
            log.error(
                "the projector process (pid %s) ended with exit code %s after %.0f s; starting another in %.0f s",
                process.pid,
                process.exitcode,
                lived,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_MAX)
            self.restarts += 1
            try:
                self._spawn()
            except OSError:  # out of processes or memory: the dead one stays, and this loop tries again
                log.exception("could not start a projector process")


async def _ended(process: BaseProcess) -> None:
    """Until `process` has ended (its sentinel becomes readable), without a thread or a poll."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ended.done():
            ended.set_result(None)

    loop.add_reader(process.sentinel, readable)
    try:
        await ended
    finally:
        loop.remove_reader(process.sentinel)
    await asyncio.to_thread(process.join)  # reap it (it has ended: returns at once)


def run_child(settings: Settings, database_url: str, reports: Connection) -> None:
    """The child's entry point (in a spawned interpreter)."""
    from catalog.child_processes import exit_with_parent, lower_priority
    from catalog.logs import configure_logging
    from catalog.memory import tune_garbage_collector
    from catalog.policies_in_force import Policies

    exit_with_parent()
    # Ctrl-C in a terminal reaches the whole process group: the parent decides when its projector
    # stops (SIGTERM), or a restart could race the service's own shutdown.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:  # and its PostgreSQL backends' (`follow`, backend_niceness and backend_idle)
        lower_priority(settings.projector_nice, idle=settings.projector_idle)
    except OSError as exc:  # not for a process's own priority on Linux; elsewhere, keep going
        log.info("the projector process keeps its priority (%s)", exc)
    configure_logging(settings.log_level, settings.log_format)
    policies = Policies.from_settings(settings)  # the same files as the parent's; each follows its mtime
    tune_garbage_collector()
    asyncio.run(_follow(settings, database_url, policies, reports))


async def _follow(settings: Settings, database_url: str, policies: Policies, reports: Connection) -> None:
    from catalog.ingest.accepting_load import BUSY_BATCH, AcceptingLoad, YieldToAccepting

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    sent = 0
    # the parent is the service process that accepts (exit_with_parent: it stays the parent)
    pacer = YieldToAccepting(
        AcceptingLoad(os.getppid()), share=settings.projector_busy_share, busy_batch=BUSY_BATCH
    )
    pacing = (False, 0.0)

    def report(kind: str, value: int | bool | tuple[bool, float]) -> None:
        try:
            reports.send((kind, value))
        except OSError:  # the parent is gone (PR_SET_PDEATHSIG stops us too, on Linux)
            stopping.set()

    def advanced(position: int) -> None:
        nonlocal sent, pacing
        if position > sent:  # a caught-up leader reports every idle second; only news crosses
            sent = position
            report("position", position)
        if (pacer.yielding, pacer.paused) != pacing:
            pacing = (pacer.yielding, pacer.paused)
            report("pacing", pacing)

    try:
        await follow(
            database_url,
            policies,
            batch_size=settings.projector_batch_size,
            standby_poll=settings.projector_standby_seconds,
            advanced=advanced,
            until=stopping,
            leading_changed=lambda leading: report("leading", leading),
            backend_niceness=settings.projector_nice,
            backend_idle=settings.projector_idle,
            pacer=pacer,
        )
    finally:
        reports.close()
