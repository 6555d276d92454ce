"""Drop the two event-log indexes no query uses.

Every statement on `event_log` goes through its key (`event_time`, the partition key: the events API, the
lineage-events histogram, the duplicate check) or `id` (the projector's reads, the status, rebuild); none
looks events up by `run_uuid` (runs are read from `runs`) or by `received_at` (the lag is the oldest of the
events after the projector's position, found through `id`). Each was one more B-tree to write (and keep,
and vacuum) for every event appended, on the accepting path, under the append lock. Measured on
`bench/ingest.py`'s stream (accept-only `catalog serve`, 20,000 events in 1,000-event batches, four runs
each, alternating): PostgreSQL's CPU per event 92 -> 91 µs and acceptance 6,855 -> 7,106 events/s
(medians): a small gain, within this box's noise; the reason is that nothing reads them.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_event_log_run_uuid")
    op.execute("DROP INDEX IF EXISTS ix_event_log_received_at")


def downgrade() -> None:
    op.execute("CREATE INDEX ix_event_log_run_uuid ON event_log (run_uuid)")
    op.execute("CREATE INDEX ix_event_log_received_at ON event_log (received_at)")
