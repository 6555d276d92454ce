"""Accepting goes first, by measure: the projector process folds only a share of the time while the
service process it belongs to is CPU-bound accepting ingest.

Niceness alone does not give acceptance the CPU it needs on a small machine: with the projector
folding (its Python process and its PostgreSQL backend, two runnable tasks) the single-threaded
accepting process still waited for a CPU about a fifth of the time at niceness 10 and 19, and Linux's
SCHED_IDLE bought acceptance with a worse lag at moderate load (README, "Accepting goes first").
So the projector asks: does the accepting process want a whole CPU right now, and am I behind? Its
main thread's demand — the time it ran plus the time it sat runnable waiting for a CPU, per second of
wall clock (Linux's /proc/<pid>/task/<pid>/schedstat) — is near 1 when requests arrive faster than it
answers them. Then the projector folds in small steps, and after a full one (more is waiting) it
pauses, so that it folds `share` of the time: the lag grows while acceptance is saturated (an
overload: "acceptance keeps its rate, the lag grows"); a pause lasts only while the accepting process,
with the projector off the CPU, actually runs most of the time, so the backlog drains as soon as the
burst ends. A projector that keeps up never pauses (see YieldToAccepting for why each condition), so
the freshness at moderate load is the niced projector's.

Where /proc is not there (not Linux) or the pid is gone, the demand is unknown and the projector never
pauses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Demand (CPU-seconds run or waited for, per second) from which the accepting process counts as busy,
# measured while the projector folds. On the 2-core bench box over whole runs: 0.86-0.92 while it
# answered as fast as 32 clients sent; but also 0.85 at 652 events/s (half the projector's rate), most
# of the difference being time spent waiting for a CPU the projector held. So this only lets the
# projector try a pause (with YieldToAccepting's second condition); SATURATED decides whether it lasts
# past its first window.
BUSY_DEMAND = 0.8
# CPU-seconds actually run per second from which the accepting process is saturated, measured during a
# pause (the projector off the CPU): 0.85-0.88 as fast as 32 clients sent with no projector at all; a
# process that only looked busy because the projector held a CPU runs well below (0.43 of the time at
# 652 events/s, measured with the projector folding).
SATURATED = 0.7
# The most events a step folds while the accepting process is busy: a full batch (5000) is seconds of
# folding taken from acceptance in one piece; 500 keep the pauses frequent and the per-step overhead
# (a transaction and a handful of set-based statements) small against the events' own work.
BUSY_BATCH = 500
# The demand is measured over windows this long: over 50 ms windows, the accepting process's demand at
# saturation and at half the projector's rate overlapped more (5th-95th percentiles 0.30-0.93 and
# 0.59-0.75); a longer window smooths out a wait for the database or a client. A pause ends within
# about this long after a burst.
DEMAND_WINDOW = 0.2
# How often a pause checks whether the accepting process is still saturated (a new measure once a window).
CHECK_EVERY = 0.05
# After a pause that the accepting process did not need (it ran below SATURATED with the CPU to itself),
# the projector does not pause again for this long, or until a step catches up; each needless pause in a
# row doubles it, up to RESPITE_MAX, and a pause that was needed (the process stayed saturated past the
# catch-up of what queued while the projector folded) sets it back. Without it, a projector folding at
# about half its rate on a slow spell of the box fell into a loop: behind, so its steps were full; the
# accepting process's demand, inflated by the projector's own CPU and then by the requests that queued
# during the pause, read "busy"; so it paused again, and folding about half the time it never caught
# up. Measured on such a spell of the 2-core box, single events at about 1,150/s (half the projector's
# rate on a fast spell), alternating rounds: without a respite, the lag's p95 2.4-4.9 s, the projector
# pausing in 73-88 % of the samples; a fixed 1 s respite, 3.2-7.0 s (45-61 %); doubling, resetting on any
# saturated window, 1.1-2.5 s (14-25 %); as below, 1.3, 1.4 and 1.7 s (17-18 %) against 4.3, 4.4 and
# 4.9 s in the same rounds; never pausing at all (share 1), 0.8-1.5 s: a slow spell is slow for everyone.
RESPITE = 1.0
RESPITE_MAX = 4.0


@dataclass(frozen=True, slots=True)
class Demand:
    """A thread's use of the CPU over a window, in seconds per second."""

    ran: float  # on a CPU
    waited: float  # runnable, waiting for one

    @property
    def wanted(self) -> float:
        return self.ran + self.waited


def _schedstat_path(pid: int) -> Path:
    # The main thread's line (the event loop's): /proc/<pid>/schedstat is the same task's, but the
    # per-task path says so.
    return Path(f"/proc/{pid}/task/{pid}/schedstat")


def read_schedstat(pid: int) -> tuple[int, int] | None:
    """Nanoseconds the process's main thread has run, and waited runnable, since it started; None if
    unknown (no such file: not Linux, or the process is gone)."""
    try:
        ran, waited, _ = _schedstat_path(pid).read_text().split()
    except (OSError, ValueError):
        return None
    return int(ran), int(waited)


Sample = tuple[float, tuple[int, int]]  # (monotonic seconds, (ran ns, waited ns))


def demand_between(first: Sample, second: Sample) -> Demand:
    seconds = (second[0] - first[0]) * 1e9
    return Demand((second[1][0] - first[1][0]) / seconds, (second[1][1] - first[1][1]) / seconds)


