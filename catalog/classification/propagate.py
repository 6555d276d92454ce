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

Incremental maintenance, one set-based statement per level, touching only what changes:
  - `relax`: settle a region of target fields level by level in increasing depth. Level d offers every
    state of the region — and of the carrying successors of the fields level d - 1 wrote — its best
    candidate over in-neighbours up to depth d - 1, and writes it only where it is strictly better than the
    stored row in the well-founded order (depth, parent field name, unmasked parent first), or where it
    comes from the stored row's own parent and refreshes its category or confidence. Writes never make a
    row worse, so nothing can count up round a cycle or ping-pong at a tie: the work ends whatever the
    starting rows. When everything outside the region is already the fixpoint (the invariant the callers
    keep), a state's final row is known at the level of its depth, so it is written once and the work
    ends after MAX_DEPTH levels. Rows left stale by something else are repaired when a wave reaches them;
    should that chain on past MAX_ROUNDS statements, the ingest does not fail: a warning is logged and the
    region touched is deleted with what depends on it and re-derived exactly, level d offering only
    candidates at depth d, at most MAX_DEPTH statements.
  - a new carrying edge (or a new classified source upstream of one) can only add or shorten paths:
    `relax_into` relaxes its targets.
  - a changed detection or declaration, or a steward's decision, can also remove PII: `propagate_from`
    first deletes the rows that depend on the changed fields — their rows, the rows pointing at them, and
    the rows pointing at those, round by round until none is left — then relaxes the fields emptied, the
    successors of the changed fields and (`also`) the targets of the batch's new edges in one region, so
    that no wave from one part meets a row the other part has not yet brought up to date.
No statement aggregates rows into one value: rows travel as rows, and a round's work is bounded by the
rows it changes and their neighbours.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import asyncpg

from catalog.classification.detect import SENSITIVE_TAG_SQL

log = logging.getLogger(__name__)

MAX_DEPTH = 32
# Statements one relaxation may issue before it falls back to an exact recomputation of its region.
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

# One level of the relaxation: the best candidate of each state of the target fields $1, from their
# in-neighbours at depth $3 to $2 - 1 (seeds included when $3 = 0). A candidate is written only where it is strictly better
# than the stored row in the order (depth, parent name in "C" collation, unmasked parent before masked), or
# where it comes from the stored row's own parent and refreshes its category or confidence. Returns the
# fields written (their carrying successors are the next level's extra targets).
RELAX_LEVEL = f"""
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
walker AS MATERIALIZED (
    SELECT s.field_id, s.tag, false AS masked, 0 AS depth, s.category, s.confidence FROM seed s
    WHERE $3::int = 0
    UNION ALL
    SELECT c.field_id, c.tag, c.masked, c.depth::int, c.category, c.confidence FROM classifications c
    WHERE c.source = 'propagated' AND c.field_id IN (SELECT src FROM edges)
      AND c.depth BETWEEN $3::int AND $2::int - 1
      AND (c.masked OR NOT EXISTS (SELECT 1 FROM seed s WHERE s.field_id = c.field_id AND s.tag = c.tag))
),
cand AS MATERIALIZED (
    SELECT DISTINCT ON (e.dst, w.tag, w.masked OR e.masks)
           e.dst AS field_id, w.tag, w.masked OR e.masks AS masked, w.depth + 1 AS depth,
           e.src AS via_field_id, w.masked AS via_masked, w.category, w.confidence,
           n.name AS via_ns, d.name AS via_ds, f.path AS via_path
    FROM edges e
    JOIN walker w ON w.field_id = e.src
    JOIN dataset_fields f ON f.id = e.src
    JOIN datasets d ON d.id = f.dataset_id
    JOIN namespaces n ON n.id = d.namespace_id
    WHERE NOT EXISTS (SELECT 1 FROM manual x WHERE x.action = 'reject' AND x.field_id = e.dst AND x.tag = w.tag)
      AND (w.masked OR e.masks OR w.depth = 0
           OR NOT EXISTS (SELECT 1 FROM seed s WHERE s.field_id = e.dst AND s.tag = w.tag))
    ORDER BY e.dst, w.tag, w.masked OR e.masks, w.depth, n.name COLLATE "C", d.name COLLATE "C",
             f.path COLLATE "C", w.masked
),
better AS (
    SELECT x.*, t.dataset_id
    FROM cand x
    JOIN tgt t ON t.id = x.field_id
    LEFT JOIN classifications c
           ON c.dataset_id = t.dataset_id AND c.field_id = x.field_id AND c.tag = x.tag
          AND c.source = 'propagated' AND c.masked = x.masked
    LEFT JOIN dataset_fields cf ON cf.id = c.via_field_id
    LEFT JOIN datasets cd ON cd.id = cf.dataset_id
    LEFT JOIN namespaces cn ON cn.id = cd.namespace_id
    WHERE c.id IS NULL
       OR c.depth > x.depth
       OR (c.depth = x.depth AND c.via_field_id = x.via_field_id AND c.via_masked = x.via_masked
           AND (c.category, c.confidence) IS DISTINCT FROM (x.category, x.confidence))
       OR (c.depth = x.depth AND c.via_field_id = x.via_field_id AND c.via_masked AND NOT x.via_masked)
       OR (c.depth = x.depth AND c.via_field_id <> x.via_field_id
           AND (x.via_ns COLLATE "C", x.via_ds COLLATE "C", x.via_path COLLATE "C")
               < (cn.name COLLATE "C", cd.name COLLATE "C", cf.path COLLATE "C"))
       OR (c.depth = x.depth AND c.via_field_id IS NULL)
),
written AS (
    INSERT INTO classifications AS c (dataset_id, field_id, tag, source, category, confidence, rule, masked,
                                      depth, via_field_id, via_masked)
    SELECT b.dataset_id, b.field_id, b.tag, 'propagated', b.category, b.confidence, NULL, b.masked, b.depth,
           b.via_field_id, b.via_masked
    FROM better b
    ON CONFLICT (dataset_id, field_id, tag, source, masked) DO UPDATE
    SET category = excluded.category, confidence = excluded.confidence, depth = excluded.depth,
        via_field_id = excluded.via_field_id, via_masked = excluded.via_masked
    RETURNING c.field_id
)
SELECT DISTINCT field_id AS id FROM written
"""

