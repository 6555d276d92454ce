"""Child processes that must not outlive the process that started them: `catalog serve --workers N`'s
workers (their parent is uvicorn's supervisor) and the projector process each service process runs
(catalog/ingest/projector_process.py)."""

from __future__ import annotations

import os
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def exit_with_parent() -> None:
    """A child outliving its parent (killed with -9, by the OOM killer) would go on unwatched and never
    stop with the service: on Linux, ask the kernel for SIGTERM (a graceful stop) when the parent dies,
    and stop at once if it already has (PR_SET_PDEATHSIG; nothing elsewhere). Call it first thing in a
    child started by `multiprocessing` (spawn)."""
    import multiprocessing

    parent = multiprocessing.parent_process()  # recorded when it spawned us: not "whoever is parent now"
    if parent is None or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return  # not worth failing the child for
    if os.getppid() != parent.pid:  # it died before the request took effect (even while we started)
        os.kill(os.getpid(), signal.SIGTERM)


def lower_priority(niceness: int, pid: int = 0, *, idle: bool = False) -> None:
    """Run process `pid` (0: this one) at `niceness` at least (a background worker: when the CPU is
    contended, the processes answering requests go first), and with `idle` at the idle scheduling policy
    (Linux SCHED_IDLE: it runs only on CPU time no other process wants). Only ever lowered: never more CPU
    than it had.

    Niceness is a share: a niced projector still kept the serving process waiting for a CPU 0.22 s of every
    second (0.02 s with no projector; `/proc/<pid>/schedstat` on the 2-core bench box). A SCHED_IDLE task is
    preempted at once by any other: more CPU for acceptance, less for the projector, so a longer lag
    (README, "Accepting goes first"). Raises OSError where it is not allowed (another user's process without
    CAP_SYS_NICE)."""
    if niceness > 0 and hasattr(os, "setpriority") and os.getpriority(os.PRIO_PROCESS, pid) < niceness:
        os.setpriority(os.PRIO_PROCESS, pid, niceness)
    if idle and hasattr(os, "SCHED_IDLE") and os.sched_getscheduler(pid) != os.SCHED_IDLE:
        os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
