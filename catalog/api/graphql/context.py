"""Per-request GraphQL context: the caller's principal, one database connection, the DataLoaders.

Why one connection per request, serialised by a lock (rather than a connection per loader batch):
strawberry resolves sibling fields concurrently, so several loader batches can be ready to query at
the same instant, and an asyncpg connection (like an AsyncSession) must never run two statements at
once. Taking a fresh pool connection per batch would avoid the lock, but a single query could then
hold several pool slots at once (a page with fields, owners and producers: three), starving other
requests under load, and each batch would read a different snapshot. One connection per request in a
READ ONLY, REPEATABLE READ transaction gives every field of an answer the same snapshot and costs one
pool slot; the lock only orders the few batch statements, which would queue on the 2-core database
anyway. The connection is opened lazily, so GraphiQL's schema introspection touches no database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from strawberry.fastapi import BaseContext

from catalog.api.graphql.errors import QueryTimeout
from catalog.auth.service import Principal
from catalog.config import Settings
from catalog.db.engine import begin_snapshot, connection_lost
from catalog.db.errors import DatabaseUnavailable, is_unavailable
from catalog.policy.authoriser import Authoriser

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from catalog.api.graphql.loaders import Loaders

QUERY_CANCELED = "57014"  # PostgreSQL's SQLSTATE for a statement cancelled by statement_timeout


@dataclass(frozen=True, slots=True)
class Limits:
    """The protection applied to every GraphQL query (configured by Settings.graphql_*)."""

    max_depth: int
    max_aliases: int
    max_tokens: int
    max_page_size: int
    max_lineage_depth: int
    timeout_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_depth=settings.graphql_max_depth,
            max_aliases=settings.graphql_max_aliases,
            max_tokens=settings.graphql_max_tokens,
            max_page_size=settings.graphql_max_page_size,
            max_lineage_depth=settings.graphql_max_lineage_depth,
            timeout_seconds=settings.graphql_timeout_seconds,
        )


class RequestDatabase:
    """A lazily opened connection shared by one request's resolvers, one statement at a time."""

    def __init__(self, connect: Callable[[], Awaitable[AsyncConnection]], *, timeout_seconds: float) -> None:
        # The primary's or the read router's connect (a query may read on the replica; app.py decides).
        self._connect = connect
        self._timeout_seconds = timeout_seconds
        # The server cancels a statement a little before the whole query times out (the schema's
        # asyncio deadline), so a slow statement is stopped in PostgreSQL rather than by cancelling
        # the task mid-statement, and the connection goes back to the pool in a clean state.
        self._statement_timeout_ms = max(1, int(timeout_seconds * 900))
        self._lock = asyncio.Lock()
        self._conn: AsyncConnection | None = None

    @asynccontextmanager
    async def use(self) -> AsyncIterator[AsyncConnection]:
        """Exclusive use of the request's connection; a statement cancelled by the server-side
        timeout becomes a clear GraphQL error instead of a driver message."""
        async with self._lock:
            if self._conn is None:
                conn = await self._connect()
                try:
                    await begin_snapshot(conn, statement_timeout_ms=self._statement_timeout_ms)
                except BaseException:
                    await conn.close()
                    raise
                self._conn = conn
            try:
                yield self._conn
            except Exception as exc:
                # Through SQLAlchemy the driver's error is wrapped (DBAPIError.orig); statements sent
                # straight to asyncpg (the lineage walk) raise it bare.
                driver_error = exc.orig if isinstance(exc, DBAPIError) else exc
                if getattr(driver_error, "sqlstate", None) == QUERY_CANCELED:
                    raise QueryTimeout(self._timeout_seconds) from exc
                # A statement on a connection a killed backend left closed: a 503, not an internal error.
                if not is_unavailable(exc) and await connection_lost(self._conn):
                    raise DatabaseUnavailable("the connection to PostgreSQL was lost") from exc
                raise

    async def close(self) -> None:
        """Give the connection back to the pool (the read-only transaction is rolled back).

        FastAPI runs this after the answer has started, so it must not raise: a statement still in
        flight (a resolver outliving the answer) is waited for, bounded by the query's timeout, and a
        connection a killed backend left unusable ("another operation is in progress", "connection is
        closed") is dropped from the pool instead of returned to it."""
        try:
            async with asyncio.timeout(self._timeout_seconds):
                await self._lock.acquire()
        except TimeoutError:
            pass  # the in-flight statement is abandoned; invalidating below ends it
        else:
            self._lock.release()
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await conn.close()
        except Exception as exc:
            log.info("dropping a GraphQL request's unusable connection (%s)", type(exc).__name__)
            with contextlib.suppress(Exception):
                await conn.invalidate()


class GraphQLContext(BaseContext):
    """What every resolver gets as `info.context`."""

    def __init__(
        self,
        *,
        principal: Principal | None,
        db: RequestDatabase,
        loaders: Loaders,
        limits: Limits,
        authz: Authoriser,
    ) -> None:
        super().__init__()
        self.principal = principal
        self.db = db
        self.loaders = loaders
        self.limits = limits
        self.authz = authz
