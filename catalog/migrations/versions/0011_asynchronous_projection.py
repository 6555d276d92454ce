"""Asynchronous projection: the event log is the queue, one projector folds it into the catalog.

- `projector_state`: how far (an `event_log.id`) the projector has folded the log. It is advanced in the
  same transaction as the projection it stands for, so nothing is applied twice and nothing skipped.
  Every event logged before this revision was projected synchronously: the position starts at the head.
- `projection_set_aside`: events the projector could not fold (a bug, a constraint), with the error;
  the rest of the log goes on without them, and `catalog projector retry` folds them after a fix.
- `event_log.redactions`: the JSON pointers of the values redacted before the event was stored; the
  projector judges the credentials-in-metadata rule by them (the stored payload no longer holds the secret).
- `event_log.emitter_key`: the id of the API key that sent it (the ownership-claim audit rows name it).
- An index on `event_log (id)`: the projector reads "after position N, in id order" (the primary key
  starts with event_time, the partition key).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE INDEX ix_event_log_id ON event_log (id);

ALTER TABLE event_log ADD COLUMN redactions TEXT[], ADD COLUMN emitter_key TEXT;

CREATE TABLE projector_state (
    name TEXT NOT NULL,
    position BIGINT NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    last_error TEXT,
    last_error_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT pk_projector_state PRIMARY KEY (name)
);

INSERT INTO projector_state (name, position) SELECT 'catalog', coalesce(max(id), 0) FROM event_log;

CREATE TABLE projection_set_aside (
    event_id BIGINT NOT NULL,
    event_time TIMESTAMP WITH TIME ZONE NOT NULL,
    error TEXT NOT NULL,
    set_aside_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    attempts INTEGER DEFAULT 1 NOT NULL,
    CONSTRAINT pk_projection_set_aside PRIMARY KEY (event_id)
);
"""

DOWNGRADE = """
DROP TABLE IF EXISTS projection_set_aside;

DROP TABLE IF EXISTS projector_state;


ALTER TABLE event_log DROP COLUMN IF EXISTS redactions, DROP COLUMN IF EXISTS emitter_key;

DROP INDEX IF EXISTS ix_event_log_id;
"""


def _statements(script: str) -> list[str]:
    # asyncpg prepares every statement, so a script goes one statement (blank-line separated) at a time.
    return [chunk.strip() for chunk in script.split("\n\n") if chunk.strip()]


def upgrade() -> None:
    for statement in _statements(UPGRADE):
        op.execute(statement)


def downgrade() -> None:
    for statement in _statements(DOWNGRADE):
        op.execute(statement)
