"""Propagate PII classifications along column lineage, incrementally, with set-based statements per round.

What carries a tag (`CARRIES`): a field-to-field edge of type DIRECT with subtype IDENTITY,
TRANSFORMATION or none. Producers that send column lineage without transformations (the legacy
`columnLineage` form: type '' or the old `transformationType` IDENTITY) are treated as carrying too —
for PII, an unknown transformation must not hide a flow. AGGREGATION does not carry the value; INDIRECT
edges (join keys, filters) never carry it (they are reported as "influenced by" in the flow read).
A carrying edge with `masking: true` (or the legacy `MASKED` type) turns the value into a masked
derivative: the target gets a `masked` propagated row, which is not PII, and so does everything
downstream of it that is reached only through masking.

The answer, per state (field, tag, masked):
  - seeds are the declared, detected and manually added/confirmed sensitive tags, unmasked, at depth 0;
    a seed state walks on from depth 0 (depth counts from the nearest classified origin). It holds a
    propagated row of its own only when another seed feeds it directly (depth 1, e.g. a CDC topic's
    detected `cpf` fed by the OLTP column's): that row records where the value also comes from, is
    never walked on, and so can never lead back round a cycle to the seed itself;
  - every other state reachable over carrying edges (never through a self-loop) within MAX_DEPTH hops
    holds one propagated row: its shortest `depth`, and a pointer to the state it came from —
    `via_field_id` and `via_masked` — chosen among the parents at depth - 1 by the smallest parent field
    name (namespace, dataset, path in "C" collation), then unmasked before masked; category and
    confidence are the parent's (the seed's);
  - a steward's reject on (field, tag) is a barrier: the tag neither starts nor passes through that field.
Each row is a function of its in-neighbours' rows only, so the result is the unique fixpoint whatever the
batching or the arrival order: a rebuild reproduces it. The path is rebuilt at read time by following the
pointers (`depth` bounds the walk); a row never stores it.

Incremental maintenance, one set-based statement per round, touching only what changes:
  - `relax`: for a set of target fields, recompute every state's row from all its in-neighbours (seeds and
    propagated rows), write only the rows that differ, and make the carrying successors of the fields that
    changed the next round's targets; stop when nothing changes. Values only ever come from real paths, so
    this converges (Bellman-Ford): a row's final value is reached within a round per hop of its chain, at
    most MAX_DEPTH + 1 rounds after its nearest unchanged ancestor.
  - a new carrying edge (or a new classified source upstream of one) can only add or shorten paths:
    `relax_into` relaxes its targets.
  - a changed detection or declaration, or a steward's decision, can also remove PII: `propagate_from`
    first deletes the rows that depend on the changed fields — their rows, the rows pointing at them, and
    the rows pointing at those, round by round (depth strictly grows along pointers, so at most
    MAX_DEPTH + 1 rounds) — then relaxes the fields emptied and the successors of the changed fields.
No statement aggregates rows into one value: rows travel as rows, and a round's work is bounded by the
rows it changes and their neighbours.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg

from catalog.classification.detect import SENSITIVE_TAG_SQL

MAX_DEPTH = 32
# See the module docstring: convergence takes at most MAX_DEPTH + 2 rounds; the margin only guards a bug.
MAX_ROUNDS = 4 * MAX_DEPTH + 8

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

# Targets of carrying edges from classified fields (or fields a steward added a tag to).
DOWNSTREAM_OF_CLASSIFIED = f"""
SELECT DISTINCT e.target_field_id
FROM column_edges e
WHERE e.source_field_id = ANY($1::bigint[]) AND {CARRIES}
  AND (EXISTS (SELECT 1 FROM classifications c WHERE c.field_id = e.source_field_id)
       OR EXISTS (SELECT 1 FROM manual m WHERE m.field_id = e.source_field_id AND m.action <> 'reject'))
