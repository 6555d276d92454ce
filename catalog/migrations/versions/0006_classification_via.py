"""Propagated classifications keep a parent pointer (`via_field_id`, `via_masked`) instead of full paths.

A propagated row used to store its whole path (`path` ids and `path_names`, up to MAX_DEPTH hops), so a
shorter path found upstream rewrote every row downstream of it. Now a row stores its depth and the state
it came from: the field (`via_field_id`) and whether the value was already masked there (`via_masked`);
the path is rebuilt at read time by following the pointers (bounded by `depth`).

Upgrade converts the stored rows: the parent is the path's last-but-one field, masked there when a masked
propagated row of that field at depth - 1 exists (else the masking happened on the last hop). Downgrade
rebuilds `path` and `path_names` from the pointers.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE = r"""
ALTER TABLE classifications ADD COLUMN via_field_id BIGINT, ADD COLUMN via_masked BOOLEAN DEFAULT false NOT NULL;

UPDATE classifications c
SET via_field_id = c.path[cardinality(c.path) - 1],
    via_masked = c.masked AND c.depth > 1 AND EXISTS (
        SELECT 1 FROM classifications p
        WHERE p.source = 'propagated' AND p.field_id = c.path[cardinality(c.path) - 1] AND p.tag = c.tag
          AND p.masked AND p.depth = c.depth - 1)
WHERE c.source = 'propagated' AND cardinality(c.path) >= 2;

ALTER TABLE classifications DROP COLUMN path, DROP COLUMN path_names;

CREATE INDEX ix_classifications_via_field_id ON classifications (via_field_id);
"""

DOWNGRADE = r"""
DROP INDEX IF EXISTS ix_classifications_via_field_id;

ALTER TABLE classifications ADD COLUMN path BIGINT[], ADD COLUMN path_names TEXT[];

WITH RECURSIVE chain(id, field_id, tag, masked, depth, ids) AS (
    SELECT c.id, c.field_id, c.tag, c.masked, c.depth, ARRAY[c.via_field_id, c.field_id]
    FROM classifications c WHERE c.source = 'propagated' AND c.depth = 1 AND c.via_field_id IS NOT NULL
    UNION ALL
    SELECT c.id, c.field_id, c.tag, c.masked, c.depth, ch.ids || c.field_id
    FROM chain ch JOIN classifications c
      ON c.source = 'propagated' AND c.via_field_id = ch.field_id AND c.tag = ch.tag
     AND c.via_masked = ch.masked AND c.depth = ch.depth + 1
)
UPDATE classifications c
SET path = ch.ids,
    path_names = ARRAY(
        SELECT n.name || '/' || d.name || '#' || f.path
        FROM unnest(ch.ids) WITH ORDINALITY AS u(id, pos)
        JOIN dataset_fields f ON f.id = u.id JOIN datasets d ON d.id = f.dataset_id
        JOIN namespaces n ON n.id = d.namespace_id
        ORDER BY u.pos)
FROM chain ch WHERE ch.id = c.id;

ALTER TABLE classifications DROP COLUMN via_field_id, DROP COLUMN via_masked;
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
