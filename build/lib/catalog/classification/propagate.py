"""Propagate PII classifications along column lineage, incrementally, with set-based statements per level.

What carries a tag (`CARRIES`): a field-to-field edge of type DIRECT with subtype IDENTITY,
TRANSFORMATION or none. Producers that send column lineage without transformations (the legacy
`columnLineage` form: type '' or the old `transformationType` IDENTITY) are treated as carrying too —
for PII, an unknown transformation must not hide a flow. AGGREGATION does not carry the value; INDIRECT
edges (join keys, filters) never carry it (they are reported as "influenced by" in the flow read).
A carrying edge with `masking: true` (or the legacy `MASKED` type) turns the value into a masked
derivative: the target gets a `masked` propagated row, which is not PII, and so does everything
downstream of it that is reached only through masking.

What is stored, per state (field, tag, masked):
  - seeds are the declared, detected and manually added/confirmed sensitive tags, unmasked, at depth 0;
    a seed state walks on from depth 0. It holds a propagated row of its own only when another seed feeds
    it directly (e.g. a CDC topic's detected `cpf` fed by the OLTP column's): that row records where the
    value also comes from, is never walked on, and so can never lead back round a cycle to the seed;
  - every other state reachable from a seed over one or more carrying edges (never through a self-loop,
    and never into or through a field where a steward rejected the tag) holds exactly one propagated row.
    Which states hold a row is the closure of the seeds over the edges — it does not depend on the order
    events arrived in or how they were batched, and a rebuild reproduces it;
  - each row keeps one path it came by, as a pointer to its parent state — `via_field_id` and
    `via_masked` — and its `depth` = the parent's depth + 1 (a seed's is 0), so pointers always lead back
    to a seed in exactly `depth` steps and the path is rebuilt at read time. The path is the one found
    when the row was written: the shortest among what the catalog knew then (ties broken by the parent's
    name), but a row is not rewritten when a shorter path shows up later. Keeping shortest paths exact
    would rewrite everything downstream of every new seed or shortcut — on a 100k-dataset graph that was
    minutes per batch — while the question the catalog answers ("where does this CPF end up?") is the
    closure; `piiFlow` shows every path hop by hop. Category and confidence are those of the path's origin.

Incremental maintenance, one set-based statement per level, touching only what changes:
  - `relax`: breadth-first from a region of target fields. The first level offers the region what each
    in-neighbour holds and writes the states it does not hold yet; every further level starts from the
    rows the previous one wrote and offers them along their carrying out-edges only (anything older was
    already offered to those targets, or they were in the region). Rows are only ever inserted, so the
    work ends (each state is written at most once) and costs what it adds, plus one look along each
    out-edge of what it added.
  - a new carrying edge can only add states: `relax` its targets.
  - a changed detection or declaration, or a steward's decision, can also remove them: `propagate_from`
    first deletes the rows of the changed fields and every row whose path goes through them (following
    the pointers, round by round), then relaxes the fields emptied, the successors of the changed fields
    and (`also`) the targets of the batch's new edges in one region. Rows left standing lead back to seeds
    through rows left standing, so re-deriving from them restores exactly the closure. A field seen for
    the first time has no rows and nothing pointing at it, so detecting it costs only what it adds.
No statement aggregates rows into one value: rows travel as rows, and a level's work is bounded by the
rows it adds and their neighbours.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg

from catalog.classification.detect import SENSITIVE_TAG_SQL

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

# Propagation reads what other transactions committed (READ COMMITTED) and writes what they will read:
# two of them at once (two service instances, or an ingest and a steward's decision) could each miss the
# other's uncommitted rows — a seed one adds and an edge the other adds, and the state between them is never
# written. One transaction-level advisory lock serialises propagation (a process's ingest is serial
# anyway); taken before the work is decided, each one then sees everything the previous one committed.
# Lock order: this before the audit chain's lock, never after.
PROPAGATION_LOCK_KEY = 0x7069_6970_726F  # "piipro"


async def lock_propagation(conn: asyncpg.Connection[Any]) -> None:
    """Wait for any other transaction's propagation to commit; held until this transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", PROPAGATION_LOCK_KEY)


RELTUPLES = "SELECT reltuples FROM pg_class WHERE oid = 'classifications'::regclass"

OUT_TARGETS = f"""
SELECT DISTINCT e.target_field_id FROM column_edges e
WHERE e.source_field_id = ANY($1::bigint[]) AND {CARRIES}
"""

# The rows of the changed fields and the rows that came from them (seed or not).
INVALIDATE_FIELDS = """
DELETE FROM classifications
WHERE source = 'propagated' AND (field_id = ANY($1::bigint[]) OR via_field_id = ANY($1::bigint[]))
  AND ($2::text IS NULL OR tag = $2::text)
RETURNING field_id, tag, masked
"""

# The rows that came from the states just deleted.
INVALIDATE_CHILDREN = """
DELETE FROM classifications c
USING unnest($1::bigint[], $2::text[], $3::boolean[]) AS d(field_id, tag, masked)
WHERE c.source = 'propagated' AND c.via_field_id = d.field_id AND c.tag = d.tag AND c.via_masked = d.masked
RETURNING c.field_id, c.tag, c.masked
"""

