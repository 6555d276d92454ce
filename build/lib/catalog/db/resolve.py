"""Decide which PostgreSQL to use: CATALOG_DATABASE_URL if set, else the embedded one under CATALOG_HOME."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from catalog.config import Settings
from catalog.db.embedded import EmbeddedPostgres

EMBEDDED_DATABASE = "catalog"

log = logging.getLogger("catalog.db")


@dataclass(frozen=True)
class Database:
    """The two connections to one database: the schema owner's and the service's own."""

    owner_url: str  # migrations (and `catalog rebuild`, which truncates the projection)
    service_url: str  # everything else: the service role, which cannot alter or rewrite the audit trail


@contextmanager
def database(settings: Settings) -> Iterator[Database]:
    """The database for the duration of a command (not migrated: see `migrated`).

    External: CATALOG_MIGRATION_DATABASE_URL (else CATALOG_DATABASE_URL) migrates, CATALOG_DATABASE_URL
    serves. Embedded: the superuser migrates, the service role (created with a generated password in
    CATALOG_HOME) serves. The embedded server is started, or shared with a process already using it
    (e.g. `catalog serve`); the last process using it stops it, also on SIGTERM (`_sigterm_unwinds`).
    A server left running by a process that was killed outright is taken over and stopped by this one.
    """
    if settings.database_url:
        yield Database(settings.migration_database_url or settings.database_url, settings.database_url)
        return
    server = EmbeddedPostgres(settings.home)
    with _sigterm_unwinds():
        try:
            server.acquire()
            if server.took_over is not None:
                log.warning(
                    "took over the embedded PostgreSQL (pid %s) left running by a process that was killed; "
                    "it is stopped when this command ends",
                    server.took_over,
                )
            if EMBEDDED_DATABASE not in _databases(server):
                server.create_database(EMBEDDED_DATABASE)
            server.ensure_login_role(settings.service_role)
            yield Database(
                server.sqlalchemy_url(EMBEDDED_DATABASE),
                server.sqlalchemy_url(EMBEDDED_DATABASE, role=settings.service_role),
            )
        finally:
            server.release()


@contextmanager
def migrated(settings: Settings) -> Iterator[Database]:
    """`database`, brought up to the latest schema first (as the owner, granting to the service role)."""
    from catalog.db import migrate

    with database(settings) as db:
        migrate.upgrade(db.owner_url, service_role=settings.service_role)
        yield db


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Make SIGTERM raise SystemExit(143) in the main thread, so `finally` blocks stop the server.

    Python's default SIGTERM action kills the process on the spot. uvicorn handles SIGTERM while it
    serves, and after its graceful shutdown restores the previous handler and raises the signal again:
    with the default action nothing after `uvicorn.run()` would run and the embedded server would be
    left behind. SIGINT needs nothing: its default handler already raises KeyboardInterrupt.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:  # someone else chose what SIGTERM does
        yield
        return

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _databases(server: EmbeddedPostgres) -> set[str]:
    import psycopg

    with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
