"""Decide which PostgreSQL to use: CATALOG_DATABASE_URL if set, else the embedded one under CATALOG_HOME."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from catalog.config import Settings
from catalog.db.embedded import EmbeddedPostgres

EMBEDDED_DATABASE = "catalog"


@contextmanager
def database_url(settings: Settings, *, keep_running: bool = False) -> Iterator[str]:
    """Yield a database URL for the duration of a command.

    With no external URL, start the embedded server (or reuse one already running for this home, e.g.
    under `catalog serve`) and stop it afterwards only if this command started it.
    """
    if settings.database_url:
        yield settings.database_url
        return
    server = EmbeddedPostgres(settings.home)
    was_running = server.is_running()
    server.start()
    try:
        if EMBEDDED_DATABASE not in _databases(server):
            server.create_database(EMBEDDED_DATABASE)
        yield server.sqlalchemy_url(EMBEDDED_DATABASE)
    finally:
        if not was_running and not keep_running:
            server.stop()


def _databases(server: EmbeddedPostgres) -> set[str]:
    import psycopg

    with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