# The seeds among the fields of a `fields` CTE (declared, detected, manually added or confirmed, minus
# the steward's rejects). Lookups by field go through LATERAL ... OFFSET 0 so that they stay index probes
# per field whatever the planner believes about the sizes (a stale estimate once made this a nested loop
# of sequential scans: 75 s instead of 1 s for one level).
SEEDS_OF_FIELDS = f"""
seed AS (
    SELECT s.field_id, s.tag, min(s.category) AS category, max(s.confidence) AS confidence
    FROM (
        SELECT f.id AS field_id, c.tag, c.category, c.confidence FROM fields f
        CROSS JOIN LATERAL (SELECT c.tag, c.category, c.confidence FROM classifications c
                            WHERE c.field_id = f.id AND c.source IN ('declared', 'detected') OFFSET 0) c
        UNION ALL
        SELECT m.field_id, m.tag, NULL, 1.0 FROM manual m
        WHERE m.action IN ('add', 'confirm') AND m.field_id IN (SELECT id FROM fields)
    ) s
    WHERE s.tag ~* {SENSITIVE_TAG_SQL}
      AND NOT EXISTS (SELECT 1 FROM manual x WHERE x.action = 'reject' AND x.field_id = s.field_id
                      AND x.tag = s.tag)
    GROUP BY s.field_id, s.tag
)"""

# From `walker` rows (a field's state: tag, masked, depth, origin's category/confidence) and carrying
# `edges` (src, dst, dst_dataset, masks): the offers for states the targets do not hold yet — not into a
# rejected field, and into a seed's own unmasked state only straight from a seed (depth 0) — each state
# written once with its best offer: the smallest depth, then the parent's name in "C" collation, then an
# unmasked parent before a masked one. Returns the rows written.
OFFER_AND_WRITE = """
offer AS MATERIALIZED (
    SELECT e.dst, e.dst_dataset, e.src, w.tag, w.masked OR e.masks AS masked, w.depth + 1 AS depth,
           w.masked AS via_masked, w.category, w.confidence
    FROM edges e
    JOIN walker w ON w.field_id = e.src
    WHERE NOT EXISTS (SELECT 1 FROM manual x WHERE x.action = 'reject' AND x.field_id = e.dst AND x.tag = w.tag)
      AND (w.masked OR e.masks OR w.depth = 0
           OR NOT EXISTS (SELECT 1 FROM seed s WHERE s.field_id = e.dst AND s.tag = w.tag))
      AND NOT EXISTS (SELECT 1 FROM classifications c
                      WHERE c.dataset_id = e.dst_dataset AND c.field_id = e.dst AND c.tag = w.tag
                        AND c.source = 'propagated' AND c.masked = (w.masked OR e.masks))
),
best AS (
    SELECT DISTINCT ON (o.dst, o.tag, o.masked) o.*
    FROM offer o
    JOIN dataset_fields f ON f.id = o.src
    JOIN datasets d ON d.id = f.dataset_id
    JOIN namespaces n ON n.id = d.namespace_id
    ORDER BY o.dst, o.tag, o.masked, o.depth, n.name COLLATE "C", d.name COLLATE "C", f.path COLLATE "C",
             o.via_masked
)
INSERT INTO classifications AS c (dataset_id, field_id, tag, source, category, confidence, rule, masked, depth,
                                  via_field_id, via_masked)
SELECT b.dst_dataset, b.dst, b.tag, 'propagated', b.category, b.confidence, NULL, b.masked, b.depth, b.src,
       b.via_masked
FROM best b
ORDER BY b.dst_dataset, b.dst, b.tag, b.masked
ON CONFLICT (dataset_id, field_id, tag, source, masked) DO NOTHING
RETURNING c.id
"""

# The first level of a relaxation: the target fields $1 are offered what every in-neighbour holds (its
# seeds and its rows; a seed's own unmasked row is never walked on).
RELAX_REGION = f"""
WITH manual AS ({MANUAL_DECISIONS}),
tgt AS (SELECT t.id, t.dataset_id FROM dataset_fields t WHERE t.id = ANY($1::bigint[])),
edges AS (
    SELECT DISTINCT e.source_field_id AS src, e.target_field_id AS dst, t.dataset_id AS dst_dataset,
           {MASKS} AS masks
    FROM tgt t JOIN column_edges e ON e.target_dataset_id = t.dataset_id AND e.target_field_id = t.id
    WHERE {CARRIES} AND e.source_field_id <> e.target_field_id
),
fields AS (SELECT src AS id FROM edges UNION SELECT id FROM tgt),
{SEEDS_OF_FIELDS},
walker AS MATERIALIZED (
    SELECT s.field_id, s.tag, false AS masked, 0 AS depth, s.category, s.confidence FROM seed s
    WHERE s.field_id IN (SELECT src FROM edges)
    UNION ALL
    SELECT c.field_id, c.tag, c.masked, c.depth::int, c.category, c.confidence
    FROM (SELECT DISTINCT src FROM edges) e
    CROSS JOIN LATERAL (SELECT * FROM classifications c
                        WHERE c.field_id = e.src AND c.source = 'propagated' OFFSET 0) c
    WHERE c.masked OR NOT EXISTS (SELECT 1 FROM seed s WHERE s.field_id = c.field_id AND s.tag = c.tag)
),
{OFFER_AND_WRITE}"""

