"""Read routing: plain reads go to a streaming replica (CATALOG_READ_DATABASE_URL), everything else to
the primary, with read-your-writes across processes and a fallback to the primary.

The decisions, in one place:

- Only the connections handed out by `ReadRouter.connect` go to the replica: REST GET handlers
  (`catalog/api/rest/deps.py`), GraphQL queries (`catalog/api/graphql`) and the export's snapshot.
  Writes and every read that decides access — API keys, grants, revocations — use the primary engine,
  so replica lag can never undo a revocation.
- Read-your-writes is carried by the client, not by server memory (several stateless processes serve
  one catalog): after a write the answer carries `Catalog-LSN`, the primary's WAL position once the
  write committed. A read that sends it back waits until the replica has replayed that far
  (`pg_last_wal_replay_lsn() >= lsn`), polling, at most `read_your_writes_wait_seconds`; then it is
  served by the primary instead. A read without the header takes the replica as it is.
- A replica that cannot be reached is not an error: the read falls back to the primary and the replica
  is skipped for `replica_retry_seconds` (so a down replica costs one failed connect per interval, not
  one per request). Only a replica connection lost in the middle of a request answers 503.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from catalog.db.engine import raw_connection

log = logging.getLogger("catalog.db.replica")

LSN_HEADER = "Catalog-LSN"
# PostgreSQL's textual pg_lsn: two hexadecimal halves of a 64-bit WAL position.
LSN_PATTERN = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")

# A replica that is not in recovery (promoted, or a primary given as the read URL) has everything.
CAUGHT_UP_SQL = "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, true)"
FIRST_POLL_SECONDS = 0.005
MAX_POLL_SECONDS = 0.05


class InvalidLsn(ValueError):
    """A `Catalog-LSN` value that is not a WAL position."""


def parse_lsn(value: str | None) -> str | None:
    """The read-your-writes token of a request, validated (None when absent)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not LSN_PATTERN.match(value):
        raise InvalidLsn(f"{LSN_HEADER} must be a WAL position such as 0/16B3748, not {value[:40]!r}")
    return value


async def current_lsn(engine: AsyncEngine) -> str:
    """The primary's WAL position now: every transaction committed before this call is at or below it."""
    async with engine.connect() as conn:
        raw = await raw_connection(conn)
        return str(await raw.fetchval("SELECT pg_current_wal_lsn()::text"))


class ReadRouter:
    """Hands out connections for plain reads: the replica when it is there and recent enough."""

    def __init__(
        self,
        primary: AsyncEngine,
        replica: AsyncEngine | None = None,
        *,
        max_wait_seconds: float = 2.0,
        retry_seconds: float = 1.0,
    ) -> None:
        self.primary = primary
        self.replica = replica
        self._max_wait = max_wait_seconds
        self._retry = retry_seconds
        self._skip_until = 0.0

    @property
    def has_replica(self) -> bool:
        return self.replica is not None

    async def connect(self, *, after: str | None = None) -> AsyncConnection:
        """A connection for a read that must see at least WAL position `after` (None: any)."""
        if self.replica is None or time.monotonic() < self._skip_until:
            return await self.primary.connect()
        try:
            conn = await self.replica.connect()
        except Exception as exc:  # unreachable, refusing, misconfigured: the primary still answers
            self._skip_until = time.monotonic() + self._retry
            log.warning(
                "read replica unavailable (%s); reading from the primary for %.1f s",
                type(exc).__name__,
                self._retry,
            )
            return await self.primary.connect()
        if after is None:
            return conn
        try:
            caught_up = await self._wait_for(conn, after)
        except Exception as exc:  # the replica went away while we waited: the primary answers
            await conn.close()
            self._skip_until = time.monotonic() + self._retry
            log.warning("read replica lost while waiting (%s); reading from the primary", type(exc).__name__)
            return await self.primary.connect()
        except BaseException:
            await conn.close()
            raise
        if caught_up:
            return conn
        await conn.close()
        log.info("read replica behind %s after %.1f s; reading from the primary", after, self._max_wait)
        return await self.primary.connect()

    async def _wait_for(self, conn: AsyncConnection, lsn: str) -> bool:
        """Poll the replica's replay position until it reaches `lsn` or the wait bound passes.

        Through the raw asyncpg connection: a statement through SQLAlchemy would begin the transaction
        the caller is about to begin with its own isolation level."""
        raw = await raw_connection(conn)
        deadline = time.monotonic() + self._max_wait
        pause = FIRST_POLL_SECONDS
        while True:
            if await raw.fetchval(CAUGHT_UP_SQL, lsn):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(pause, remaining))
            pause = min(pause * 2, MAX_POLL_SECONDS)

    async def dispose(self) -> None:
        if self.replica is not None:
            await self.replica.dispose()
