"""A job's latest run without sorting all its runs.

"The latest run of a job" (`findings.facts.LATEST_RUN`: the run a finding names, evaluated by the
projector for every dataset and flow a batch touches) orders by `first_seen DESC, run_uuid DESC`. The
index on `runs (job_id, first_seen)` could not give that order, so every lookup sorted all the runs of the
job: the statement grew with the log (20 ms a batch at 20k events, 393 ms at 200k on the bench stream,
and the soak's lag crept from 0.3 to 0.9 s over 1M events). With `run_uuid` in the index a backward scan
yields the first row in order. It also serves every lookup the old index served (same leading columns).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX ix_runs_job_id_first_seen_run_uuid ON runs (job_id, first_seen, run_uuid)")
    op.execute("DROP INDEX ix_runs_job_id_first_seen")


def downgrade() -> None:
    op.execute("CREATE INDEX ix_runs_job_id_first_seen ON runs (job_id, first_seen)")
    op.execute("DROP INDEX ix_runs_job_id_first_seen_run_uuid")
