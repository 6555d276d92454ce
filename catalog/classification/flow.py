"""Where a column's value goes, hop by hop: what each edge does to it and what each target holds."""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.classification.propagate import CARRIES, MASKS
from catalog.classification.reads import FIELD_ID, effective_of_datasets
from catalog.db.engine import driver_connection

Json = dict[str, Any]


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
    conn: AsyncConnection,
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
    raw = await driver_connection(conn)
    target = await raw.fetchrow(FIELD_ID, namespace, dataset, field)
    if target is None or target["field_id"] is None:
        return None
    origin = target["field_id"]
    reach = await raw.fetchval(REACHABLE, origin, max(1, max_depth))
    edges = await raw.fetch(FLOW_EDGES, reach)
    by_source: dict[int, list[Any]] = defaultdict(list)
    for e in edges:
        by_source[e["source_field_id"]].append(e)
    names = {
        r["id"]: (r["namespace"], r["dataset"], r["path"])
        for r in await raw.fetch(
            "SELECT f.id, n.name AS namespace, d.name AS dataset, f.path FROM dataset_fields f "
            "JOIN datasets d ON d.id = f.dataset_id JOIN namespaces n ON n.id = d.namespace_id "
            "WHERE f.id = ANY($1::bigint[])",
            reach,
        )
    }
    dataset_ids = {target["dataset_id"]} | {e["target_dataset_id"] for e in edges}
    classes = await effective_of_datasets(raw, sorted(dataset_ids))
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
