"""The async SQLAlchemy engine (asyncpg underneath) and the helpers to reach its raw connections."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from catalog.db.errors import DatabaseUnavailable, is_unavailable


def asyncpg_url(url: str) -> str:
    """Accept the URL forms users paste (postgres://, postgresql://, +psycopg) and use asyncpg."""
    parsed = make_url(
        url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url
    )
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def libpq_dsn(url: str) -> str:
    """The same database as a plain libpq/asyncpg DSN (for psycopg, psql and asyncpg.connect)."""
    return make_url(asyncpg_url(url)).set(drivername="postgresql").render_as_string(hide_password=False)


def load_json(text: str | bytes) -> Any:
    """How json and jsonb values are decoded: orjson (the projector reads back every payload it folds: with the
    standard library's decoder that was 7 % of its time, `python bench/ingest.py` under py-spy), or the
    standard library for what orjson refuses (a number beyond a double's range)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    echo: bool = False,
    connect_timeout: float | None = None,
) -> AsyncEngine:
    """One engine per process; statements are prepared and cached by asyncpg per connection.
    `connect_timeout` bounds a connect (asyncpg's default is 60 s): the read replica's engine sets it,
    so an unreachable replica costs a short wait before the primary answers, not a minute."""
    timeout = {"timeout": connect_timeout} if connect_timeout is not None else {}
    return create_async_engine(
        asyncpg_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        echo=echo,
        json_deserializer=load_json,
        connect_args={"server_settings": {"application_name": "catalog", "timezone": "UTC"}, **timeout},
    )


async def raw_connection(conn: AsyncConnection) -> asyncpg.Connection[Any]:
    """The asyncpg connection under an SQLAlchemy connection, inside the same transaction.

    The ingest hot path sends array-typed, set-based statements straight to asyncpg: SQLAlchemy's
    per-statement overhead buys nothing for fixed SQL, and it is large next to a short statement
    (`bench/driver_overhead.py`, a 100-id array statement on the embedded server, 2 shared cores:
    672 µs through `text()` against 289 µs straight to asyncpg, median of 5 × 3000).

    Note: SQLAlchemy begins its transaction lazily, on its first statement; statements sent straight to
    asyncpg do not trigger it. Use `raw_transaction` to write through asyncpg.
    """
    fairy = await conn.get_raw_connection()
    driver = fairy.driver_connection
    assert driver is not None
    return driver


async def driver_connection(conn: AsyncConnection) -> asyncpg.Connection[Any]:
    """The asyncpg connection under `conn`, inside `conn`'s transaction: for services that take the
    caller's SQLAlchemy connection (the one idiom of public service signatures) but send fixed,
    array-typed SQL straight to asyncpg. SQLAlchemy begins its transaction lazily, on its first
    statement; when none has run yet, a trivial one begins it, so the statements that follow belong
    to the caller's transaction (and snapshot) rather than each committing on its own."""
    raw = await raw_connection(conn)
    if conn.in_transaction() and not raw.is_in_transaction():
        await conn.execute(text("SELECT 1"))
    return raw


async def begin_snapshot(conn: AsyncConnection, *, statement_timeout_ms: int) -> None:
    """Begin a READ ONLY, REPEATABLE READ transaction on `conn` (every statement of it reads the same
    snapshot) in which the server cancels a statement after `statement_timeout_ms`."""
    await conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    await conn.begin()
    # SET LOCAL takes no bind parameters; the value is an int.
    await conn.execute(text(f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}"))


@asynccontextmanager
async def guarded_transaction(conn: AsyncConnection) -> AsyncIterator[AsyncConnection]:
    """`conn` in one transaction, committed on success and rolled back on error, then closed; a
    connection lost on the way raises `DatabaseUnavailable` (503 at the edge). Every request's
    connection (catalog/api/rest/deps.py, the GraphQL mutations) is held this way."""
    try:
        async with lost_connection_guard(conn), conn.begin():
            yield conn
    finally:
        await conn.close()


@asynccontextmanager
async def raw_transaction(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection[Any]]:
    """A pooled asyncpg connection inside one transaction: committed on success, rolled back on error.
    A connection lost on the way raises `DatabaseUnavailable` (see catalog/db/errors.py)."""
    async with engine.connect() as conn:
        raw = await raw_connection(conn)
        try:
            async with raw.transaction():
                yield raw
        except Exception as exc:
            raise_if_lost(exc, raw.is_closed())
            raise


async def connection_lost(conn: AsyncConnection) -> bool:
    """Whether the connection under `conn` is gone (invalidated by SQLAlchemy or closed under asyncpg)."""
    if conn.closed or conn.invalidated:
        return True
    try:
        fairy = await conn.get_raw_connection()
    except Exception:
        return True
    driver = fairy.driver_connection
    return driver is None or bool(driver.is_closed())


@asynccontextmanager
async def lost_connection_guard(conn: AsyncConnection) -> AsyncIterator[AsyncConnection]:
    """Around work on `conn`: an error after which the connection is gone raises `DatabaseUnavailable`.

    asyncpg reports a statement on a connection that was already closed (by a killed backend) as a
    plain `InterfaceError`, the same class it uses for misuse; the connection's state tells them apart."""
    try:
        yield conn
    except Exception as exc:
        raise_if_lost(exc, await connection_lost(conn))
        raise


def raise_if_lost(exc: Exception, lost: bool) -> None:
    """`exc` as `DatabaseUnavailable` (503, retry) when the connection it came on is gone (`lost`)."""
    if lost and not is_unavailable(exc):
        raise DatabaseUnavailable(f"the connection to PostgreSQL was lost ({type(exc).__name__})") from exc
