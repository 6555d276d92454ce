"""Store the event log's payload as `json` (the text as accepted, validated) instead of `jsonb`.

Nothing queries inside a logged payload: the projector and the events API read it whole, and every
field a query filters on (event time, job, run, kind) has a column of its own. `jsonb` made PostgreSQL
build its binary form on every append (on the accepting path, under the append lock) and print it back
to text on every read (the projector reads back every event it folds), and it took more room. Measured
on `bench/ingest.py`'s events (4.8 KB each, 10,000 of them, inserted 25 to a statement, then read 100 to a
statement, on this machine's PostgreSQL 15, two runs each): insert 0.70-0.74 s as jsonb against
0.41-0.43 s as json; read 0.21-0.22 s against 0.06-0.07 s; 16.7 MB against 11.9 MB on disk.

The stored text is the canonical JSON the digest was computed from (sorted keys, no spaces), so it reads
back as the same value (and `sha256(convert_to(payload::text, 'UTF8'))` is its digest: the log can be
checked against its dedup keys with SQL alone); `payload::jsonb` gives an ad-hoc query jsonb's operators.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def _append_function(payload_type: str) -> str:
    """0014's `append_to_event_log`, casting the payload to `payload_type` (the rest is unchanged)."""
    spec = importlib.util.spec_from_file_location(
        "_m0014", Path(__file__).with_name("0014_append_in_one_statement.py")
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sql: str = module.APPEND_TO_EVENT_LOG
    assert "u.x::jsonb" in sql
    return sql.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION").replace(
        "u.x::jsonb", f"u.x::{payload_type}"
    )


# lz4 where the server was built with it (most distributions' packages; not the embedded wheel's):
# PostgreSQL compresses a payload longer than ~2 KB before storing it out of line, and pglz took most of
# what was left of an append's cost. On the same 10,000 events as above: insert 0.42-0.45 s (json, pglz)
# against 0.26-0.29 s (json, lz4); read the same; 13.6 MB on disk against 11.9 MB.
SET_LZ4_IF_AVAILABLE = """
DO $$
DECLARE
    part regclass;
BEGIN
    IF EXISTS (SELECT FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)) THEN
        -- the parent's setting goes to the partitions created from now on; the existing ones need their own
        ALTER TABLE event_log ALTER COLUMN payload SET COMPRESSION lz4;
        FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'event_log'::regclass LOOP
            EXECUTE format('ALTER TABLE %s ALTER COLUMN payload SET COMPRESSION lz4', part);
        END LOOP;
    END IF;
END
$$
"""


def upgrade() -> None:
    # Recurses into every partition and rewrites each: on a large log, `catalog migrate` takes as long as
    # copying it once (the values rewritten keep pglz; lz4 applies to those stored from now on).
    op.execute("ALTER TABLE event_log ALTER COLUMN payload TYPE json USING payload::json")
    op.execute(SET_LZ4_IF_AVAILABLE)  # after: a change of type resets a column's compression
    op.execute(_append_function("json"))


def downgrade() -> None:
    # (the change of type resets the compression to the server's default, in every partition)
    op.execute("ALTER TABLE event_log ALTER COLUMN payload TYPE jsonb USING payload::jsonb")
    op.execute(_append_function("jsonb"))