# The depths of the propagated rows that feed each of the fields $1 over a carrying edge: from level 2 on, a
# field of the region is offered a level only if something fed it at that depth before the work began
# (anything written since is in the wave).
FED_AT = f"""
SELECT DISTINCT e.target_field_id AS id, c.depth::int AS depth
FROM column_edges e
JOIN classifications c ON c.field_id = e.source_field_id AND c.source = 'propagated'
WHERE e.target_field_id = ANY($1::bigint[]) AND {CARRIES} AND e.source_field_id <> e.target_field_id
  AND c.depth < {MAX_DEPTH}
"""


async def targets_of_classified_sources(conn: asyncpg.Connection[Any], field_ids: Iterable[int]) -> set[int]:
    """Fields fed by a carrying edge from one of `field_ids` that holds a classification: a new edge
    from a PII column must propagate even if nothing about the column itself changed."""
    ids = sorted(set(field_ids))
    if not ids:
        return set()
    query = f"WITH manual AS ({MANUAL_DECISIONS}) {DOWNSTREAM_OF_CLASSIFIED}"
    return {r[0] for r in await conn.fetch(query, ids)}


async def _level(conn: asyncpg.Connection[Any], fields: list[int], depth: int, lowest: int) -> list[int]:
    """One RELAX_LEVEL statement; returns the carrying successors of the fields it wrote."""
    written = [r["id"] for r in await conn.fetch(RELAX_LEVEL, fields, depth, lowest)]
    return sorted({r[0] for r in await conn.fetch(OUT_TARGETS, written)}) if written else []


async def _settle(
    conn: asyncpg.Connection[Any], region: list[int], examined: set[int], *, exact: bool
) -> list[int]:
    """Level by level in increasing depth: at level d the region is offered its candidates at depth d (from
    the seeds at level 1, then from the rows at depth d - 1 that fed it from the start), and the successors
    of what level d - 1 wrote their candidates up to depth d (exactly d when `exact`). Every write is a strict
    improvement in the order (depth, parent name, unmasked parent first) or a refresh from the same parent,
    so the work ends whatever the starting rows. Exact levels end after MAX_DEPTH statements; otherwise
    the wave may go on past MAX_DEPTH to repair stale rows it meets, for at most MAX_ROUNDS statements.
    Returns what is left of the wave (empty unless MAX_ROUNDS was hit)."""
    fed_at: dict[int, set[int]] = {}
    for r in await conn.fetch(FED_AT, region):
        fed_at.setdefault(r["depth"], set()).add(r["id"])
    wave: list[int] = []
    for level in range(1, MAX_ROUNDS + 1):
        if level > MAX_DEPTH and (exact or not wave):
            return []
        if level <= MAX_DEPTH and not wave and level - 1 > max(fed_at, default=0):
            return []  # nothing fed the region at level - 1 or deeper, and nothing was written
        depth = min(level, MAX_DEPTH)
        # the region: once whole for the seeds, then only where a row at depth - 1 feeds it
        fields = set(region) if level == 1 else fed_at.get(level - 1, set()) if level <= MAX_DEPTH else set()
        if exact:
            fields.update(wave)
            calls = [(sorted(fields), depth - 1)]
        else:
            calls = [(sorted(fields.difference(wave)), depth - 1), (wave, 0)]
        written: set[int] = set()
        for targets, lowest in calls:
            if targets:
                examined.update(targets)
                written.update(await _level(conn, targets, depth, lowest))
        wave = sorted(written)
    return wave


