"""Lower the CPU priority of the PostgreSQL backends behind an engine's connections (the projector's).

A niced projector process alone does not give the accepting path the CPU: half of a fold's work is done by
its PostgreSQL backend, which competes with the accepting path's backend at full priority. When
PostgreSQL runs on this machine (a Unix socket or a loopback address: the embedded server, or a system one
beside the service) and the backend may be reniced (the same user, or root), each new connection's backend
gets the same niceness. Elsewhere nothing happens: a remote server's process ids mean nothing here. Only
ever raised (a lower priority: catalog/child_processes.py `lower_priority`, which the projector process
applies to itself), so a backend never gets more CPU than PostgreSQL gave it.

With CATALOG_PROJECTOR_IDLE=true the backends get the idle scheduling policy too (SCHED_IDLE:
they run only on CPU time no other process wants). Such a backend can be preempted while it holds one of
PostgreSQL's short internal locks (a buffer's, the WAL insertion lock) that an accepting backend then waits
for; waiting frees that CPU, so the idle backend runs again as soon as no runnable process wants it. The
projection's own locks are never ones the accepting path takes (it only appends to `event_log`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.child_processes import lower_priority

log = logging.getLogger(__name__)

LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def on_this_machine(url: URL) -> bool:
    """Whether the server is reached over a Unix socket or a loopback address."""
    host = url.host or url.query.get("host")
    if isinstance(host, tuple):
        host = host[0] if host else None
    return host is None or host == "" or host.startswith("/") or host in LOOPBACK


def lower_backend_priority(engine: AsyncEngine, niceness: int, *, idle: bool = False) -> None:
    """Renice the backend of every connection `engine` opens from now on, and with `idle` give it the idle
    scheduling policy (see the module docstring)."""
    if (niceness <= 0 and not idle) or not hasattr(os, "setpriority") or not on_this_machine(engine.url):
        return
    refused = False

    @event.listens_for(engine.sync_engine, "connect")
    def _renice_backend(dbapi_connection: Any, _record: Any) -> None:
        nonlocal refused
        if refused:  # told once that we may not: no use asking for every connection
            return
        pid = dbapi_connection.run_async(lambda raw: raw.fetchval("SELECT pg_backend_pid()"))
        try:
            renice(int(pid), niceness, idle=idle)
        except OSError as exc:
            refused = True
            log.info(
                "the projector's PostgreSQL connections keep their priority (%s: %s); only its own process "
                "is niced",
                type(exc).__name__,
                exc.strerror,
            )


def renice(pid: int, niceness: int, *, idle: bool = False) -> bool:
    """Raise `pid`'s niceness to `niceness` (and with `idle`, give it SCHED_IDLE) if it is a PostgreSQL
    process; False if it is not one (a server in another process namespace)."""
    with open(f"/proc/{pid}/comm", encoding="utf-8") as comm:
        if comm.read().strip() != "postgres":
            return False
    lower_priority(niceness, pid, idle=idle)
    return True
