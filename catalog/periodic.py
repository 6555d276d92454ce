"""A round of work repeated in the background of one service process (the grant watcher, the policy-file
watcher, the audit checkpointer): one task, stopped with the app; a failing round is logged and the next
round tries again, because the database may be down for a while and the process must outlive that."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable


def raise_if_cancelled(during: BaseException | None = None) -> None:
    """Raise CancelledError if the current task was asked to stop. A library can swallow a task's
    cancellation, raising something else or returning (Python 3.11's `asyncio.wait_for` when the awaited
    future completes at the same moment is one known case): a loop that survives every
    `Exception` would then never stop, and whoever awaits it would wait for ever (the projector thread of
    an app stopped while its database refused connections ran on after the test session:
    tests/rest/test_ready.py). `Task.cancelling()` still counts the request."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from during


class Periodic:
    """Runs `step` every `interval` seconds (after a first wait of `interval`) until `stop()`."""

    def __init__(
        self,
        name: str,
        interval: float,
        step: Callable[[], Awaitable[object]],
        *,
        failure: str,
        log: logging.Logger,
        level: int = logging.WARNING,
    ) -> None:
        self._name = name
        self._interval = interval
        self._step = step
        self._failure = failure  # what the log says when a round fails
        self._log = log
        self._level = level
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise_if_cancelled(exc)
                self._log.log(self._level, self._failure, exc_info=True)
