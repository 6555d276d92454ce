"""What `/ready` asks the database: does it answer, and at which migration revisions is its schema."""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("catalog.ready")


async def applied_revisions(engine: AsyncEngine) -> frozenset[str]:
    """The revisions in `alembic_version` (none when the table cannot be read: an unmigrated database).
    Raises whatever reaching the database raised when it does not answer at all."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
        try:
            rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
        except Exception:
            log.warning("alembic_version could not be read", exc_info=True)
            return frozenset()
        return frozenset(r.version_num for r in rows)