# A further level: only the rows the previous level wrote ($1) offer anything new, along their carrying
# out-edges (everything else was already offered to these targets, or they were in the first level).
RELAX_FROM_ROWS = f"""
WITH manual AS ({MANUAL_DECISIONS}),
written AS MATERIALIZED (
    SELECT c.field_id, c.tag, c.masked, c.depth::int AS depth, c.category, c.confidence
    FROM classifications c WHERE c.id = ANY($1::bigint[])
),
edges AS MATERIALIZED (
    SELECT DISTINCT e.source_field_id AS src, e.target_field_id AS dst, e.target_dataset_id AS dst_dataset,
           {MASKS} AS masks
    FROM (SELECT DISTINCT field_id FROM written) w
    JOIN column_edges e ON e.source_field_id = w.field_id
    WHERE {CARRIES} AND e.source_field_id <> e.target_field_id
),
fields AS (SELECT src AS id FROM edges UNION SELECT dst FROM edges),
{SEEDS_OF_FIELDS},
walker AS (
    SELECT w.* FROM written w
    WHERE w.masked OR NOT EXISTS (SELECT 1 FROM seed s WHERE s.field_id = w.field_id AND s.tag = w.tag)
),
{OFFER_AND_WRITE}"""


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


# Rows one relaxation may add before it re-analyzes the table, as a share of what the table held: the
# planner must know classifications grew (a first full derivation adds millions of rows in one
# transaction), or its lookups by field turn into nested sequential scans.
ANALYZE_AFTER_ROWS = 20_000
ANALYZE_GROWTH = 0.5


async def relax(conn: asyncpg.Connection[Any], targets: Iterable[int]) -> int:
    """Propagate into `targets` (e.g. the targets of new carrying edges): a new edge can only add states,
    so only those, and what they add downstream, are written. Returns the number of rows written."""
    region = sorted(set(targets))
    if not region:
        return 0
    await lock_propagation(conn)
    return await _relax(conn, region)


async def _relax(conn: asyncpg.Connection[Any], region: list[int]) -> int:
    """Breadth-first from `region`: write the states it is offered and does not hold yet, then, level by
    level, what the rows just written offer along their carrying out-edges. Ends when a level writes
    nothing — every state is written at most once, so it always does. The caller holds the lock."""
    if not region:
        return 0
    written = [r["id"] for r in await conn.fetch(RELAX_REGION, region)]
    total = grown = 0
    known: float | None = None
    while written:
        total += len(written)
        grown += len(written)
        if grown >= ANALYZE_AFTER_ROWS:
            if known is None:
                known = max(0.0, await conn.fetchval(RELTUPLES))
            if grown >= ANALYZE_GROWTH * known:
                await conn.execute("ANALYZE classifications")  # sees this transaction's rows
                known += grown
                grown = 0
        written = [r["id"] for r in await conn.fetch(RELAX_FROM_ROWS, written)]
    return total


async def propagate_from(
    conn: asyncpg.Connection[Any], changed: Iterable[int], also: Iterable[int] = (), *, tag: str | None = None
) -> int:
    """Redo propagation after the own classification of `changed` fields may have changed (which can remove
    PII): delete their rows and every row whose path goes through them, then relax what was emptied and
    what the fields feed, together with the fields in `also` (targets of new carrying edges), in one
    breadth-first pass. With `tag`, only that tag changed (a steward's decision): only its rows are
    re-derived. Returns the number of rows written."""
    fields = sorted(set(changed))
    emptied = set(also)
    if not fields and not emptied:
        return 0  # the common ingest: nothing changed, no new edge from a classified column
    await lock_propagation(conn)
    if fields:
        emptied.update(await _invalidate(conn, fields, tag))
        emptied.update(r[0] for r in await conn.fetch(OUT_TARGETS, fields))
    return await _relax(conn, sorted(emptied))


async def _invalidate(conn: asyncpg.Connection[Any], fields: list[int], tag: str | None = None) -> set[int]:
    """Delete the propagated rows of `fields` (of `tag` only, when given) and every row that depends on them
    through via pointers; returns `fields` and the fields that lost a row."""
    emptied: set[int] = set(fields)
    deleted = await conn.fetch(INVALIDATE_FIELDS, fields, tag)
    while deleted:  # each round deletes rows still present, so this ends (even on a cycle of pointers)
        emptied.update(r["field_id"] for r in deleted)
        deleted = await conn.fetch(
            INVALIDATE_CHILDREN,
            [r["field_id"] for r in deleted],
            [r["tag"] for r in deleted],
            [r["masked"] for r in deleted],
        )
    return emptied
