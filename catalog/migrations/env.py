"""Alembic environment: runs migrations over the async engine, URL from the catalog's settings."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from catalog.config import DEFAULT_SERVICE_ROLE
from catalog.db.engine import create_engine
from catalog.migrations.metadata import ALL_TABLES

target_metadata = ALL_TABLES


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
        _grant_service_role(connection)


def _grant_service_role(connection: Connection) -> None:
    """Re-apply the service role's grants (revision 0009) after any run, so the tables a later revision
    adds are classified (append-only or not) in the same transaction that created them."""
    installed = connection.execute(text("SELECT to_regprocedure('catalog_grant_service_role(text)')"))
    if installed.scalar() is None:  # before 0009, or downgraded below it
        return
    role = context.config.attributes.get("service_role") or DEFAULT_SERVICE_ROLE
    connection.execute(text("SELECT catalog_grant_service_role(:role)"), {"role": role})


async def _run_async(url: str) -> None:
    engine = create_engine(url, pool_size=1)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


url = context.config.get_main_option("sqlalchemy.url")
if not url:
    raise RuntimeError("no database URL: run migrations through `catalog migrate`")
connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    asyncio.run(_run_async(url))
