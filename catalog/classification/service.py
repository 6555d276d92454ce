"""Classification use cases: classify an ingested batch, record stewards' decisions, and read the results.

Precedence (one classification per field and tag is *effective*):

    manual (a steward's add/confirm)  >  declared (producer tags)  >  detected (name rules)  >  propagated

and a steward's **reject** suppresses the tag on that field whatever its source, stops it propagating
through the field, and survives re-detection and `catalog rebuild` (decisions live in their own table,
keyed by names, which a rebuild does not touch; precedence is applied when reading and when propagating,
so replaying the log re-applies it). A propagated row with `masked` is a masked derivative, not PII, and
ranks below an unmasked one.

The caller owns the transaction everywhere; nothing here commits.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.audit.service import record_raw
from catalog.auth.service import Principal
from catalog.classification.detect import refresh_declared, refresh_detected, tag_name
from catalog.classification.propagate import (
    CARRIES,
    MANUAL_DECISIONS,
    MASKS,
    lock_propagation,
    propagate_from,
    targets_of_new_edges_from_classified,
)
from catalog.classification.rules import RuleSet
from catalog.db.engine import raw_connection
from catalog.policy import files
from catalog.policy.products import ProductMap

Json = dict[str, Any]


# -- ingest hook ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClassifyOutcome:
    detected_changed: int
    declared_changed: int
    propagated: int  # propagated rows written (states added or re-derived)


async def classify_batch(
    conn: asyncpg.Connection[Any],
    *,
    field_ids: Iterable[int],
    dataset_ids: Iterable[int],
    new_edges: Iterable[tuple[int, int]],
    rules: RuleSet | None = None,
) -> ClassifyOutcome:
    """Classify what a batch touched and propagate only from what changed (in the caller's transaction).

    `new_edges` are the (source, target) field edges the batch inserted. An edge seen before has carried
    whatever its source held already (and a source whose own classification changed is handled as a
    change), so only new edges need relaxing."""
    await lock_propagation(conn)  # before anything decides what to propagate (see the lock's comment)
    rules = rules or files.classification_rules()  # the policies directory's classification.yaml
    detected = await refresh_detected(conn, rules, sorted(set(field_ids)))
    declared = await refresh_declared(conn, sorted(set(dataset_ids)))
    fed = await targets_of_new_edges_from_classified(conn, new_edges)
    # A changed detection or declaration can remove PII, so what depends on it is re-derived (a field seen
    # for the first time has nothing depending on it); a new edge from a classified column can only add
    # states. Both in one breadth-first pass.
    written = await propagate_from(conn, detected | declared, also=fed)
    return ClassifyOutcome(len(detected), len(declared), written)


# -- manual decisions -------------------------------------------------------------------------------

ACTIONS = ("add", "confirm", "reject")

DECISION_COLUMNS = (
    "id, namespace, dataset, field_path, tag, action, reason, author, decided_at, retired_at, retired_by"
)

FIELD_ID = """
SELECT ds.id AS dataset_id, f.id AS field_id
FROM namespaces n JOIN datasets ds ON ds.namespace_id = n.id AND ds.name = $2
LEFT JOIN dataset_fields f ON f.dataset_id = ds.id AND f.path = $3
WHERE n.name = $1
"""


class DatasetNotFound(LookupError):
    pass


class FieldNotFound(LookupError):
    pass


class DecisionNotFound(LookupError):
    pass


def decision_author(principal: Principal) -> str:
    """The author recorded for a decision: the key's name and its public id (never the secret). Who may
    decide is the policy's (`classification` write in the dataset's product: stewards of it, admins)."""
    return f"{principal.name} ({principal.key_id})"


class InvalidDecision(ValueError):
    """A decision the catalog cannot record; `field` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _check_decision_input(values: dict[str, str | None]) -> None:
    # PostgreSQL text cannot hold NUL, and no catalog name contains one (ingest replaces it): reject it
    # here with the field's name rather than let the driver fail mid-transaction.
    for name, value in values.items():
        if value is not None and "\x00" in value:
            raise InvalidDecision(name, "must not contain NUL (\\u0000) characters")
    if tag_name(values["tag"] or "") is None:
        raise InvalidDecision("tag", "must be a PII or PCI classification, e.g. PII.CPF or PCI.PAN")


