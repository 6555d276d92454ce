"""Checkpoint the audit chain automatically, so the unanchored tail (rows a superuser could cut off
without a trace) is never more than `interval` seconds old.

Every service process runs one; they need no coordination beyond the database: a transaction-scoped
`pg_try_advisory_xact_lock` lets one process checkpoint at a time (the others skip that round), the head
is compared with the newest checkpoint first (nothing to sign, nothing done), and the checkpoint insert
itself is `ON CONFLICT DO NOTHING`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.audit.service import Head, checkpoint
from catalog.audit.signing import KeyEncryptionKey
from catalog.periodic import Periodic

log = logging.getLogger(__name__)

# Its own advisory-lock key (not the append lock: appends must not wait for a checkpoint's signing).
CHECKPOINT_LOCK_KEY = 0x6175_6469_7401


async def checkpoint_if_behind(engine: AsyncEngine, kek: KeyEncryptionKey) -> Head | None:
    """Sign the head when rows follow the newest checkpoint; None when there was nothing to do or
    another process holds the checkpoint lock."""
    async with engine.begin() as conn:
        locked = (
            await conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": CHECKPOINT_LOCK_KEY})
        ).scalar_one()
        if not locked:
            return None
        behind = (
            await conn.execute(
                text(
                    "SELECT coalesce((SELECT max(seq) FROM audit_log), 0) > "
                    "coalesce((SELECT max(seq) FROM audit_checkpoints), 0)"
                )
            )
        ).scalar_one()
        if not behind:
            return None
        return await checkpoint(conn, kek)


class AuditCheckpointer:
    """The background task of one process (see the module docstring). `interval` <= 0: off."""

    def __init__(
        self, engine: AsyncEngine, kek: Callable[[], KeyEncryptionKey], *, interval: float = 60.0
    ) -> None:
        self._engine = engine
        self._kek_loader = kek
        self._kek: KeyEncryptionKey | None = None
        # The database may be down, or the KEK wrong: the log says so every round until it is fixed.
        self._task = Periodic(
            "audit-checkpointer",
            interval,
            self._round,
            failure="audit checkpoint failed; retrying next round",
            log=log,
        )
        self._enabled = interval > 0

    async def run_once(self) -> Head | None:
        if self._kek is None:
            self._kek = self._kek_loader()  # read lazily: a bad KEK is logged, not fatal at start-up
        return await checkpoint_if_behind(self._engine, self._kek)

    async def _round(self) -> None:
        head = await self.run_once()
        if head is not None:
            log.info("audit chain checkpointed at row %s", head.seq, extra={"seq": head.seq})

    async def start(self) -> None:
        if self._enabled:
            self._task.start()

    async def stop(self) -> None:
        await self._task.stop()
