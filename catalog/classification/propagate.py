"""Propagate PII classifications along column lineage, incrementally, with a few set-based statements a step.

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
  3. fetch the carrying edges into the region, the seeds there and on the frontier (fields just upstream
     of it), the frontier's stored propagated rows and the rejects (three statements), and search in
     Python, breadth-first over (field, tag, masked) states, for each state's shortest path (at most
     MAX_DEPTH hops, never entering a field twice, ties broken by the path's names);
  4. insert the rows (one statement).
Shortest paths compose hop by hop, so this gives the same rows as a from-scratch walk whatever the
batching or the arrival order: a rebuild reproduces them. The search keeps one path per state, so it
costs O(states x edges) (a recursive CTE enumerating every simple path is exponential in the worst case),
and `relax_into` relies on exactly these per-state semantics.

A new carrying edge can only add or shorten paths, so ingest handles it with `relax_into`, which touches
only the rows that improve; a changed detection or declaration, or a steward's decision, can remove PII
and goes through the full recompute of its downstream region (`propagate_from`).

A steward's reject on (field, tag) is a barrier: the tag neither starts nor passes through that field.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

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

# Carrying edges into the region (their sources are region fields or the inbound frontier).
EDGES_INTO_REGION = f"""
SELECT DISTINCT e.source_field_id AS source, e.target_field_id AS target, {MASKS} AS masks
FROM dataset_fields t
JOIN column_edges e ON e.target_dataset_id = t.dataset_id AND e.target_field_id = t.id
WHERE t.id = ANY($1::bigint[]) AND {CARRIES}
ORDER BY 1, 2, 3
"""

FIELD_NAMES = """
SELECT f.id, f.dataset_id, n.name || '/' || d.name || '#' || f.path AS name
FROM dataset_fields f JOIN datasets d ON d.id = f.dataset_id JOIN namespaces n ON n.id = d.namespace_id
WHERE f.id = ANY($1::bigint[])
"""

# Where walks start: the seeds among region and frontier fields ($1), the stored propagated rows of the
# frontier ($2), and the stewards' rejects on region and frontier fields (barriers), in one statement.
ORIGINS = f"""
WITH manual AS ({MANUAL_DECISIONS}),
rejected AS (SELECT field_id, tag FROM manual WHERE action = 'reject' AND field_id = ANY($1::bigint[]))
SELECT 'seed' AS kind, s.field_id, s.tag, min(s.category) AS category, max(s.confidence) AS confidence,
       false AS masked, 0 AS depth, NULL::bigint[] AS path, NULL::text[] AS path_names
FROM (
    SELECT c.field_id, c.tag, c.category, c.confidence FROM classifications c
    WHERE c.source IN ('declared', 'detected') AND c.field_id = ANY($1::bigint[])
    UNION ALL
    SELECT m.field_id, m.tag, NULL, 1.0 FROM manual m
    WHERE m.action IN ('add', 'confirm') AND m.field_id = ANY($1::bigint[])
) s
WHERE s.tag ~* {SENSITIVE_TAG_SQL}
  AND NOT EXISTS (SELECT 1 FROM rejected x WHERE x.field_id = s.field_id AND x.tag = s.tag)
GROUP BY s.field_id, s.tag
UNION ALL
SELECT 'stored', c.field_id, c.tag, c.category, c.confidence, c.masked, c.depth::int, c.path, c.path_names
FROM classifications c
WHERE c.source = 'propagated' AND c.field_id = ANY($2::bigint[])
UNION ALL
SELECT 'reject', x.field_id, x.tag, NULL, NULL, false, 0, NULL, NULL FROM rejected x
"""

INSERT_PROPAGATED = """
INSERT INTO classifications (dataset_id, field_id, tag, source, category, confidence, rule, masked, depth,
                             path, path_names)
SELECT r.dataset_id, r.field_id, r.tag, 'propagated', r.category, r.confidence, NULL, r.masked, r.depth,
       r.path, r.path_names
FROM jsonb_to_recordset($1::jsonb) AS r(dataset_id bigint, field_id bigint, tag text, category text,
                                        confidence float8, masked boolean, depth int, path bigint[],
                                        path_names text[])
