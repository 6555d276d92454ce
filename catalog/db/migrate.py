"""Run the Alembic migrations shipped in the package (`catalog/migrations/`) against a database URL
(CLI, app start, tests). No alembic.ini is read: everything the runner needs is set here, so an installed
wheel migrates the same way a checkout does."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine as create_sync_engine

from catalog.config import DEFAULT_SERVICE_ROLE
from catalog.db.engine import asyncpg_url

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"  # catalog/migrations/, by path: no import


def alembic_config(url: str, *, service_role: str = DEFAULT_SERVICE_ROLE) -> Config:
    """url: the schema owner's connection; service_role: the role the grants are for (revision 0009)."""
    cfg = Config()
    cfg.attributes["service_role"] = service_role
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    cfg.set_main_option("sqlalchemy.url", asyncpg_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head", *, service_role: str = DEFAULT_SERVICE_ROLE) -> None:
    """Bring the schema up to `revision` (idempotent), connected as the owner; grants to `service_role`."""
    command.upgrade(alembic_config(url, service_role=service_role), revision)


def downgrade(url: str, revision: str, *, service_role: str = DEFAULT_SERVICE_ROLE) -> None:
    command.downgrade(alembic_config(url, service_role=service_role), revision)


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("postgresql://x@/x")).get_current_head()
    assert head is not None
    return head


def head_revisions() -> tuple[str, ...]:
    """Every head of the migration scripts: the revisions a database of this version must be at."""
    return tuple(ScriptDirectory.from_config(alembic_config("postgresql://x@/x")).get_heads())


def current_revision(url: str) -> str | None:
    """The revision the database is at (None when never migrated); uses psycopg, no event loop needed."""
    engine = create_sync_engine(asyncpg_url(url).replace("+asyncpg", "+psycopg"))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