def _decision(row: Any) -> Json:
    return {
        "id": row["id"],
        "namespace": row["namespace"],
        "dataset": row["dataset"],
        "field": row["field_path"] or None,
        "tag": row["tag"],
        "action": row["action"],
        "reason": row["reason"],
        "author": row["author"],
        "decidedAt": _iso(row["decided_at"]),
        "retiredAt": _iso(row["retired_at"]),
        "retiredBy": row["retired_by"],
    }


async def record_decision(
    conn: asyncpg.Connection[Any],
    *,
    namespace: str,
    dataset: str,
    field: str | None,
    tag: str,
    action: str,
    reason: str | None,
    author: str,
) -> Json:
    """A steward adds, confirms or rejects a tag on a field (or dataset); the previous live decision on
    the same (field, tag) is retired, and propagation is redone downstream of the field."""
    if action not in ACTIONS:
        raise InvalidDecision("action", f"must be one of {', '.join(ACTIONS)}")
    _check_decision_input(
        {
            "namespace": namespace,
            "dataset": dataset,
            "field": field,
            "tag": tag,
            "reason": reason,
            "author": author,
        }
    )
    tag = tag_name(tag) or tag  # the canonical spelling: "pii.cpf" -> "PII.CPF"
    path = field or ""
    target = await conn.fetchrow(FIELD_ID, namespace, dataset, path)
    if target is None:
        raise DatasetNotFound(f"dataset {dataset!r} in namespace {namespace!r} not found")
    if path and target["field_id"] is None:
        raise FieldNotFound(f"field {path!r} of dataset {dataset!r} not found")
    # Serialise decisions on one key so two stewards cannot both hold a live decision. The key is the
    # JSON array of the four names (unambiguous, and free of the NUL a text parameter cannot carry).
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(jsonb_build_array($1::text, $2::text, $3::text, "
        "$4::text)::text, 0))",
        namespace,
        dataset,
        path,
        tag,
    )
    await conn.execute(
        "UPDATE classification_decisions SET retired_at = now(), retired_by = $5 "
        "WHERE namespace = $1 AND dataset = $2 AND field_path = $3 AND tag = $4 AND retired_at IS NULL",
        namespace,
        dataset,
        path,
        tag,
        author,
    )
    row = await conn.fetchrow(
        "INSERT INTO classification_decisions (namespace, dataset, field_path, tag, action, reason, author) "
        f"VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {DECISION_COLUMNS}",
        namespace,
        dataset,
        path,
        tag,
        action,
        reason,
        author,
    )
    if target["field_id"] is not None:
        await propagate_from(conn, [target["field_id"]], tag=tag)
    decision = _decision(row)
    await _audit(conn, "classification.decision.recorded", author, decision)
    return decision


async def retire_decision(conn: asyncpg.Connection[Any], *, decision_id: int, author: str) -> Json:
    """Withdraw a live decision (kept for audit, marked retired); the field falls back to the derived
    sources and propagation is redone downstream of it."""
    row = await conn.fetchrow(
        "UPDATE classification_decisions SET retired_at = now(), retired_by = $2 "
        f"WHERE id = $1 AND retired_at IS NULL RETURNING {DECISION_COLUMNS}",
        decision_id,
        author,
    )
    if row is None:
        raise DecisionNotFound(f"no live decision {decision_id}")
    target = await conn.fetchrow(FIELD_ID, row["namespace"], row["dataset"], row["field_path"])
    if target is not None and target["field_id"] is not None:
        await propagate_from(conn, [target["field_id"]], tag=row["tag"])
    decision = _decision(row)
    await _audit(conn, "classification.decision.retired", author, decision)
    return decision


async def _audit(conn: asyncpg.Connection[Any], action: str, author: str, decision: Json) -> None:
    """Each decision also goes to the hash-chained audit log (in the same transaction): the decisions
    table is what precedence reads, the chain is what an auditor can verify was not rewritten."""
    field = f"#{decision['field']}" if decision["field"] else ""
    subject = f"classification:{decision['namespace']}/{decision['dataset']}{field}:{decision['tag']}"
    await record_raw(conn, action=action, actor=author, subject=subject, details=decision)


async def list_decisions(
    conn: asyncpg.Connection[Any],
    *,
    namespace: str | None = None,
    dataset: str | None = None,
    include_retired: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Json], int]:
    where = ["($1::text IS NULL OR namespace = $1)", "($2::text IS NULL OR dataset = $2)"]
    if not include_retired:
        where.append("retired_at IS NULL")
    clause = " AND ".join(where)
    rows = await conn.fetch(
        f"SELECT {DECISION_COLUMNS} FROM classification_decisions WHERE {clause} "
        "ORDER BY decided_at DESC, id DESC LIMIT $3 OFFSET $4",
        namespace,
        dataset,
        limit,
        offset,
    )
    total = await conn.fetchval(
        f"SELECT count(*) FROM classification_decisions WHERE {clause}", namespace, dataset
    )
    return [_decision(r) for r in rows], total