"""


@dataclass(frozen=True, slots=True, order=True)
class _Walk:
    """The best way found so far to one (field, tag, masked) state; ordered as the tie-break is."""

    depth: int
    names: tuple[str, ...]
    path: tuple[int, ...]
    category: str | None
    confidence: float


State = tuple[int, str, bool]  # (field id, tag, masked)


def shortest_walks(
    *,
    region: set[int],
    edges: Sequence[tuple[int, int, bool]],
    starts: Sequence[tuple[State, _Walk]],
    rejected: set[tuple[int, str]],
    names: dict[int, str],
) -> dict[State, _Walk]:
    """Per (field, tag, masked) in the region, the shortest carrying path of at least one hop from a start,
    ties broken by the path's names; a path never enters a field twice nor a field that rejects the tag.

    Breadth-first by depth over (field, tag, masked) states, keeping only each state's best path: shortest
    paths compose hop by hop, so this costs O(states x edges) where enumerating paths is exponential.
    A start (a seed at depth 0, or a frontier field's stored row at its depth) is settled at its own depth
    and walks on from there; a seed field still gets its best path of one hop or more as its row.
    """
    out_edges: dict[int, list[tuple[int, bool]]] = defaultdict(list)
    for source, target, masks in edges:
        out_edges[source].append((target, masks))
    starts_at: dict[int, list[tuple[State, _Walk]]] = defaultdict(list)
    for state, walk in starts:
        starts_at[walk.depth].append((state, walk))
    settled: dict[State, _Walk] = {}
    rows: dict[State, _Walk] = {}  # the answer: best path of depth >= 1 per state in the region
    level: list[State] = []
    depth = 0
    last_start = max(starts_at, default=0)
    while level or depth <= last_start:
        candidates: dict[State, _Walk] = {}
        for state, walk in starts_at.get(depth, []):
            if state not in settled and (state not in candidates or walk < candidates[state]):
                candidates[state] = walk
        if depth <= MAX_DEPTH:
            for field, tag, masked in level:
                walk = settled[(field, tag, masked)]
                for target, masks in out_edges.get(field, ()):
                    if (target, tag) in rejected or target in walk.path:
                        continue
                    nxt = (target, tag, masked or masks)
                    arrived = _Walk(
                        depth,
                        (*walk.names, names[target]),
                        (*walk.path, target),
                        walk.category,
                        walk.confidence,
                    )
                    if nxt in settled:
                        if nxt[0] in region and (nxt not in rows or arrived < rows[nxt]):
                            rows[nxt] = arrived  # a seed reached by another path: kept, not walked on
                        continue
                    if nxt not in candidates or arrived < candidates[nxt]:
                        candidates[nxt] = arrived
        level = sorted(candidates)
        for state in level:
            settled[state] = candidates[state]
            if candidates[state].depth > 0 and state[0] in region:
                rows[state] = candidates[state]
        depth += 1
    return rows


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
    edges = [(r["source"], r["target"], r["masks"]) for r in await conn.fetch(EDGES_INTO_REGION, region)]
    inside = set(region)
    inbound = sorted({source for source, _, _ in edges} - inside)
    relevant = sorted(inside.union(inbound))
    starts: list[tuple[State, _Walk]] = []
    rejected: set[tuple[int, str]] = set()
    names: dict[int, str] = {}
    datasets: dict[int, int] = {}
    for r in await conn.fetch(FIELD_NAMES, relevant):
        names[r["id"]] = r["name"]
        datasets[r["id"]] = r["dataset_id"]
    for r in await conn.fetch(ORIGINS, relevant, inbound):
        if r["kind"] == "reject":
            rejected.add((r["field_id"], r["tag"]))
            continue
        seed = r["kind"] == "seed"
        walk = _Walk(
            r["depth"],
            (names[r["field_id"]],) if seed else tuple(r["path_names"]),
            (r["field_id"],) if seed else tuple(r["path"]),
            r["category"],
            float(r["confidence"]),
        )
        starts.append(((r["field_id"], r["tag"], r["masked"]), walk))
    rows = shortest_walks(region=inside, edges=edges, starts=starts, rejected=rejected, names=names)
    if rows:
        await conn.execute(INSERT_PROPAGATED, _records(rows, datasets))
    return len(region)


OUT_TARGETS = f"""
SELECT coalesce(array_agg(DISTINCT e.target_field_id), '{{}}') FROM column_edges e
WHERE e.source_field_id = ANY($1::bigint[]) AND {CARRIES}
"""

UPSERT_PROPAGATED = (
    INSERT_PROPAGATED
    + """ON CONFLICT (dataset_id, field_id, tag, source, masked) DO UPDATE
SET category = excluded.category, confidence = excluded.confidence, depth = excluded.depth,
    path = excluded.path, path_names = excluded.path_names
"""
)

# Improvements travel at most one hop per round; past this many rounds the rest is recomputed in full.
MAX_RELAX_ROUNDS = 2 * MAX_DEPTH


async def relax_into(conn: asyncpg.Connection[Any], targets: Iterable[int]) -> int:
    """Propagate over new carrying edges into `targets`, touching only the rows that improve.

    A new edge (or a new seed upstream of it) can only add states or shorten paths, never remove one, so
    the answer is the old rows improved where the new edge offers a better path: relax the targets, and
    the successors of every field whose rows changed, round by round, until nothing changes. This gives
    the rows `propagate_from` would (the same per-state shortest paths, the same tie-break) at a cost
    proportional to what changed, not to everything downstream. Returns the number of fields examined.
    """
    frontier = sorted(set(targets))
    moved: set[int] | None = None  # after the first round only the fields that just improved offer more
    examined = 0
    for _ in range(MAX_RELAX_ROUNDS):
        if not frontier:
            return examined
        examined += len(frontier)
        edges = [
            (r["source"], r["target"], r["masks"])
            for r in await conn.fetch(EDGES_INTO_REGION, frontier)
            if moved is None or r["source"] in moved
        ]
        sources = {source for source, _, _ in edges}
        fields = sorted(sources.union(frontier))
        names: dict[int, str] = {}
        datasets: dict[int, int] = {}
        for r in await conn.fetch(FIELD_NAMES, fields):
            names[r["id"]] = r["name"]
            datasets[r["id"]] = r["dataset_id"]
        walks_on: dict[State, _Walk] = {}  # what each source state walks on with: its seed, else its row
        seeds: set[State] = set()
        current: dict[State, _Walk] = {}  # the frontier's stored rows
        rejected: set[tuple[int, str]] = set()
        for r in await conn.fetch(ORIGINS, fields, fields):
            if r["kind"] == "reject":
                rejected.add((r["field_id"], r["tag"]))
                continue
            state: State = (r["field_id"], r["tag"], r["masked"])
            if r["kind"] == "seed":  # a seed walks on from depth 0 even if it also holds a propagated row
                seeds.add(state)
                walks_on[state] = _Walk(
                    0, (names[r["field_id"]],), (r["field_id"],), r["category"], float(r["confidence"])
                )
                continue
            walk = _Walk(
                r["depth"], tuple(r["path_names"]), tuple(r["path"]), r["category"], float(r["confidence"])
            )
            if state not in seeds:
                walks_on.setdefault(state, walk)
            current[state] = walk
        by_source: dict[int, list[tuple[State, _Walk]]] = defaultdict(list)
        for state, walk in walks_on.items():
            by_source[state[0]].append((state, walk))
        improved: dict[State, _Walk] = {}
        for source, target, masks in sorted(edges):
            for (_, tag, masked), walk in by_source.get(source, ()):
                if walk.depth >= MAX_DEPTH or (target, tag) in rejected or target in walk.path:
                    continue
                nxt: State = (target, tag, masked or masks)
                arrived = _Walk(
                    walk.depth + 1,
                    (*walk.names, names[target]),
                    (*walk.path, target),
                    walk.category,
                    walk.confidence,
                )
                best = improved.get(nxt) or current.get(nxt)
                if best is None or arrived < best:
                    improved[nxt] = arrived
        if not improved:
            return examined
        await conn.execute(UPSERT_PROPAGATED, _records(improved, datasets))
        # A seed's own row does not change what flows on from it (the seed walks on from depth 0).
        moved = {state[0] for state in improved if state not in seeds}
        frontier = sorted(await conn.fetchval(OUT_TARGETS, sorted(moved))) if moved else []
    if frontier:
        examined += await propagate_from(conn, frontier)
    return examined


def _records(rows: dict[State, _Walk], datasets: dict[int, int]) -> str:
    return orjson.dumps(
        [
            {
                "dataset_id": datasets[field],
                "field_id": field,
                "tag": tag,
                "category": walk.category,
                "confidence": walk.confidence,
                "masked": masked,
                "depth": walk.depth,
                "path": list(walk.path),
                "path_names": list(walk.names),
            }
            for (field, tag, masked), walk in sorted(rows.items())
        ]
    ).decode()
