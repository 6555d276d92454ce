"""Propagate PII classifications along column lineage, incrementally, in three set-based statements.

What carries a tag (`CARRIES`): a field-to-field edge of type DIRECT with subtype IDENTITY,
TRANSFORMATION or none. Producers that send column lineage without transformations (the legacy
`columnLineage` form: type '' or the old `transformationType` IDENTITY) are treated as carrying too —
for PII, an unknown transformation must not hide a flow. AGGREGATION does not carry the value; INDIRECT
edges (join keys, filters) never carry it (they are reported as "influenced by" in the flow read).
A carrying edge with `masking: true` (or the legacy `MASKED` type) turns the value into a masked
derivative: the target gets a `masked` propagated row, which is not PII, and so does everything
downstream of it that is reached only through masking.

Incremental algorithm, given the fields whose own classification may have changed (`changed`):
  1. region = `changed` and everything downstream of it over carrying edges (a recursive CTE with
     UNION over ids only, so cycles terminate);
  2. delete the propagated rows of the region — rows outside it cannot depend on what changed;
  3. walk again from the seeds inside the region and from the stored classifications of fields just
     upstream of it (the frontier), following carrying edges into the region only, at most MAX_DEPTH
     hops, never revisiting a field already on the path (cycles terminate), and keep per
     (field, tag, masked) the shortest path, ties broken by the path's names.
Shortest paths compose hop by hop, so this gives the same rows as a from-scratch walk whatever the
batching or the arrival order: a rebuild reproduces them.

A steward's reject on (field, tag) is a barrier: the tag neither starts nor passes through that field.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg

from catalog.classification.detect import SENSITIVE_TAG_SQL

MAX_DEPTH = 32

CARRIES = (
    "(e.target_field_id IS NOT NULL AND e.source_field_id IS NOT NULL AND ("
    "(e.transformation_type = 'DIRECT' AND e.transformation_subtype IN ('IDENTITY', 'TRANSFORMATION', ''))"
    " OR (e.transformation_type IN ('', 'IDENTITY', 'MASKED') AND e.transformation_subtype = '')))"
)
MASKS = "(e.masking OR e.transformation_type = 'MASKED')"

# Live manual decisions resolved to field ids (decisions are keyed by names so they survive a rebuild).
MANUAL_DECISIONS = """
SELECT ds.id AS dataset_id, CASE WHEN d.field_path = '' THEN NULL ELSE f.id END AS field_id, d.tag, d.action
FROM classification_decisions d
JOIN namespaces n ON n.name = d.namespace
JOIN datasets ds ON ds.namespace_id = n.id AND ds.name = d.dataset
LEFT JOIN dataset_fields f ON f.dataset_id = ds.id AND f.path = d.field_path
WHERE d.retired_at IS NULL AND (d.field_path = '' OR f.id IS NOT NULL)
"""

REGION = f"""
WITH RECURSIVE region(id) AS (
    SELECT unnest($1::bigint[])
    UNION
    SELECT e.target_field_id FROM region r JOIN column_edges e ON e.source_field_id = r.id WHERE {CARRIES}
)
SELECT coalesce(array_agg(id ORDER BY id), '{{}}') FROM region
"""

# Seeds outside the region but feeding it, and stored propagated rows there: the frontier.
DOWNSTREAM_OF_CLASSIFIED = f"""
SELECT coalesce(array_agg(DISTINCT e.target_field_id), '{{}}')
FROM column_edges e
WHERE e.source_field_id = ANY($1::bigint[]) AND {CARRIES}
  AND (EXISTS (SELECT 1 FROM classifications c WHERE c.field_id = e.source_field_id)
       OR EXISTS (SELECT 1 FROM manual m WHERE m.field_id = e.source_field_id AND m.action <> 'reject'))
