"""Migrations: the schema they build matches the models, and they go down and up cleanly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from catalog.db import migrate
from catalog.db.engine import asyncpg_url
from catalog.migrations.metadata import ALL_TABLES


def _diff(url: str) -> list[object]:
    engine = create_engine(asyncpg_url(url).replace("+asyncpg", "+psycopg"))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diffs = compare_metadata(context, ALL_TABLES)
    finally:
        engine.dispose()
    # Partitions of event_log (and their indexes) are created at run time, outside the models.
    return [d for d in diffs if not _is_partition(d)]


def _is_partition(diff: object) -> bool:
    if not isinstance(diff, tuple):
        return False
    if diff[0] == "remove_table":
        return str(diff[1].name).startswith("event_log_")
    if diff[0] == "remove_index":
        return str(diff[1].table.name).startswith("event_log_")
    return False


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    assert _diff(database_url) == []


def test_down_and_up_again(database_url: str) -> None:
    migrate.downgrade(database_url, "base")
    assert migrate.current_revision(database_url) is None
    migrate.upgrade(database_url)
    assert migrate.current_revision(database_url) == migrate.head_revision()
    assert _diff(database_url) == []