# -- effective classifications ----------------------------------------------------------------------

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
    conn: asyncpg.Connection[Any], dataset_ids: Sequence[int]
) -> dict[int, list[Json]]:
    """Effective classifications of the given datasets (fields and dataset level), in one statement."""
    if not dataset_ids:
        return {}
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
    conn: asyncpg.Connection[Any],
    *,
    namespace: str,
    dataset: str,
    field: str | None = None,
) -> list[Json] | None:
    """Effective classifications of one dataset (or one of its fields); None when the dataset is unknown."""
    ds = await conn.fetchval(
        "SELECT d.id FROM datasets d JOIN namespaces n ON n.id = d.namespace_id WHERE n.name = $1 AND d.name = $2",
        namespace,
        dataset,
    )
    if ds is None:
        return None
    rows = (await classifications_for_datasets(conn, [ds])).get(ds, [])
    return [r for r in rows if field is None or r["field"] == field]


async def pii_inventory(
    conn: asyncpg.Connection[Any],
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
    rows = await conn.fetch(
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
        found = await propagated_paths(conn, kept)
        items = [
            {**_classification(r, found.get(i)), "product": owner, "tier": level}
            for i, (r, (owner, level)) in enumerate(zip(kept, owners, strict=True))
        ]
        items = await _paths_seen_by(conn, items, found, as_of)
        return items[offset : offset + limit], len(items)
    # Paths only for what is shown: rebuilding one is a walk of `depth` steps, and a namespace of a large,
    # densely connected catalog holds 100k PII fields.
    items = [
        {**_classification(r), "product": owner, "tier": level, TRACE: _trace(r)}
        for r, (owner, level) in zip(kept, owners, strict=True)
    ]
    page = items[offset : offset + limit]
    return (await with_paths(conn, page) if paths else page), len(items)


TRACE = "_trace"  # what with_paths needs to rebuild an inventory item's path; never leaves the service


def _trace(row: Any) -> dict[str, Any]:
    return {k: row[k] for k in ("source", "field_id", "tag", "via_field_id", "via_masked", "depth")}


async def with_paths(conn: asyncpg.Connection[Any], items: list[Json]) -> list[Json]:
    """Inventory items (from `pii_inventory(..., paths=False)`) with their paths filled in, in one
    statement: call it on the page that is returned."""
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


# -- flow -------------------------------------------------------------------------------------------

# The fields within $2 - 1 carrying hops of $1 (the sources of the hops shown): the walk is bounded in SQL,
# since on a densely connected catalog the unbounded reach of one column is most of the graph.
REACHABLE = f"""
WITH RECURSIVE reach(id, depth) AS (
    SELECT $1::bigint, 0
    UNION
    SELECT e.target_field_id, r.depth + 1 FROM reach r JOIN column_edges e ON e.source_field_id = r.id
    WHERE {CARRIES} AND r.depth + 1 < $2::int
)
SELECT array_agg(DISTINCT id) FROM reach
"""

FLOW_DEPTH = 10  # hops shown by default

FLOW_EDGES = f"""
SELECT e.source_field_id, e.target_field_id, e.target_dataset_id, e.transformation_type, e.transformation_subtype,
       e.masking, {CARRIES} AS carries, {MASKS} AS masks,
       tn.name AS target_namespace, td.name AS target_dataset, tf.path AS target_field,
       jn.name AS job_namespace, j.name AS job_name, e.first_seen, e.last_seen
FROM column_edges e
JOIN datasets td ON td.id = e.target_dataset_id JOIN namespaces tn ON tn.id = td.namespace_id
LEFT JOIN dataset_fields tf ON tf.id = e.target_field_id
LEFT JOIN jobs j ON j.id = e.job_id LEFT JOIN namespaces jn ON jn.id = j.namespace_id
WHERE e.source_field_id = ANY($1::bigint[])
"""


def _effect(edge: Any) -> str:
    if edge["carries"]:
        return "masked" if edge["masks"] else "carries"
    if edge["transformation_type"] == "INDIRECT":
        return "influences"
    if edge["transformation_subtype"] == "AGGREGATION":
        return "aggregated"
    return "does-not-carry"


async def pii_flow(
    conn: asyncpg.Connection[Any],
    *,
    namespace: str,
    dataset: str,
    field: str,
    max_depth: int = FLOW_DEPTH,
) -> Json | None:
    """Where a column goes, hop by hop: every edge out of it and out of every column its value reaches,
    with what each edge does to the value (carries / masked / aggregated / influences) and the effective
    classifications of each target. Only carrying edges are followed further, up to `max_depth` hops from
    the origin; a fixed number of statements."""
    target = await conn.fetchrow(FIELD_ID, namespace, dataset, field)
    if target is None or target["field_id"] is None:
        return None
    origin = target["field_id"]
    reach = await conn.fetchval(REACHABLE, origin, max(1, max_depth))
    edges = await conn.fetch(FLOW_EDGES, reach)
    by_source: dict[int, list[Any]] = defaultdict(list)
    for e in edges:
        by_source[e["source_field_id"]].append(e)
    names = {
        r["id"]: (r["namespace"], r["dataset"], r["path"])
        for r in await conn.fetch(
            "SELECT f.id, n.name AS namespace, d.name AS dataset, f.path FROM dataset_fields f "
            "JOIN datasets d ON d.id = f.dataset_id JOIN namespaces n ON n.id = d.namespace_id "
            "WHERE f.id = ANY($1::bigint[])",
            reach,
        )
    }
    dataset_ids = {target["dataset_id"]} | {e["target_dataset_id"] for e in edges}
    classes = await classifications_for_datasets(conn, sorted(dataset_ids))
    tags_of: dict[tuple[str, str, str | None], list[Json]] = defaultdict(list)
    for items in classes.values():
        for c in items:
            tags_of[(c["namespace"], c["dataset"], c["field"])].append(
                {k: v for k, v in c.items() if k not in ("namespace", "dataset", "field")}
            )
    # Breadth-first from the origin, so each hop carries its distance and masking points read in order.
    hops: list[Json] = []
    depth = {origin: 0}
    queue = deque([origin])
    while queue:
        source = queue.popleft()
        if depth[source] >= max_depth:
            continue
        for e in sorted(
            by_source.get(source, []),
            key=lambda x: (x["target_namespace"], x["target_dataset"], x["target_field"] or ""),
        ):
            src = names[source]
            hops.append(
                {
                    "depth": depth[source] + 1,
                    "from": {"namespace": src[0], "dataset": src[1], "field": src[2]},
                    "to": {
                        "namespace": e["target_namespace"],
                        "dataset": e["target_dataset"],
                        "field": e["target_field"],
                    },
                    "job": {"namespace": e["job_namespace"], "name": e["job_name"]}
                    if e["job_name"]
                    else None,
                    "transformation": {
                        "type": e["transformation_type"],
                        "subtype": e["transformation_subtype"],
                        "masking": e["masking"],
                    },
                    "effect": _effect(e),
                    "maskingPoint": bool(e["carries"] and e["masks"]),
                    "targetClassifications": tags_of.get(
                        (e["target_namespace"], e["target_dataset"], e["target_field"]), []
                    ),
                }
            )
            nxt = e["target_field_id"]
            if e["carries"] and nxt is not None and nxt not in depth:
                depth[nxt] = depth[source] + 1
                queue.append(nxt)
    return {
        "origin": {
            "namespace": namespace,
            "dataset": dataset,
            "field": field,
            "classifications": tags_of.get((namespace, dataset, field), []),
        },
        "hops": hops,
    }


def _iso(at: dt.datetime | None) -> str | None:
    return None if at is None else at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


async def pii_tags_by_dataset(
    conn: AsyncConnection, dataset_ids: Sequence[int]
) -> dict[int, dict[str | None, list[str]]]:
    """Effective, unmasked tags per dataset and field path (None = dataset level), in one statement:
    what dataset reads show as `fields[].tags`."""
    if not dataset_ids:
        return {}
    raw = await raw_connection(conn)
    out: dict[int, dict[str | None, list[str]]] = defaultdict(lambda: defaultdict(list))
    for dataset_id, items in (await classifications_for_datasets(raw, dataset_ids)).items():
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
    raw = await raw_connection(conn)
    rows = await raw.fetch(
        f"SELECT q.namespace, q.dataset, q.field FROM ({query}) q WHERE NOT q.masked AND q.field IS NOT NULL",
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in rows:
        out[(r["namespace"], r["dataset"])].add(r["field"])
    return {k: frozenset(v) for k, v in out.items()}
