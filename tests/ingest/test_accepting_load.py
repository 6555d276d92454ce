"""Accepting goes first, by measure (catalog/ingest/accepting_load.py): the demand of a real process read
from /proc, and the projector folding a share of the time, in small steps, while the process it serves
is CPU-bound — then catching up, nothing lost or doubled, once it is not."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.config import Settings
from catalog.ingest.accepting_load import (
    BUSY_DEMAND,
    DEMAND_WINDOW,
    SATURATED,
    AcceptingLoad,
    Demand,
    YieldToAccepting,
    demand_between,
    read_schedstat,
)
from catalog.ingest.projector import follow
from catalog.policies_in_force import Policies
from tests.ingest.projector_helpers import (
    append_backlog,
    asynchronous_settings,
    no_audit_row_twice,
    projector_status,
    rebuild_matches,
    stream,
)

linux_only = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads Linux's /proc")


def _python(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


def _running(code: str) -> Iterator[subprocess.Popen[bytes]]:
    process = _python(code)
    yield process
    process.kill()
    process.wait()


@pytest.fixture
def spinning() -> Iterator[subprocess.Popen[bytes]]:
    """A process that wants a whole CPU, as an accepting process does under more load than it answers."""
    yield from _running("while True: pass")


@pytest.fixture
def sleeping() -> Iterator[subprocess.Popen[bytes]]:
    yield from _running("import time; time.sleep(120)")


def _demand_over(load: AcceptingLoad, seconds: float) -> Demand | None:
    load.demand()
    time.sleep(seconds)
    return load.demand()


@linux_only
def test_a_cpu_bound_process_is_busy_and_saturated_and_a_sleeping_one_is_neither(
    spinning: subprocess.Popen[bytes], sleeping: subprocess.Popen[bytes]
) -> None:
    time.sleep(0.2)  # past the interpreters' start
    busy = _demand_over(AcceptingLoad(spinning.pid), 0.5)
    idle = _demand_over(AcceptingLoad(sleeping.pid), 0.5)
    assert busy is not None
    assert busy.wanted >= BUSY_DEMAND, busy  # run + waited runnable: ~1 however contended
    assert busy.ran >= SATURATED, busy  # this test's process sleeps: a CPU is free for it
    assert idle is not None
    assert idle.wanted < 0.1, idle


def test_the_demand_of_a_process_that_is_gone_is_unknown_and_never_busy() -> None:
    process = _python("pass")
    process.wait()
    load = AcceptingLoad(process.pid, window=0)
    assert read_schedstat(process.pid) is None
    assert load.demand() is None
    assert not load.busy()


def _seconds(demand: Demand | None) -> tuple[float, float]:
    assert demand is not None
    return demand.ran, demand.waited


def test_demand_is_measured_over_a_window_and_kept_within_it() -> None:
    now, ns = [0.0], [(0, 0)]
    load = AcceptingLoad(1, window=0.05, read=lambda _: ns[0], clock=lambda: now[0])
    now[0], ns[0] = 0.1, (60_000_000, 30_000_000)  # ran 0.06 s and waited 0.03 s in 0.1 s
    assert _seconds(load.demand()) == pytest.approx((0.6, 0.3))
    assert load.busy()  # wants 0.9 of a CPU
    now[0], ns[0] = 0.12, (60_000_000, 30_000_000)  # within the window: the last measure, not 0 over 20 ms
    assert _seconds(load.demand()) == pytest.approx((0.6, 0.3))
    now[0], ns[0] = 0.2, (68_000_000, 32_000_000)
    assert _seconds(load.demand()) == pytest.approx((0.08, 0.02))  # since the last measure
    assert not load.busy()
    assert demand_between((0.0, (0, 0)), (0.5, (400_000_000, 0))).ran == pytest.approx(0.8)
    with pytest.raises(ValueError, match="share"):
        YieldToAccepting(load, share=0, busy_batch=10)


@linux_only
async def test_short_steps_and_pauses_see_the_load_end(spinning: subprocess.Popen[bytes]) -> None:
    """Steps and pauses shorter than a window must not keep the last measure forever (CI caught a pause
    that restarted the measure, so that a projector folding small steps stayed 'busy' after the load)."""
    await asyncio.sleep(0.2)
    pacer = YieldToAccepting(AcceptingLoad(spinning.pid), share=0.5, busy_batch=10)
    await asyncio.sleep(DEMAND_WINDOW * 1.25)

    async def step() -> int:
        limit = pacer.batch_limit(1000)
        await asyncio.sleep(0.01)  # a small step's folding
        pacer.stepped(behind=True)
        await pacer.pause(0.01)
        return limit

    assert await step() == 10
    ends = time.monotonic() + 0.5
    while time.monotonic() < ends:
        assert await step() == 10
    spinning.kill()
    ends = time.monotonic() + 2.0
    while await step() == 10:
        assert time.monotonic() < ends, "still yielding to a process that is gone"


@linux_only
async def test_it_yields_only_busy_and_behind_for_its_share_and_stops_when_the_load_does(
    spinning: subprocess.Popen[bytes], sleeping: subprocess.Popen[bytes]
) -> None:
    await asyncio.sleep(0.2)
    quiet = YieldToAccepting(AcceptingLoad(sleeping.pid), share=0.25, busy_batch=10)
    await asyncio.sleep(DEMAND_WINDOW * 1.25)
    assert quiet.batch_limit(1000) == 1000
    quiet.stepped(behind=True)  # behind, but nobody is waiting for the CPU
    assert not quiet.yielding
    await quiet.pause(0.2)
    assert quiet.paused == 0

    pacer = YieldToAccepting(AcceptingLoad(spinning.pid), share=0.25, busy_batch=10)
    await asyncio.sleep(DEMAND_WINDOW * 1.25)
    assert pacer.batch_limit(1000) == 10
    pacer.stepped(behind=False)  # busy, but the step folded all that was pending: it keeps up
    assert not pacer.yielding
    await pacer.pause(0.1)
    assert pacer.paused == 0

    assert pacer.batch_limit(1000) == 10
    pacer.stepped(behind=True)
    assert pacer.yielding
    started = time.monotonic()
    await pacer.pause(0.1)  # a quarter of the time folding: three times as long paused
    assert 0.25 <= time.monotonic() - started < 1.0
    assert pacer.paused == pytest.approx(0.3)

    assert pacer.batch_limit(1000) == 10
    pacer.stepped(behind=True)
    asyncio.get_running_loop().call_later(0.2, spinning.kill)
    started = time.monotonic()
    await pacer.pause(10)  # would pause 30 s; the load ends after 0.2 s
    assert time.monotonic() - started < 2.0
    assert not pacer.yielding

    never = YieldToAccepting(AcceptingLoad(sleeping.pid), share=1, busy_batch=10)
    assert never.batch_limit(1000) == 1000


@linux_only
async def test_the_projector_folds_in_small_steps_while_acceptance_is_busy_then_catches_up(
    tmp_path: Path, service_database_url: str, engine: AsyncEngine, spinning: subprocess.Popen[bytes]
) -> None:
    settings: Settings = asynchronous_settings(tmp_path)
    last = await append_backlog(engine, stream(600))
    steps: list[int] = []
    reached = [0]

    def advanced(position: int) -> None:
        if position > reached[0]:
            steps.append(position - reached[0])
            reached[0] = position

    pacer = YieldToAccepting(AcceptingLoad(spinning.pid), share=0.5, busy_batch=40)
    await asyncio.sleep(DEMAND_WINDOW * 1.25)  # a first window of the spinning process's demand
    until = asyncio.Event()
    following = asyncio.create_task(
        follow(
            service_database_url,
            Policies.from_settings(settings),
            batch_size=1000,
            standby_poll=0.2,
            advanced=advanced,
            until=until,
            pacer=pacer,
        )
    )
    try:
        deadline = time.monotonic() + 60
        while len(steps) < 3:  # busy: steps of at most 40 events, a pause after each
            assert time.monotonic() < deadline, steps
            await asyncio.sleep(0.02)
        assert all(step <= 40 for step in steps), steps
        assert pacer.paused > 0
        spinning.kill()  # the load ends: the rest in full steps, no more pauses
        while reached[0] < last:
            assert time.monotonic() < deadline, steps
            await asyncio.sleep(0.02)
        assert max(steps) > 40, steps
    finally:
        until.set()
        await following
    assert (await projector_status(engine)).position == last
    await rebuild_matches(engine)
    await no_audit_row_twice(engine)


class _ScriptedThread:
    """A thread's /proc counters that grow at rates the test sets (CPU-seconds per second), on the real
    clock, so that YieldToAccepting's pauses (real sleeps) see what the script says."""

    def __init__(self, ran: float, waited: float) -> None:
        self.ran, self.waited = ran, waited
        self._at = time.monotonic()
        self._counters = (0.0, 0.0)

    def read(self, _pid: int) -> tuple[int, int]:
        now = time.monotonic()
        elapsed, self._at = now - self._at, now
        self._counters = (self._counters[0] + self.ran * elapsed, self._counters[1] + self.waited * elapsed)
        return int(self._counters[0] * 1e9), int(self._counters[1] * 1e9)


