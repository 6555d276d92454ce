"""Background loops that survive every error still stop when their task is cancelled, even when the
cancellation reaches them as something else: a library can swallow it (Python 3.11's `asyncio.wait_for`
when the awaited future completes at the same moment, a connection checkout), and the loop then went on
for ever while its owner waited (catalog/periodic.py `raise_if_cancelled`). The projector thread's case
is covered by the suite-wide check in tests/conftest.py (tests/rest/test_ready.py met it)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from catalog.periodic import Periodic, raise_if_cancelled

log = logging.getLogger(__name__)


async def _swallows_cancellation(swallowed: list[bool]) -> None:
    """What such a library does: the cancellation arrives while it waits, and it raises its own error
    (once: so that a loop that missed it can still be stopped by the test's clean-up)."""
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        if swallowed:
            raise
        swallowed.append(True)
        raise RuntimeError("connection attempt abandoned") from None


async def test_a_periodic_round_that_swallows_the_cancellation_still_stops_the_loop() -> None:
    rounds = 0
    swallowed: list[bool] = []

    async def step() -> None:
        nonlocal rounds
        rounds += 1
        await _swallows_cancellation(swallowed)

    periodic = Periodic("swallower", 0.01, step, failure="round failed", log=log)
    periodic.start()
    while rounds == 0:  # noqa: ASYNC110 - waiting for the first round to be in flight
        await asyncio.sleep(0.01)
    stopping = asyncio.create_task(periodic.stop())
    done, _ = await asyncio.wait({stopping}, timeout=2)
    if not done:  # the loop went on: stop it for good before failing
        for task in asyncio.all_tasks():
            if task.get_name() == "swallower":
                task.cancel()
        await stopping
    assert done, "the loop went on after its cancellation was swallowed"
    assert swallowed
    assert rounds == 1


async def test_raise_if_cancelled_only_raises_for_a_cancelled_task() -> None:
    raise_if_cancelled()  # not cancelled: nothing

    async def loop() -> str:
        try:
            await _swallows_cancellation([])
        except RuntimeError as exc:
            raise_if_cancelled(exc)
            return "went on"
        return "unreachable"

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
