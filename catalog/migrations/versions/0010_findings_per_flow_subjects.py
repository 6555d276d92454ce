"""Findings judged per flow, with structured subjects: `flow_transports`, `findings.subject(_display)`.

- `flow_transports`: the transport (dataSource URI, redacted) each job last used for each dataset in each
  direction, backfilled here from the event log (afterwards written by the projection).
- `findings.subject` (JSONB `{kind, namespace, name, field?, job?, direction?}`) and `subject_display`.
- Findings whose subject changed meaning are resolved: unencrypted transfers judged per dataset
  (`dataset:<id>`), unmasked PII per column (`field:<dataset>:<field>`) and shared databases as one
  finding (`namespace:<id>`). Run `catalog scan` after upgrading: it re-opens each one that still fires
  under its new subject (per flow; per product for a shared database) and fills every subject's display.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE flow_transports (
    job_id BIGINT NOT NULL,
    dataset_id BIGINT NOT NULL,
    direction TEXT NOT NULL,
    uri TEXT NOT NULL,
    event_time TIMESTAMP WITH TIME ZONE NOT NULL,
    run_uuid UUID,
    CONSTRAINT pk_flow_transports PRIMARY KEY (job_id, dataset_id, direction),
    CONSTRAINT ck_flow_transports_direction CHECK (direction IN ('input','output')),
    CONSTRAINT fk_flow_transports_job_id_jobs FOREIGN KEY(job_id) REFERENCES jobs (id),
    CONSTRAINT fk_flow_transports_dataset_id_datasets FOREIGN KEY(dataset_id) REFERENCES datasets (id)
);

CREATE INDEX ix_flow_transports_dataset_id ON flow_transports (dataset_id);

INSERT INTO flow_transports (job_id, dataset_id, direction, uri, event_time, run_uuid)
SELECT DISTINCT ON (j.id, d.id, x.direction) j.id, d.id, x.direction, x.uri, e.event_time, e.run_uuid
FROM event_log e
CROSS JOIN LATERAL (
    SELECT 'input' AS direction, i.value ->> 'namespace' AS ns, i.value ->> 'name' AS nm,
           i.value #>> '{facets,dataSource,uri}' AS uri
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(e.payload -> 'inputs') = 'array'
                                   THEN e.payload -> 'inputs' ELSE '[]'::jsonb END) AS i(value)
    UNION ALL
    SELECT 'output', o.value ->> 'namespace', o.value ->> 'name', o.value #>> '{facets,dataSource,uri}'
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(e.payload -> 'outputs') = 'array'
                                   THEN e.payload -> 'outputs' ELSE '[]'::jsonb END) AS o(value)
) x
JOIN namespaces jn ON jn.name = e.job_namespace JOIN jobs j ON j.namespace_id = jn.id AND j.name = e.job_name
JOIN namespaces dn ON dn.name = x.ns JOIN datasets d ON d.namespace_id = dn.id AND d.name = x.nm
WHERE btrim(coalesce(x.uri, '')) <> ''
ORDER BY j.id, d.id, x.direction, e.event_time DESC, x.uri COLLATE "C" DESC, e.run_uuid::text COLLATE "C" DESC NULLS LAST;

ALTER TABLE findings ADD COLUMN subject JSONB DEFAULT '{}'::jsonb NOT NULL,
                     ADD COLUMN subject_display TEXT DEFAULT '' NOT NULL;

UPDATE findings SET status = 'resolved', status_changed_at = now()
WHERE status = 'open'
  AND ((rule = 'unencrypted-transfer' AND subject_key LIKE 'dataset:%')
       OR (rule = 'pii-unmasked' AND subject_key LIKE 'field:%')
       OR (rule = 'shared-database' AND subject_key ~ '^namespace:[0-9]+$'));

UPDATE findings f SET subject = CASE
    WHEN f.subject_kind = 'dataset' AND d.id IS NOT NULL
        THEN jsonb_build_object('kind', 'dataset', 'namespace', dn.name, 'name', d.name)
    WHEN f.subject_kind = 'job' AND j.id IS NOT NULL
        THEN jsonb_build_object('kind', 'job', 'namespace', jn.name, 'name', j.name)
    WHEN f.subject_kind = 'flow' AND d.id IS NOT NULL AND j.id IS NOT NULL
        THEN jsonb_build_object('kind', 'flow', 'namespace', dn.name, 'name', d.name,
                                'job', jsonb_build_object('namespace', jn.name, 'name', j.name),
                                'direction', f.evidence ->> 'direction')
    WHEN f.subject_kind = 'flow' AND nn.id IS NOT NULL AND j.id IS NOT NULL
        THEN jsonb_build_object('kind', 'flow', 'namespace', nn.name, 'name', NULL,
                                'job', jsonb_build_object('namespace', jn.name, 'name', j.name),
                                'direction', 'input')
    WHEN f.subject_kind = 'namespace' AND nn.id IS NOT NULL
        THEN jsonb_build_object('kind', 'namespace', 'namespace', nn.name, 'name', NULL)
    ELSE '{}'::jsonb END
FROM findings x
LEFT JOIN datasets d ON d.id = x.dataset_id LEFT JOIN namespaces dn ON dn.id = d.namespace_id
LEFT JOIN jobs j ON j.id = x.job_id LEFT JOIN namespaces jn ON jn.id = j.namespace_id
LEFT JOIN namespaces nn ON nn.id = x.namespace_id
WHERE x.id = f.id;
"""

DOWNGRADE = r"""
ALTER TABLE findings DROP COLUMN subject_display, DROP COLUMN subject;

DROP TABLE flow_transports;
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