async def _step(pacer: YieldToAccepting, *, behind: bool, folding: float = 0.02) -> bool:
    """One projector step (folding for `folding` seconds) and its pause; whether it yielded."""
    pacer.batch_limit(1000)
    await asyncio.sleep(folding)
    pacer.stepped(behind=behind)
    yielded = pacer.yielding
    await pacer.pause(folding)
    return yielded


async def test_after_a_pause_the_accepting_process_did_not_need_it_does_not_pause_again_for_a_respite() -> (
    None
):
    """The half-rate trap (catalog/ingest/accepting_load.py, RESPITE): the accepting process looks busy
    (its demand inflated by the projector's CPU) but, paused for, runs well below SATURATED. The projector
    must then fold unpaced for the respite — not pause again at the next full step — and pause again
    after it if the process still looks busy; a pause the process needed starts no respite, and a step
    that catches up ends one."""
    thread = _ScriptedThread(ran=0.6, waited=0.3)  # wants 0.9 of a CPU: "busy"
    window = 0.05
    load = AcceptingLoad(1, window=window, read=thread.read)
    pacer = YieldToAccepting(load, share=0.2, busy_batch=10, respite=0.6)
    await asyncio.sleep(window * 1.5)

    # The process looks busy and the projector is behind: it pauses; with the CPU to itself the process
    # runs 0.5 of the time — it did not need the pause, which ends within about a window.
    assert await _step(pacer, behind=True, folding=0.1)  # a budget of 0.4 s
    assert pacer.paused < 0.2, "the pause went on although the process ran below SATURATED"
    respite_started = time.monotonic()
    # Still busy, still behind, but within the respite: it folds on without pausing.
    while time.monotonic() - respite_started < 0.4:
        assert not await _step(pacer, behind=True), "paused again during the respite"
    paused_before = pacer.paused
    await asyncio.sleep(0.3)  # the respite is over
    assert await _step(pacer, behind=True), "a busy process and a full step: it pauses again"
    assert pacer.paused > paused_before

    # A step that catches up ends a respite: the next full step while busy pauses at once.
    assert not await _step(pacer, behind=False)
    assert await _step(pacer, behind=True)

    # A pause the process needed (it ran at least SATURATED with the CPU to itself) starts no respite.
    thread.ran, thread.waited = SATURATED + 0.2, 0.05
    needed = YieldToAccepting(load, share=0.5, busy_batch=10, respite=10.0)
    await asyncio.sleep(window * 1.5)
    started = time.monotonic()
    assert await _step(needed, behind=True, folding=0.15)  # pauses its whole budget, about 0.15 s
    assert time.monotonic() - started >= 0.25
    assert await _step(needed, behind=True), "a needed pause must not start a respite"


