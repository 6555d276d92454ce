"""Alembic environment: runs migrations over the async engine, URL from the catalog's settings."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from catalog.db.base import import_all_models
from catalog.db.engine import create_engine

target_metadata = import_all_models()


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


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
