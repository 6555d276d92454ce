"""Lineage as-of observations, search indexes, and tags on datasets and fields.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- Each time an owner of edges (a job for job_io, a target dataset for column_edges) was seen with a
-- complete edge set. An edge is live at T iff first_seen <= T and its owner has no observation in
-- (edge.last_seen, T]: order-independent, so a rebuild from the log reproduces it.
CREATE TABLE lineage_observations (
    owner_kind TEXT NOT NULL,
    owner_id BIGINT NOT NULL,
    observed_at TIMESTAMP WITH TIME ZONE NOT NULL,
    CONSTRAINT pk_lineage_observations PRIMARY KEY (owner_kind, owner_id, observed_at),
    CONSTRAINT ck_lineage_observations_owner_kind CHECK (owner_kind IN ('job','dataset'))
);

-- Name search is a substring match (ILIKE '%q%'): only a trigram index serves it without a full scan.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE INDEX ix_datasets_name_trgm ON datasets USING gin (name gin_trgm_ops);

CREATE INDEX ix_jobs_name_trgm ON jobs USING gin (name gin_trgm_ops);

-- Tags are user data, not projection: keyed by natural names (no foreign keys to surrogate ids), so a
-- rebuild of the projection (TRUNCATE ... RESTART IDENTITY) keeps them.
CREATE TABLE tags (
    name TEXT NOT NULL,
    description TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_tags PRIMARY KEY (name)
);

CREATE TABLE dataset_tags (
    namespace TEXT NOT NULL,
    dataset TEXT NOT NULL,
    field TEXT DEFAULT '' NOT NULL,
    tag TEXT NOT NULL,
    tagged_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_dataset_tags PRIMARY KEY (namespace, dataset, field, tag),
    CONSTRAINT fk_dataset_tags_tag_tags FOREIGN KEY(tag) REFERENCES tags (name) ON DELETE CASCADE
);

CREATE INDEX ix_dataset_tags_tag ON dataset_tags (tag);
"""

DOWNGRADE = """
DROP TABLE IF EXISTS dataset_tags CASCADE;

DROP TABLE IF EXISTS tags CASCADE;

DROP INDEX IF EXISTS ix_jobs_name_trgm;

DROP INDEX IF EXISTS ix_datasets_name_trgm;

DROP TABLE IF EXISTS lineage_observations CASCADE;
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