"""

OUT_TARGETS = f"""
SELECT DISTINCT e.target_field_id FROM column_edges e
WHERE e.source_field_id = ANY($1::bigint[]) AND {CARRIES}
"""

# The rows of the changed fields and the rows that came from them (seed or not).
INVALIDATE_FIELDS = """
DELETE FROM classifications
WHERE source = 'propagated' AND (field_id = ANY($1::bigint[]) OR via_field_id = ANY($1::bigint[]))
RETURNING field_id, tag, masked
"""

# The rows that came from the states just deleted.
INVALIDATE_CHILDREN = """
DELETE FROM classifications c
USING unnest($1::bigint[], $2::text[], $3::boolean[]) AS d(field_id, tag, masked)
WHERE c.source = 'propagated' AND c.via_field_id = d.field_id AND c.tag = d.tag AND c.via_masked = d.masked
RETURNING c.field_id, c.tag, c.masked
"""

# One relaxation round over the target fields $1: each state's row recomputed from all its in-neighbours,
# written only where it differs; returns the carrying successors of the fields whose rows changed.
RELAX_ROUND = f"""
WITH manual AS ({MANUAL_DECISIONS}),
tgt AS (SELECT t.id, t.dataset_id FROM dataset_fields t WHERE t.id = ANY($1::bigint[])),
edges AS (
    SELECT DISTINCT e.source_field_id AS src, e.target_field_id AS dst, {MASKS} AS masks
    FROM tgt t JOIN column_edges e ON e.target_dataset_id = t.dataset_id AND e.target_field_id = t.id
    WHERE {CARRIES} AND e.source_field_id <> e.target_field_id
),
fields AS (SELECT src AS id FROM edges UNION SELECT id FROM tgt),
seed AS (
    SELECT s.field_id, s.tag, min(s.category) AS category, max(s.confidence) AS confidence
    FROM (
        SELECT c.field_id, c.tag, c.category, c.confidence FROM classifications c
        WHERE c.source IN ('declared', 'detected') AND c.field_id IN (SELECT id FROM fields)
        UNION ALL
        SELECT m.field_id, m.tag, NULL, 1.0 FROM manual m
        WHERE m.action IN ('add', 'confirm') AND m.field_id IN (SELECT id FROM fields)
    ) s
    WHERE s.tag ~* {SENSITIVE_TAG_SQL}
      AND NOT EXISTS (SELECT 1 FROM manual x WHERE x.action = 'reject' AND x.field_id = s.field_id
                      AND x.tag = s.tag)
    GROUP BY s.field_id, s.tag
),
walker AS (
    SELECT s.field_id, s.tag, false AS masked, 0 AS depth, s.category, s.confidence FROM seed s
    UNION ALL
    SELECT c.field_id, c.tag, c.masked, c.depth::int, c.category, c.confidence FROM classifications c
    WHERE c.source = 'propagated' AND c.field_id IN (SELECT src FROM edges) AND c.depth < {MAX_DEPTH}
      AND (c.masked OR NOT EXISTS (SELECT 1 FROM seed s WHERE s.field_id = c.field_id AND s.tag = c.tag))
),
cand AS (
    SELECT DISTINCT ON (e.dst, w.tag, w.masked OR e.masks)
           e.dst AS field_id, w.tag, w.masked OR e.masks AS masked, w.depth + 1 AS depth,
           e.src AS via_field_id, w.masked AS via_masked, w.category, w.confidence
    FROM edges e
    JOIN walker w ON w.field_id = e.src
    JOIN dataset_fields f ON f.id = e.src
    JOIN datasets d ON d.id = f.dataset_id
    JOIN namespaces n ON n.id = d.namespace_id
    WHERE w.depth < {MAX_DEPTH}
      AND NOT EXISTS (SELECT 1 FROM manual x WHERE x.action = 'reject' AND x.field_id = e.dst AND x.tag = w.tag)
      AND (w.masked OR e.masks OR w.depth = 0
           OR NOT EXISTS (SELECT 1 FROM seed s WHERE s.field_id = e.dst AND s.tag = w.tag))
    ORDER BY e.dst, w.tag, w.masked OR e.masks, w.depth, n.name COLLATE "C", d.name COLLATE "C",
             f.path COLLATE "C", w.masked
),
written AS (
    INSERT INTO classifications AS c (dataset_id, field_id, tag, source, category, confidence, rule, masked,
                                      depth, via_field_id, via_masked)
    SELECT t.dataset_id, x.field_id, x.tag, 'propagated', x.category, x.confidence, NULL, x.masked, x.depth,
           x.via_field_id, x.via_masked
    FROM cand x JOIN tgt t ON t.id = x.field_id
    ON CONFLICT (dataset_id, field_id, tag, source, masked) DO UPDATE
    SET category = excluded.category, confidence = excluded.confidence, depth = excluded.depth,
        via_field_id = excluded.via_field_id, via_masked = excluded.via_masked
    WHERE (c.category, c.confidence, c.depth, c.via_field_id, c.via_masked)
          IS DISTINCT FROM (excluded.category, excluded.confidence, excluded.depth, excluded.via_field_id,
                            excluded.via_masked)
    RETURNING c.field_id
)
SELECT DISTINCT e.target_field_id AS id
FROM column_edges e
WHERE e.source_field_id IN (SELECT field_id FROM written) AND {CARRIES}
"""


async def targets_of_classified_sources(conn: asyncpg.Connection[Any], field_ids: Iterable[int]) -> set[int]:
    """Fields fed by a carrying edge from one of `field_ids` that holds a classification: a new edge
    from a PII column must propagate even if nothing about the column itself changed."""
    ids = sorted(set(field_ids))
    if not ids:
        return set()
    query = f"WITH manual AS ({MANUAL_DECISIONS}) {DOWNSTREAM_OF_CLASSIFIED}"
    return {r[0] for r in await conn.fetch(query, ids)}


async def relax(conn: asyncpg.Connection[Any], targets: Iterable[int]) -> int:
    """Recompute the rows of `targets` from their in-neighbours, then of the successors of every field
    whose rows changed, round by round until nothing changes; returns the number of fields examined."""
    frontier = sorted(set(targets))
    examined = 0
    rounds = 0
    while frontier:
        rounds += 1
        if rounds > MAX_ROUNDS:  # pragma: no cover - convergence is bounded (module docstring)
            raise RuntimeError(f"classification propagation did not converge in {MAX_ROUNDS} rounds")
        examined += len(frontier)
        frontier = sorted(r["id"] for r in await conn.fetch(RELAX_ROUND, frontier))
    return examined


async def relax_into(conn: asyncpg.Connection[Any], targets: Iterable[int]) -> int:
    """Propagate over new carrying edges into `targets`: a new edge can only add or shorten paths, so only
    the rows it improves (and what they improve downstream) are written. Returns the fields examined."""
    return await relax(conn, targets)


async def propagate_from(conn: asyncpg.Connection[Any], changed: Iterable[int]) -> int:
    """Redo propagation after the own classification of `changed` fields may have changed (which can remove
    PII): delete the rows that depend on them, then relax what was emptied and what the fields feed.
    Returns the number of fields examined."""
    fields = sorted(set(changed))
    if not fields:
        return 0
    emptied: set[int] = set(fields)
    deleted = await conn.fetch(INVALIDATE_FIELDS, fields)
    for _ in range(MAX_ROUNDS):
        if not deleted:
            break
        emptied.update(r["field_id"] for r in deleted)
        deleted = await conn.fetch(
            INVALIDATE_CHILDREN,
            [r["field_id"] for r in deleted],
            [r["tag"] for r in deleted],
            [r["masked"] for r in deleted],
        )
    emptied.update(r[0] for r in await conn.fetch(OUT_TARGETS, fields))
    return await relax(conn, emptied)
