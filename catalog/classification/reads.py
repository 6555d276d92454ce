"""Reading classifications: the effective ones of datasets and fields, the PII inventory, and the
tags and PII columns that dataset reads and masked grants need.

Precedence (one classification per field and tag is *effective*):

    manual (a steward's add/confirm)  >  declared (producer tags)  >  detected (name rules)  >  propagated

and a steward's **reject** suppresses the tag on that field whatever its source, stops it propagating
through the field, and survives re-detection and `catalog rebuild` (decisions live in their own table,
keyed by names, which a rebuild does not touch; precedence is applied when reading and when propagating,
so replaying the log re-applies it). A propagated row with `masked` is a masked derivative, not PII, and
ranks below an unmasked one.

Public functions take the caller's SQLAlchemy connection (in its transaction) and send their fixed,
array-typed SQL straight to asyncpg on it (`driver_connection`).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.classification.propagate import MANUAL_DECISIONS
from catalog.db.engine import driver_connection
from catalog.policy.products import ProductMap

Json = dict[str, Any]

FIELD_ID = """
SELECT ds.id AS dataset_id, f.id AS field_id
FROM namespaces n JOIN datasets ds ON ds.namespace_id = n.id AND ds.name = $2
LEFT JOIN dataset_fields f ON f.dataset_id = ds.id AND f.path = $3
WHERE n.name = $1
"""


# {filter} restricts both derived rows (alias c) and manual ones (alias m) by dataset_id/field_id.
EFFECTIVE = f"""
WITH manual AS ({MANUAL_DECISIONS}),
cand AS (
    SELECT c.dataset_id, c.field_id, c.tag, c.source, c.category, c.confidence, c.masked, c.depth::int AS depth,
           c.via_field_id, c.via_masked, c.rule,
           CASE c.source WHEN 'declared' THEN 1 WHEN 'detected' THEN 2 ELSE CASE WHEN c.masked THEN 4 ELSE 3 END END
               AS rank
    FROM classifications c WHERE {{filter_c}}
    UNION ALL
    SELECT m.dataset_id, m.field_id, m.tag, 'manual', NULL, 1.0, false, 0, NULL, false, m.action, 0
    FROM manual m WHERE m.action IN ('add', 'confirm') AND {{filter_m}}
),
best AS (
    SELECT DISTINCT ON (dataset_id, field_id, tag) * FROM cand ORDER BY dataset_id, field_id, tag, rank
)
SELECT b.*, n.name AS namespace, d.name AS dataset, f.path AS field, f.first_seen AS field_first_seen,
       d.first_seen AS dataset_first_seen
FROM best b
JOIN datasets d ON d.id = b.dataset_id JOIN namespaces n ON n.id = d.namespace_id
LEFT JOIN dataset_fields f ON f.id = b.field_id
WHERE NOT EXISTS (SELECT 1 FROM manual x WHERE x.action = 'reject' AND x.dataset_id = b.dataset_id
                  AND x.field_id IS NOT DISTINCT FROM b.field_id AND x.tag = b.tag)
