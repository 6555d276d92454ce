"""The audit trail: the hash-chained, append-only audit log, its signed checkpoints, and signing keys.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = ("0003", "0004")  # TEMP while 0004 still revises 0002
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE audit_log (
    seq BIGINT NOT NULL,
    recorded_at TIMESTAMP WITH TIME ZONE NOT NULL,
    action TEXT NOT NULL,
    actor TEXT,
    subject TEXT NOT NULL,
    details JSONB NOT NULL,
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL,
    CONSTRAINT pk_audit_log PRIMARY KEY (seq)
);

CREATE INDEX ix_audit_log_recorded_at ON audit_log (recorded_at);

CREATE INDEX ix_audit_log_hash ON audit_log (hash);

CREATE TABLE signing_keys (
    key_id TEXT NOT NULL,
    algorithm TEXT DEFAULT 'ed25519' NOT NULL,
    public_key BYTEA NOT NULL,
    encrypted_private_key BYTEA NOT NULL,
    kek_id TEXT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    retired_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT pk_signing_keys PRIMARY KEY (key_id)
);

CREATE TABLE audit_checkpoints (
    seq BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    signed_at TIMESTAMP WITH TIME ZONE NOT NULL,
    key_id TEXT NOT NULL,
    signature BYTEA NOT NULL,
    CONSTRAINT pk_audit_checkpoints PRIMARY KEY (seq),
    CONSTRAINT fk_audit_checkpoints_key_id_signing_keys FOREIGN KEY(key_id) REFERENCES signing_keys (key_id)
);

-- Append-only, enforced by the database for every role that does not own the power to disable
-- triggers: history is never rewritten by the application, whatever bug or intruder drives it.
CREATE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$fn$;

CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

CREATE TRIGGER audit_checkpoints_no_update_delete BEFORE UPDATE OR DELETE ON audit_checkpoints
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
"""

DOWNGRADE = """
DROP TABLE IF EXISTS audit_checkpoints CASCADE;

DROP TABLE IF EXISTS signing_keys CASCADE;

DROP TABLE IF EXISTS audit_log CASCADE;

DROP FUNCTION IF EXISTS audit_log_append_only();
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