NEW_EDGES_FROM_CLASSIFIED = f"""
WITH manual AS ({MANUAL_DECISIONS})
SELECT DISTINCT e.target_field_id
FROM unnest($1::bigint[], $2::bigint[]) AS n(src, dst)
JOIN column_edges e ON e.source_field_id = n.src AND e.target_field_id = n.dst
WHERE {CARRIES}
  AND (EXISTS (SELECT 1 FROM classifications c WHERE c.field_id = e.source_field_id)
       OR EXISTS (SELECT 1 FROM manual m WHERE m.field_id = e.source_field_id AND m.action <> 'reject'))
"""


async def targets_of_new_edges_from_classified(
    conn: asyncpg.Connection[Any], edges: Iterable[tuple[int, int]]
) -> set[int]:
    """Targets of the given new (source, target) field edges that carry and start at a classified field."""
    pairs = sorted(set(edges))
    if not pairs:
        return set()
    return {
        r[0]
        for r in await conn.fetch(NEW_EDGES_FROM_CLASSIFIED, [s for s, _ in pairs], [t for _, t in pairs])
    }


async def relax(conn: asyncpg.Connection[Any], targets: Iterable[int]) -> int:
    """Settle the rows of `targets` and of whatever their changes improve downstream; returns the number of
    fields examined. Should the wave not have settled within MAX_ROUNDS statements (it cannot loop, but a
    projection left stale by an older version could feed it a long chain of repairs), the ingest does not
    fail: the region it touched is deleted with what depends on it and re-derived exactly, level by level
    from its boundary, in at most MAX_DEPTH statements."""
    region = sorted(set(targets))
    if not region:
        return 0
    examined: set[int] = set()
    left = await _settle(conn, region, examined, exact=False)
    if left:
        log.warning(
            "classification propagation did not settle in %d rounds (%d fields examined, %d pending); "
            "recomputing the region from its boundary",
            MAX_ROUNDS,
            len(examined),
            len(left),
        )
        emptied = await _invalidate(conn, sorted(examined.union(left)))
        await _settle(conn, sorted(emptied), examined, exact=True)
    return len(examined)


async def relax_into(conn: asyncpg.Connection[Any], targets: Iterable[int]) -> int:
    """Propagate over new carrying edges into `targets`: a new edge can only add or shorten paths, so only
    the rows it improves (and what they improve downstream) are written. Returns the fields examined."""
    return await relax(conn, targets)


async def propagate_from(
    conn: asyncpg.Connection[Any], changed: Iterable[int], also: Iterable[int] = ()
) -> int:
    """Redo propagation after the own classification of `changed` fields may have changed (which can remove
    PII): delete the rows that depend on them, then relax what was emptied and what the fields feed, together
    with the fields in `also` (targets of new carrying edges, which `relax_into` would take): settled in one
    pass, every state the batch may have made stale is in the region from the first level, so the levels
    assign each state its final row once. Returns the number of fields examined."""
    fields = sorted(set(changed))
    emptied = await _invalidate(conn, fields) if fields else set()
    if fields:
        emptied.update(r[0] for r in await conn.fetch(OUT_TARGETS, fields))
    emptied.update(also)
    return await relax(conn, emptied)


async def _invalidate(conn: asyncpg.Connection[Any], fields: list[int]) -> set[int]:
    """Delete the propagated rows of `fields` and every row that depends on them through via pointers;
    returns `fields` and the fields that lost a row."""
    emptied: set[int] = set(fields)
    deleted = await conn.fetch(INVALIDATE_FIELDS, fields)
    while deleted:  # each round deletes rows still present, so this ends (even on a cycle of pointers)
        emptied.update(r["field_id"] for r in deleted)
        deleted = await conn.fetch(
            INVALIDATE_CHILDREN,
            [r["field_id"] for r in deleted],
            [r["tag"] for r in deleted],
            [r["masked"] for r in deleted],
        )
    return emptied
