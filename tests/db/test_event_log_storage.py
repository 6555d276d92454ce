"""How the event log stores payloads (migration 0015): json, compressed with lz4 where the server has it,
in every partition, including those created later."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

PAYLOAD_IN_EVERY_PARTITION = """
SELECT c.relname, format_type(a.atttypid, a.atttypmod) AS type, a.attcompression::text AS compression
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
WHERE a.attname = 'payload'
  AND (c.oid = 'event_log'::regclass OR c.oid IN (SELECT inhrelid FROM pg_inherits
                                                  WHERE inhparent = 'event_log'::regclass))
"""


async def test_every_partition_stores_json_with_the_fastest_compression_available(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        # a partition created after the migration (as the accepting path does for a new month)
        await conn.execute(text("SELECT ensure_event_log_partition('2031-07-15T00:00:00Z')"))
        lz4 = (
            await conn.execute(
                text("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")
            )
        ).scalar_one()
        columns = (await conn.execute(text(PAYLOAD_IN_EVERY_PARTITION))).all()
    names = {c.relname for c in columns}
    assert {"event_log", "event_log_2031_07"} <= names
    assert {c.type for c in columns} == {"json"}
    # 'l': lz4; '': the server's default (pglz), for a server built without lz4
    assert {c.compression for c in columns} == ({"l"} if lz4 else {""})
