"""Close the product boundary on ingest: who sent an event, ownership claims, owner-ranked field attributes.

- `event_log.emitter_product`: the product of the key that sent the event (NULL: a key acting for every
  product — admin, the operator's CLI — and every event logged before this revision). The projection
  judges a dataset's facets by it, so `catalog rebuild` needs it beside the payload.
- `ownership_claims`: every owner an ownership facet named for a dataset, per emitting product (`*`: a
  key acting for every product). products.yaml places a dataset first; a claim places one it does not,
  and only when sent by that same product; the others are kept as candidates (and flagged).
- `dataset_fields.attrs_rank`: 1 when a field's type/description came from the dataset's owner, 0 when
  another product's schema only added the field: an owner's description always outranks a reader's.
- The `product-conflict` finding rule is now `ownership-conflict` (the same rule, extended to claims).

The claims are backfilled from the stored ownership facets (all from trusted emitters before this
revision, as the NULL `emitter_product` says).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UPGRADE = r"""
ALTER TABLE event_log ADD COLUMN emitter_product TEXT;

ALTER TABLE dataset_fields ADD COLUMN attrs_rank SMALLINT DEFAULT 1 NOT NULL;

CREATE TABLE ownership_claims (
    dataset_id BIGINT NOT NULL,
    owner TEXT NOT NULL,
    emitter TEXT NOT NULL,
    first_logged BIGINT NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL,
    CONSTRAINT pk_ownership_claims PRIMARY KEY (dataset_id, owner, emitter),
    CONSTRAINT fk_ownership_claims_dataset_id_datasets FOREIGN KEY(dataset_id) REFERENCES datasets (id) ON DELETE CASCADE
);

INSERT INTO ownership_claims (dataset_id, owner, emitter, first_logged, first_seen, last_seen)
SELECT o.subject_id, o.name, '*', 0, f.event_time, f.event_time
FROM owners o JOIN facets f ON f.subject_kind = o.subject_kind AND f.subject_id = o.subject_id
 AND f.name = 'ownership'
WHERE o.subject_kind = 'dataset'
ON CONFLICT DO NOTHING;

UPDATE findings SET rule = 'ownership-conflict' WHERE rule = 'product-conflict';
"""

DOWNGRADE = r"""
UPDATE findings SET rule = 'product-conflict' WHERE rule = 'ownership-conflict';

DROP TABLE IF EXISTS ownership_claims;

ALTER TABLE dataset_fields DROP COLUMN attrs_rank;

ALTER TABLE event_log DROP COLUMN emitter_product;
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
