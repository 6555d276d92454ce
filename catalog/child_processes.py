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


def lower_priority(niceness: int, pid: int = 0) -> None:
    """Run process `pid` (0: this one) at `niceness` at least (a background worker: when the CPU is
    contended, the processes answering requests go first). Only ever raised: never more CPU than it had."""
    if niceness > 0 and hasattr(os, "setpriority") and os.getpriority(os.PRIO_PROCESS, pid) < niceness:
        os.setpriority(os.PRIO_PROCESS, pid, niceness)