"""

DELETE_PROPAGATED = "DELETE FROM classifications WHERE source = 'propagated' AND field_id = ANY($1::bigint[])"

PROPAGATE = f"""
WITH RECURSIVE
region AS (SELECT unnest($1::bigint[]) AS id),
manual AS ({MANUAL_DECISIONS}),
rejected AS (SELECT field_id, tag FROM manual WHERE action = 'reject' AND field_id IS NOT NULL),
inbound AS (
    SELECT DISTINCT e.source_field_id AS id
    FROM region r
    JOIN dataset_fields t ON t.id = r.id
    JOIN column_edges e ON e.target_dataset_id = t.dataset_id AND e.target_field_id = t.id
    WHERE {CARRIES} AND e.source_field_id <> ALL($1::bigint[])
),
relevant AS (SELECT id FROM region UNION SELECT id FROM inbound),
names AS (
    SELECT f.id, n.name || '/' || d.name || '#' || f.path AS name
    FROM relevant x JOIN dataset_fields f ON f.id = x.id
    JOIN datasets d ON d.id = f.dataset_id JOIN namespaces n ON n.id = d.namespace_id
),
seeds AS (
    SELECT s.field_id, s.tag, min(s.category) AS category, max(s.confidence) AS confidence
    FROM (
        SELECT c.field_id, c.tag, c.category, c.confidence FROM classifications c
        WHERE c.source IN ('declared', 'detected') AND c.field_id IN (SELECT id FROM relevant)
        UNION ALL
        SELECT m.field_id, m.tag, NULL, 1.0 FROM manual m
        WHERE m.action IN ('add', 'confirm') AND m.field_id IN (SELECT id FROM relevant)
    ) s
    WHERE s.tag ~* {SENSITIVE_TAG_SQL}
      AND NOT EXISTS (SELECT 1 FROM rejected x WHERE x.field_id = s.field_id AND x.tag = s.tag)
    GROUP BY s.field_id, s.tag
),
walk(field_id, tag, category, confidence, masked, depth, path, names) AS (
    SELECT s.field_id, s.tag, s.category, s.confidence, false, 0, ARRAY[s.field_id], ARRAY[nm.name]
    FROM seeds s JOIN names nm ON nm.id = s.field_id
    UNION ALL
    SELECT c.field_id, c.tag, c.category, c.confidence, c.masked, c.depth::int, c.path, c.path_names
    FROM classifications c
    WHERE c.source = 'propagated' AND c.field_id IN (SELECT id FROM inbound)
    UNION ALL
    SELECT e.target_field_id, w.tag, w.category, w.confidence, w.masked OR {MASKS}, w.depth + 1,
           w.path || e.target_field_id, w.names || nm.name
    FROM walk w
    JOIN column_edges e ON e.source_field_id = w.field_id
    JOIN region r ON r.id = e.target_field_id
    JOIN names nm ON nm.id = e.target_field_id
    WHERE {CARRIES} AND w.depth < {MAX_DEPTH} AND e.target_field_id <> ALL(w.path)
      AND NOT EXISTS (SELECT 1 FROM rejected x WHERE x.field_id = e.target_field_id AND x.tag = w.tag)
)
INSERT INTO classifications (dataset_id, field_id, tag, source, category, confidence, rule, masked, depth,
                             path, path_names)
SELECT DISTINCT ON (w.field_id, w.tag, w.masked)
       f.dataset_id, w.field_id, w.tag, 'propagated', w.category, w.confidence, NULL, w.masked, w.depth,
       w.path, w.names
FROM walk w JOIN dataset_fields f ON f.id = w.field_id
WHERE w.depth > 0 AND w.field_id IN (SELECT id FROM region)
ORDER BY w.field_id, w.tag, w.masked, w.depth, w.names
"""


async def targets_of_classified_sources(conn: asyncpg.Connection[Any], field_ids: Iterable[int]) -> set[int]:
    """Fields fed by a carrying edge from one of `field_ids` that holds a classification: a new edge
    from a PII column must propagate even if nothing about the column itself changed."""
    ids = sorted(set(field_ids))
    if not ids:
        return set()
    query = f"WITH manual AS ({MANUAL_DECISIONS}) {DOWNSTREAM_OF_CLASSIFIED}"
    return set(await conn.fetchval(query, ids))


async def propagate_from(conn: asyncpg.Connection[Any], changed: Iterable[int]) -> int:
    """Recompute propagated classifications downstream of `changed`; returns the region's size."""
    seeds = sorted(set(changed))
    if not seeds:
        return 0
    region: list[int] = await conn.fetchval(REGION, seeds)
    await conn.execute(DELETE_PROPAGATED, region)
    await conn.execute(PROPAGATE, region)
    return len(region)