"""


def _effective_query(filter_c: str, filter_m: str) -> str:
    return EFFECTIVE.replace("{filter_c}", filter_c).replace("{filter_m}", filter_m)


# The paths of propagated rows, rebuilt by following the via pointers back to the origin (bounded by depth:
# each step goes to the parent at depth - 1). Rows are numbered by k; one result row per hop, in order.
PATHS = """
WITH RECURSIVE chain(k, field_id, tag, via_field_id, via_masked, depth) AS (
    SELECT u.k, u.field_id, u.tag, u.via_field_id, u.via_masked, u.depth
    FROM unnest($1::int[], $2::bigint[], $3::text[], $4::bigint[], $5::boolean[], $6::int[])
         AS u(k, field_id, tag, via_field_id, via_masked, depth)
    UNION ALL
    SELECT ch.k, p.field_id, p.tag, p.via_field_id, p.via_masked, p.depth::int
    FROM chain ch
    JOIN classifications p ON p.source = 'propagated' AND p.field_id = ch.via_field_id AND p.tag = ch.tag
     AND p.masked = ch.via_masked AND p.depth = ch.depth - 1
    WHERE ch.depth > 1
),
hops AS (
    SELECT k, depth AS pos, field_id FROM chain
    UNION ALL
    SELECT k, 0, via_field_id FROM chain WHERE depth = 1
)
SELECT h.k, h.field_id, n.name || '/' || d.name || '#' || f.path AS name
FROM hops h
JOIN dataset_fields f ON f.id = h.field_id JOIN datasets d ON d.id = f.dataset_id
JOIN namespaces n ON n.id = d.namespace_id
ORDER BY h.k, h.pos
"""


async def propagated_paths(
    conn: asyncpg.Connection[Any], rows: Sequence[Any]
) -> dict[int, list[tuple[int, str]]]:
    """Index in `rows` -> the path of that propagated row as (field id, "ns/dataset#field") hops, origin
    first and the row's own field last; one statement for all of them."""
    picked = [
        (i, r) for i, r in enumerate(rows) if r["source"] == "propagated" and r["via_field_id"] is not None
    ]
    if not picked:
        return {}
    out: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for h in await conn.fetch(
        PATHS,
        [i for i, _ in picked],
        [r["field_id"] for _, r in picked],
        [r["tag"] for _, r in picked],
        [r["via_field_id"] for _, r in picked],
        [r["via_masked"] for _, r in picked],
        [r["depth"] for _, r in picked],
    ):
        out[h["k"]].append((h["field_id"], h["name"]))
    return out


def _classification(row: Any, path: list[tuple[int, str]] | None = None) -> Json:
    return {
        "namespace": row["namespace"],
        "dataset": row["dataset"],
        "field": row["field"],
        "tag": row["tag"],
        "source": row["source"],
        "category": row["category"],
        "confidence": float(row["confidence"]),
        "status": "masked" if row["masked"] else "pii",
        "depth": row["depth"],
        "path": [name for _, name in path] if path else None,
        "rule": row["rule"],
    }


async def classifications_for_datasets(
    conn: AsyncConnection, dataset_ids: Sequence[int]
) -> dict[int, list[Json]]:
    """Effective classifications of the given datasets (fields and dataset level), in one statement
    (plus one for the paths of propagated rows)."""
    if not dataset_ids:
        return {}
    return await effective_of_datasets(await driver_connection(conn), dataset_ids)


async def effective_of_datasets(
    raw: asyncpg.Connection[Any], dataset_ids: Sequence[int]
) -> dict[int, list[Json]]:
    """`classifications_for_datasets` on an asyncpg connection already in the caller's transaction."""
    if not dataset_ids:
        return {}
    conn = raw
    rows = await conn.fetch(
        _effective_query("c.dataset_id = ANY($1::bigint[])", "m.dataset_id = ANY($1::bigint[])")
        + " ORDER BY b.dataset_id, f.path NULLS FIRST, b.tag",
        sorted(set(dataset_ids)),
    )
    paths = await propagated_paths(conn, rows)
    out: dict[int, list[Json]] = defaultdict(list)
    for i, r in enumerate(rows):
        out[r["dataset_id"]].append(_classification(r, paths.get(i)))
    return out


async def list_classifications(
    conn: AsyncConnection,
    *,
    namespace: str,
    dataset: str,
    field: str | None = None,
) -> list[Json] | None:
    """Effective classifications of one dataset (or one of its fields); None when the dataset is unknown."""
    raw = await driver_connection(conn)
    ds = await raw.fetchval(
        "SELECT d.id FROM datasets d JOIN namespaces n ON n.id = d.namespace_id WHERE n.name = $1 AND d.name = $2",
        namespace,
        dataset,
    )
    if ds is None:
        return None
    rows = (await effective_of_datasets(raw, [ds])).get(ds, [])
    return [r for r in rows if field is None or r["field"] == field]