class AcceptingLoad:
    """The demand of one process's main thread, over the last window of at least `window` seconds."""

    def __init__(
        self,
        pid: int,
        *,
        window: float = DEMAND_WINDOW,
        read: Callable[[int], tuple[int, int] | None] = read_schedstat,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pid = pid
        self.window = window
        self._read = read
        self._clock = clock
        self._demand: Demand | None = None
        self._last = self.sample()

    def sample(self) -> Sample | None:
        """Now, and the thread's counters (None: unknown)."""
        counters = self._read(self._pid)
        return None if counters is None else (self._clock(), counters)

    def demand(self) -> Demand | None:
        """Since the previous measure (None: unknown). Asked again within `window`, the previous measure
        (a shorter window is mostly noise)."""
        if self._last is not None and self._clock() - self._last[0] < self.window:
            return self._demand
        last, self._last = self._last, self.sample()
        self._demand = None if last is None or self._last is None else demand_between(last, self._last)
        return self._demand

    def busy(self) -> bool:
        """It wants a whole CPU (ran plus waited): measured while the projector folds."""
        demand = self.demand()
        return demand is not None and demand.wanted >= BUSY_DEMAND


class YieldToAccepting:
    """How the projector paces itself while the accepting process is busy (see the module docstring).

    `share`: the fraction of the time the projector folds while it yields (1: never pauses).
    `busy_batch`: the most events a step folds while the accepting process is busy, so that the pauses
    come often (a full batch is seconds of folding, all of it taken from acceptance).

    It yields only when it is also behind — its step was full, more is waiting: a busy accepting process
    alone is not enough. The demand is measured while the projector folds, so the projector's own share
    of the CPU inflates it: at 652 events/s, about half the projector's rate, the accepting process's
    median demand was 0.85 (0.2 s windows), as high as under saturation; yielding on demand alone paused
    the projector there for ~15 % of the time and tripled the lag's p95 (0.3 -> 0.75 s). A projector
    that keeps up folds all that is pending in one small step and never pauses; under a burst its steps
    are full. And once it pauses, what keeps it paused is the accepting process's time actually on a CPU
    (measured window by window during the pause, without the projector): a process that only looked busy because
    the projector held a CPU runs well below it, and the pause ends within a window. (On the demand
    alone, at 1,000 events/s — two thirds of the projector's rate — the pauses went on, and a 100,000-
    event soak's lag reached 5 s instead of at most 1 s.) A pause that ends that way was not needed:
    the projector then does not pause for `respite` seconds (doubling with each such pause in a row, up
    to `respite_max`), or until a step catches up (RESPITE says why)."""

    def __init__(
        self,
        load: AcceptingLoad,
        *,
        share: float,
        busy_batch: int,
        respite: float = RESPITE,
        respite_max: float = RESPITE_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], not {share}")
        self._load = load
        self._share = share
        self._busy_batch = busy_batch
        self._respite_first = respite
        self._respite_max = respite_max
        self._respite = respite  # the next respite's length: doubles with each needless pause in a row
        self._clock = clock
        self._busy = False  # the accepting process, as measured before the step
        self._respite_until = 0.0  # no pause before then (clock time): the last one was not needed
        self.yielding = False  # pausing between steps (for the ingest status)
        self.paused = 0.0  # seconds paused so far (for the metrics and tests)

    def batch_limit(self, batch_size: int) -> int:
        """The next step's limit, from the demand since the last check (the previous step's, or pause's)."""
        # Measured at every step, respite or not: the rolling window must not span one.
        self._busy = self._share < 1 and self._load.busy()
        return min(batch_size, self._busy_batch) if self._busy else batch_size

    def stepped(self, *, behind: bool) -> None:
        """A step ended; `behind`: it folded as many events as its limit allowed (more may be waiting)."""
        if not behind:
            self._respite_until = 0.0  # caught up: what the respite was for is done
        self.yielding = self._busy and behind and self._clock() >= self._respite_until

    async def pause(self, folded_for: float) -> None:
        """After a step that took `folded_for` seconds, if yielding: pause up to folded_for × (1 − share) /
        share, for as long as the accepting process stays saturated (checked every CHECK_EVERY seconds)."""
        budget = folded_for * (1 - self._share) / self._share if self.yielding else 0.0
        # What the accepting process runs with the projector off the CPU, window by window (apart from
        # `busy()`'s rolling measure, which must not restart with every pause).
        since = self._load.sample() if budget > 0 else None
        # Whether a window that began `folded_for` or more into the pause was saturated. Until then the
        # accepting process is mostly answering what queued while the projector held the CPU, saturated
        # whether or not the pause was needed; after it, a saturated window says the pause was needed.
        catch_up_ends = None if since is None else since[0] + folded_for
        needed = False
        while budget > 0:
            nap = min(CHECK_EVERY, budget)
            await asyncio.sleep(nap)
            self.paused += nap
            budget -= nap
            now = self._load.sample()
            if since is None or now is None or now[0] - since[0] < self._load.window:
                continue
            if demand_between(since, now).ran < SATURATED:
                self.yielding = False
                self._respite_until = self._clock() + self._respite
                self._respite = min(self._respite * 2, self._respite_max)
                return
            needed = needed or (catch_up_ends is not None and since[0] >= catch_up_ends)
            since = now
        if needed:  # saturated all along, past the catch-up: the next probe may come soon
            self._respite = self._respite_first
