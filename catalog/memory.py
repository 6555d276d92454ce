"""How long-running processes (`catalog serve`, `catalog projector run`) manage their memory: garbage
collection tuned for ingest's bursts, and freed C heap handed back after large batches."""

from __future__ import annotations

import ctypes
import gc
import sys
from collections.abc import Callable

# Measured (`python bench/ingest.py`, 2 cores): with CPython's default threshold (700 allocations) a
# 1000-event batch triggers dozens of collections that each walk every object still alive, the batch
# included: decoding and checking one batch took 325 ms against 160-220 ms with the threshold raised,
# and the projector folded 383 events/s against 523. Ingest allocates in bursts and rarely makes
# cycles, so collect rarely, and never walk the objects alive at startup (modules, app, policies).
# 200,000 rather than 50,000 since the accepting path got cheaper: a batch's decoded events are all
# alive until it is answered, so each young collection walked tens of thousands of them (17 % of a
# batch's CPU under py-spy); server CPU per batched event 0.117-0.119 -> 0.100-0.104 ms (accept-only,
# 20k bench events, alternating runs), the projector unchanged (2,140-2,386 events/s both ways).
GC_THRESHOLDS = (200_000, 20, 10)


def tune_garbage_collector() -> None:
    """For long-running serving and projecting processes, once everything is loaded."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def release_freed_memory() -> None:
    """Collect the cycles a large step left, then give the C heap's free pages back to the system
    (glibc's malloc_trim; nothing elsewhere).

    A step of thousands of events allocates their payload texts and rows with malloc (anything above
    CPython's small-object size); once freed, glibc keeps the pages, so RSS follows the largest batch ever
    folded rather than the live data (a 300,000-event soak at 1,000 events/s: +41 % RSS without it).
    With collections as rare as GC_THRESHOLDS makes them, the cycles of a large step (exceptions and
    their frames, asyncpg's records) outlive it and hold its objects, and the memory they pin stays
    fragmented: a full collection first costs 2-4 ms after a step of thousands of events, and the RSS of
    a projector folding 60,000 bench events in steps alternating between 200 and 5,000 grew 4 % instead
    of 14 % (measured with a throwaway script around `project_step`)."""
    gc.collect()
    trim = _MALLOC_TRIM
    if trim is not None:
        trim(0)


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
        return trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


_MALLOC_TRIM = _malloc_trim()