async def pii_inventory(
    conn: AsyncConnection,
    *,
    namespace: str | None = None,
    product: str | None = None,
    tier: str | None = None,
    as_of: dt.datetime | None = None,
    products: ProductMap | None = None,
    limit: int = 1000,
    offset: int = 0,
    paths: bool = True,
) -> tuple[list[Json], int]:
    """Every field holding PII (effective, unmasked), optionally in one namespace, product or tier and
    as of an instant; each item says its dataset's `product` and `tier`. With `paths=False` (and no
    `as_of`) propagated items' paths are left for `with_paths`, to be called on the page the caller shows.

    `product`: the dataset's product as authorisation finds it (`policy.service.resolve_product`): its
    stored assignment (`product_assignments`, which includes ownership facets), else what the patterns
    of products.yaml say when `products` is given. `tier`: the tier of the dataset's namespace: its
    stored namespace assignment when there is one (even a null tier), else the namespace patterns.

    `as_of` (classifications as they stood at that instant, as far as the stored data allows): the
    field (or, for a dataset-level tag, the dataset) had been seen by then (event time); a steward's
    decision counts only if it was made by then and not retired by then (wall-clock `decided_at` /
    `retired_at`), so a later reject does not hide what was PII then and a later add does not show
    early; a propagated row counts only if every edge on its path had been first seen by then (event
    time). Derived rows (detected, declared, propagated) carry no history of their own: they are the
    catalog's current derivation, cut by those times — a detection whose rule changed since, or a
    declaration a producer has since dropped, is not reconstructed.
    """
    raw = await driver_connection(conn)
    ns_filter = "($1::text IS NULL OR d.namespace_id = (SELECT id FROM namespaces WHERE name = $1))"
    filter_c = f"c.dataset_id IN (SELECT d.id FROM datasets d WHERE {ns_filter})"
    filter_m = f"m.dataset_id IN (SELECT d.id FROM datasets d WHERE {ns_filter})"
    query = _effective_query(filter_c, filter_m)
    if as_of is not None:
        # Decisions made after as_of did not exist yet; ones retired before as_of no longer applied.
        query = query.replace(
            "WHERE d.retired_at IS NULL",
            "WHERE d.decided_at <= $2 AND (d.retired_at IS NULL OR d.retired_at > $2)",
            1,
        )
    # Product and tier as stored; the patterns fill in what has no stored assignment (below). With no
    # pattern map, the stored product alone decides and can be filtered in SQL.
    stored_only = products is None
    rows = await raw.fetch(
        "SELECT q.*, dp.product AS stored_product, nt.subject_id IS NOT NULL AS tier_stored, "
        f"nt.tier AS stored_tier FROM ({query}) q "
        "JOIN datasets qd ON qd.id = q.dataset_id "
        "LEFT JOIN product_assignments dp ON dp.subject_kind = 'dataset' AND dp.subject_id = q.dataset_id "
        "LEFT JOIN product_assignments nt ON nt.subject_kind = 'namespace' AND nt.subject_id = qd.namespace_id "
        "WHERE NOT q.masked "
        "AND ($2::timestamptz IS NULL OR coalesce(q.field_first_seen, q.dataset_first_seen) <= $2) "
        "AND ($3::text IS NULL OR NOT $4::boolean OR dp.product = $3) "
        "ORDER BY q.namespace, q.dataset, q.field NULLS FIRST, q.tag",
        namespace,
        as_of,
        product,
        stored_only,
    )
    kept: list[Any] = []
    owners: list[tuple[str | None, str | None]] = []
    for r in rows:
        owner = _product_of(r, products)
        level = _tier_of(r, products)
        if (product is None or owner == product) and (tier is None or level == tier):
            kept.append(r)
            owners.append((owner, level))
    if as_of is not None:  # every path is needed to drop what was not yet there
        found = await propagated_paths(raw, kept)
        items = [
            {**_classification(r, found.get(i)), "product": owner, "tier": level}
            for i, (r, (owner, level)) in enumerate(zip(kept, owners, strict=True))
        ]
        items = await _paths_seen_by(raw, items, found, as_of)
        return items[offset : offset + limit], len(items)
    # Paths only for what is shown: rebuilding one is a walk of `depth` steps, and a namespace of a large,
    # densely connected catalog holds 100k PII fields.
    items = [
        {**_classification(r), "product": owner, "tier": level, TRACE: _trace(r)}
        for r, (owner, level) in zip(kept, owners, strict=True)
    ]
    page = items[offset : offset + limit]
    return (await _with_paths(raw, page) if paths else page), len(items)


TRACE = "_trace"  # what with_paths needs to rebuild an inventory item's path; never leaves the service