async def _looking_busy(*, respite: float, respite_max: float) -> tuple[_ScriptedThread, YieldToAccepting]:
    """A pacer (folding a fifth of the time) watching a scripted thread that looks busy — it wants 0.9 of
    a CPU — but runs below SATURATED when paused for; its first window measured."""
    thread = _ScriptedThread(ran=0.6, waited=0.3)
    window = 0.05
    load = AcceptingLoad(1, window=window, read=thread.read)
    pacer = YieldToAccepting(load, share=0.2, busy_batch=10, respite=respite, respite_max=respite_max)
    await asyncio.sleep(window * 1.5)
    return thread, pacer


async def test_each_needless_pause_in_a_row_doubles_the_respite_up_to_its_most_and_a_needed_one_resets_it() -> (
    None
):
    """The more often a pause proves needless, the rarer the probe (RESPITE, RESPITE_MAX); a pause the
    accepting process needed — a real overload — brings the respite back to its first length."""
    thread, pacer = await _looking_busy(respite=0.3, respite_max=0.6)
    assert await _step(pacer, behind=True, folding=0.1)  # needless: a respite of 0.3 s
    await asyncio.sleep(0.4)
    assert await _step(pacer, behind=True, folding=0.1)  # over; needless again: 0.6 s this time
    await asyncio.sleep(0.4)
    assert not await _step(pacer, behind=True), "past the first respite's length, within the doubled one"
    await asyncio.sleep(0.35)
    assert await _step(pacer, behind=True, folding=0.1)  # needless a third time: 0.6 s, its most
    await asyncio.sleep(0.5)
    assert not await _step(pacer, behind=True), "the respite at its most, not back at its first length"
    await asyncio.sleep(0.25)

    thread.ran, thread.waited = SATURATED + 0.2, 0.05  # a real overload: the pause is needed
    started = time.monotonic()
    assert await _step(pacer, behind=True, folding=0.1)
    assert time.monotonic() - started >= 0.4, "a needed pause lasts its budget (0.4 s)"
    thread.ran, thread.waited = 0.6, 0.3
    assert await _step(pacer, behind=True, folding=0.1), "no respite after a needed pause"
    await asyncio.sleep(0.4)  # needless again, and the respite back at 0.3 s: over by now
    assert await _step(pacer, behind=True), "the respite was not reset by the needed pause"


async def test_a_pause_too_short_to_measure_past_the_catch_up_is_no_verdict_on_the_respite() -> None:
    """Until as long into a pause as the step before it took, the accepting process is mostly answering
    what queued meanwhile: saturated whether the pause was needed or not. A pause with no window past that
    must not set the respite back (on a slow box, short pauses did, and the needless probing went on)."""
    thread, pacer = await _looking_busy(respite=0.3, respite_max=1.2)
    assert await _step(pacer, behind=True, folding=0.1)  # needless: a respite of 0.3 s, the next 0.6 s
    await asyncio.sleep(0.35)
    thread.ran, thread.waited = SATURATED + 0.2, 0.05
    assert await _step(pacer, behind=True, folding=0.02)  # a pause of 0.08 s: one window, from 0 s
    thread.ran, thread.waited = 0.6, 0.3
    assert await _step(pacer, behind=True, folding=0.1)  # needless: the respite is 0.6 s, not 0.3 again
    await asyncio.sleep(0.4)
    assert not await _step(pacer, behind=True), "one saturated window set the respite back"