def _trace(row: Any) -> dict[str, Any]:
    return {k: row[k] for k in ("source", "field_id", "tag", "via_field_id", "via_masked", "depth")}


async def with_paths(conn: AsyncConnection, items: list[Json]) -> list[Json]:
    """Inventory items (from `pii_inventory(..., paths=False)`) with their paths filled in, in one
    statement: call it on the page that is returned."""
    return await _with_paths(await driver_connection(conn), items)


async def _with_paths(conn: asyncpg.Connection[Any], items: list[Json]) -> list[Json]:
    traces = [item.get(TRACE) for item in items]
    paths = await propagated_paths(conn, [t for t in traces if t is not None])
    out: list[Json] = []
    k = 0
    for item, trace in zip(items, traces, strict=True):
        shown = {key: value for key, value in item.items() if key != TRACE}
        if trace is not None:
            path = paths.get(k)
            shown["path"] = [name for _, name in path] if path else None
            k += 1
        out.append(shown)
    return out


def _product_of(row: Any, products: ProductMap | None) -> str | None:
    if row["stored_product"] is not None or products is None:
        return row["stored_product"]  # type: ignore[no-any-return]
    return products.assign("dataset", row["namespace"], row["dataset"]).product


def _tier_of(row: Any, products: ProductMap | None) -> str | None:
    if row["tier_stored"] or products is None:
        return row["stored_tier"]  # type: ignore[no-any-return]
    return products.namespace(row["namespace"])[1]


async def _paths_seen_by(
    conn: asyncpg.Connection[Any],
    items: list[Json],
    paths: dict[int, list[tuple[int, str]]],
    as_of: dt.datetime,
) -> list[Json]:
    """Drop propagated rows whose path used an edge first seen after `as_of` (one statement)."""
    pairs: list[tuple[int, int, int]] = []
    for i, path in sorted(paths.items()):
        pairs.extend((i, a, b) for (a, _), (b, _) in itertools.pairwise(path))
    if not pairs:
        return items
    late = await conn.fetch(
        "SELECT DISTINCT u.i FROM unnest($1::int[], $2::bigint[], $3::bigint[]) AS u(i, s, t) "
        "WHERE NOT EXISTS (SELECT 1 FROM column_edges e WHERE e.source_field_id = u.s AND e.target_field_id = u.t "
        "AND e.first_seen <= $4)",
        [p[0] for p in pairs],
        [p[1] for p in pairs],
        [p[2] for p in pairs],
        as_of,
    )
    drop = {r["i"] for r in late}
    return [item for i, item in enumerate(items) if i not in drop]


async def pii_tags_by_dataset(
    conn: AsyncConnection, dataset_ids: Sequence[int]
) -> dict[int, dict[str | None, list[str]]]:
    """Effective, unmasked tags per dataset and field path (None = dataset level), in one statement:
    what dataset reads show as `fields[].tags`."""
    if not dataset_ids:
        return {}
    raw = await driver_connection(conn)
    out: dict[int, dict[str | None, list[str]]] = defaultdict(lambda: defaultdict(list))
    for dataset_id, items in (await effective_of_datasets(raw, dataset_ids)).items():
        for c in items:
            if c["status"] == "pii":
                out[dataset_id][c["field"]].append(c["tag"])
    return out


async def unmasked_pii_columns(
    conn: AsyncConnection, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], frozenset[str]]:
    """Field paths holding effective, unmasked PII/PCI per (namespace, dataset), in one statement: the
    columns a masked-columns-only grant redacts (catalog/policy/masking.py). Absent: no such column."""
    if not keys:
        return {}
    ids = (
        "(SELECT d.id FROM unnest($1::text[], $2::text[]) AS k(ns, name) "
        "JOIN namespaces n ON n.name = k.ns JOIN datasets d ON d.namespace_id = n.id AND d.name = k.name)"
    )
    query = _effective_query(f"c.dataset_id IN {ids}", f"m.dataset_id IN {ids}")
    raw = await driver_connection(conn)
    rows = await raw.fetch(
        f"SELECT q.namespace, q.dataset, q.field FROM ({query}) q WHERE NOT q.masked AND q.field IS NOT NULL",
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in rows:
        out[(r["namespace"], r["dataset"])].add(r["field"])
    return {k: frozenset(v) for k, v in out.items()}
