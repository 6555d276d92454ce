"""Lineage traversal: the dataset/job graph and the column graph around a node, now or as of an instant.

The dataset/job walk is one recursive statement (WALK): a breadth-first walk per direction, bounded by
depth, that returns the edges and the names of the nodes in one round trip; cycles terminate because
the walk is depth-bounded and UNION drops a node already reached at that depth by that edge. The
column walk goes level by level: one set-based statement per level fetches every live edge leaving the
whole frontier (both directions at once), and Python keeps the visited sets. The indexes they need are
job_io's primary key (job side), ix_job_io_dataset_id_direction (dataset side), column_edges' identity /
source indexes, and pk_lineage_observations (liveness, probed per edge).

As-of semantics: an edge is live at T iff `first_seen <= T` and its owner (the job for job_io, the
target dataset for column edges) has no observation in `(edge.last_seen, T]` — i.e. the owner was not
seen again, before T, declaring an edge set without it. "Now" is T = +infinity. Only first/last seen
are kept per edge, so an edge dropped and later re-declared counts as live in the gap.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.db.engine import raw_connection

Direction = Literal["UPSTREAM", "DOWNSTREAM", "BOTH"]
NodeKind = Literal["dataset", "job"]

# asyncpg maps this to PostgreSQL's 'infinity': "now" is the same query as "as of" with T = +inf.
FOREVER = dt.datetime.max.replace(tzinfo=dt.UTC)
MAX_DEPTH = 20


@dataclass(frozen=True, slots=True)
class LineageNode:
    id: str  # "dataset:{ns}:{name}" | "job:{ns}:{name}" (Marquez nodeId form)
    kind: Literal["dataset", "job"]
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class LineageEdge:
    origin: str  # node ids, in the direction data flows: dataset -> job (read), job -> dataset (write)
    destination: str
    first_seen: dt.datetime
    last_seen: dt.datetime


@dataclass(frozen=True, slots=True)
class LineageGraph:
    root: str
    nodes: list[LineageNode]
    edges: list[LineageEdge]


@dataclass(frozen=True, slots=True)
class ColumnNode:
    id: str  # "datasetField:{ns}:{dataset}:{field}"; a whole dataset (field None) is "dataset:{ns}:{dataset}"
    namespace: str
    dataset: str
    field: str | None
    # The field's type as its dataset's schema facet gives it (None for a whole dataset, or untyped).
    field_type: str | None = None


@dataclass(frozen=True, slots=True)
class ColumnLineageEdge:
    origin: str
    destination: str
    transformation_type: str
    transformation_subtype: str
    masking: bool
    description: str | None
    job_namespace: str | None
    job_name: str | None
    first_seen: dt.datetime
    last_seen: dt.datetime


@dataclass(frozen=True, slots=True)
class ColumnGraph:
    root: str
    nodes: list[ColumnNode]
    edges: list[ColumnLineageEdge]


def dataset_node_id(namespace: str, name: str) -> str:
    return f"dataset:{namespace}:{name}"


def job_node_id(namespace: str, name: str) -> str:
    return f"job:{namespace}:{name}"


def field_node_id(namespace: str, dataset: str, field: str | None) -> str:
    return (
        dataset_node_id(namespace, dataset)
        if field is None
        else f"datasetField:{namespace}:{dataset}:{field}"
    )


# -- statements ----------------------------------------------------------------------------------------

_ROOT_DATASET = text(
    "SELECT d.id FROM datasets d JOIN namespaces n ON n.id = d.namespace_id "
    "WHERE n.name = :ns AND d.name = :name AND d.first_seen <= :t"
)
_ROOT_JOB = text(
    "SELECT j.id FROM jobs j JOIN namespaces n ON n.id = j.namespace_id "
    "WHERE n.name = :ns AND j.name = :name AND j.first_seen <= :t"
)
_ROOT_FIELD = text(
    "SELECT d.id, f.id FROM datasets d JOIN namespaces n ON n.id = d.namespace_id "
    "JOIN dataset_fields f ON f.dataset_id = d.id AND f.path = :field "
    "WHERE n.name = :ns AND d.name = :name AND f.first_seen <= :t"
)

# An edge is dead at T iff its owner was observed in (edge.last_seen, T], i.e. iff the owner's latest
# observation up to T is after last_seen. Asked as a scalar subquery on purpose: it stays a per-edge
# probe of pk_lineage_observations (a backward index scan, one row), where NOT EXISTS lets the planner
# pick an anti join that hashes every owner's observations — on each statement.
_LIVE_IO = (
    "io.first_seen <= $5 AND io.last_seen >= coalesce((SELECT max(o.observed_at) FROM lineage_observations o "
    "WHERE o.owner_kind = 'job' AND o.owner_id = io.job_id AND o.observed_at <= $5), '-infinity')"
)
# The live job_io rows leaving node `w` in its walk's direction: upstream a dataset leads to the jobs
# writing it and a job to its inputs; downstream a dataset to the jobs reading it and a job to its
# outputs. One branch runs per node (the other's one-time filter is false), as an index range scan:
# dataset side on ix_job_io_dataset_id_direction, job side on the primary key (job_id, direction, ...).
_STEP = f"""
    SELECT io.job_id, io.dataset_id, io.direction, io.first_seen, io.last_seen, io.job_id AS next_id
    FROM job_io io
    WHERE NOT w.is_job AND io.dataset_id = w.id
      AND io.direction = CASE WHEN w.up THEN 'output' ELSE 'input' END AND {_LIVE_IO}
    UNION ALL
    SELECT io.job_id, io.dataset_id, io.direction, io.first_seen, io.last_seen, io.dataset_id
    FROM job_io io
    WHERE w.is_job AND io.job_id = w.id
      AND io.direction = CASE WHEN w.up THEN 'input' ELSE 'output' END AND {_LIVE_IO}
"""
# The whole walk in one statement (one round trip instead of one per level): a breadth-first recursive
# walk per direction ($3: which walks, true = upstream) bounded by $4 levels, whose rows are
# (walk, node, depth, the edge it was reached by). UNION drops a row equal to an earlier one, so a node
# reached again at the same depth by the same edge is not expanded again, and cycles only add rows up
# to the depth bound. The nodes are every node of the walk; the edges, every edge a node was reached
# by — i.e. every live edge leaving a node within $4 - 1 levels in its walk's direction, exactly what a
# level-by-level walk with visited sets finds. Rows: the edges (kind 'edge'), then the name of every
# node (kind 'dataset' / 'job'), the root included.
WALK = f"""
WITH RECURSIVE walk(up, is_job, id, depth, job_id, dataset_id, direction, first_seen, last_seen) AS (
    SELECT w.up, $2::boolean, $1::bigint, 0, NULL::bigint, NULL::bigint, NULL::text,
           NULL::timestamptz, NULL::timestamptz
    FROM unnest($3::boolean[]) AS w(up)
    UNION
    SELECT w.up, NOT w.is_job, step.next_id, w.depth + 1,
           step.job_id, step.dataset_id, step.direction, step.first_seen, step.last_seen
    FROM walk w CROSS JOIN LATERAL ({_STEP}) step
    WHERE w.depth < $4
),
nodes AS (
    SELECT DISTINCT is_job, id FROM walk
)
SELECT DISTINCT 'edge' AS kind, e.job_id, e.dataset_id, e.direction, e.first_seen, e.last_seen,
       NULL::text AS namespace, NULL::text AS name
FROM walk e WHERE e.depth > 0
UNION ALL
SELECT 'dataset', NULL, d.id, NULL, NULL, NULL, n.name, d.name
FROM datasets d JOIN namespaces n ON n.id = d.namespace_id
WHERE d.id = ANY(ARRAY(SELECT id FROM nodes WHERE NOT is_job UNION SELECT $1 WHERE NOT $2))
UNION ALL
SELECT 'job', j.id, NULL, NULL, NULL, NULL, n.name, j.name
FROM jobs j JOIN namespaces n ON n.id = j.namespace_id
WHERE j.id = ANY(ARRAY(SELECT id FROM nodes WHERE is_job UNION SELECT $1 WHERE $2))
"""

NAMES = """
SELECT 'dataset' AS kind, d.id, n.name AS namespace, d.name FROM datasets d
JOIN namespaces n ON n.id = d.namespace_id WHERE d.id = ANY($1::bigint[])
UNION ALL
SELECT 'job', j.id, n.name, j.name FROM jobs j
JOIN namespaces n ON n.id = j.namespace_id WHERE j.id = ANY($2::bigint[])
"""

# As _LIVE_IO: the owner's latest observation up to T, probed per edge.
_LIVE_EDGE = (
    "e.first_seen <= $7 AND e.last_seen >= coalesce((SELECT max(o.observed_at) FROM lineage_observations o "
    "WHERE o.owner_kind = 'dataset' AND o.owner_id = e.target_dataset_id AND o.observed_at <= $7), '-infinity')"
)
_EDGE_COLUMNS = (
    "e.id, e.target_dataset_id, e.target_field_id, e.source_dataset_id, e.source_field_id, e.job_id, "
    "e.transformation_type, e.transformation_subtype, e.masking, e.description, e.first_seen, e.last_seen"
)
# Upstream of a field also takes the edges into its whole dataset (target field NULL: every column of
# the target depends on the source, e.g. a filter or join key). A node that is a whole dataset expands to
# every edge into (upstream) or out of (downstream) that dataset. Branches use uq_column_edges_identity
# (target side) and ix_column_edges_source_field_id / ix_column_edges_source_dataset_id (source side).
LEVEL_COLUMN_EDGES = f"""
SELECT {_EDGE_COLUMNS} FROM column_edges e
JOIN unnest($1::bigint[], $2::bigint[]) AS u(d, f) ON e.target_dataset_id = u.d AND e.target_field_id = u.f
WHERE {_LIVE_EDGE}
UNION
SELECT {_EDGE_COLUMNS} FROM column_edges e
WHERE e.target_dataset_id = ANY($1::bigint[]) AND e.target_field_id IS NULL AND {_LIVE_EDGE}
UNION
SELECT {_EDGE_COLUMNS} FROM column_edges e WHERE e.target_dataset_id = ANY($3::bigint[]) AND {_LIVE_EDGE}
UNION
SELECT {_EDGE_COLUMNS} FROM column_edges e
WHERE e.source_field_id = ANY($5::bigint[]) AND cardinality($4::bigint[]) > 0 AND {_LIVE_EDGE}
UNION
SELECT {_EDGE_COLUMNS} FROM column_edges e WHERE e.source_dataset_id = ANY($6::bigint[]) AND {_LIVE_EDGE}
"""

FIELD_NAMES = """
SELECT f.id, f.path, f.type FROM dataset_fields f WHERE f.id = ANY($1::bigint[])
"""


# -- dataset/job lineage --------------------------------------------------------------------------------


async def _scalar_row(conn: AsyncConnection, stmt: Any, params: dict[str, Any]) -> Any:
    # Through SQLAlchemy on purpose: its first statement begins the caller's transaction, so the raw
    # asyncpg statements that follow read the same snapshot.
    return (await conn.execute(stmt, params)).first()


async def lineage(
    conn: AsyncConnection,
    *,
    kind: Literal["dataset", "job"],
    namespace: str,
    name: str,
    direction: Direction = "BOTH",
    depth: int = 5,
    as_of: dt.datetime | None = None,
) -> LineageGraph | None:
    """The jobs and datasets within `depth` job hops of a node; None when the node does not exist (at as_of).

    A dataset root reaches the jobs that write it (upstream) / read it (downstream), their other side,
    and so on for `depth` jobs; a job root also includes its own inputs and outputs. BOTH walks upstream
    and downstream separately (never sideways to siblings that merely share an input, as Marquez does).
    """
    t = as_of or FOREVER
    depth = max(0, min(depth, MAX_DEPTH))
    row = await _scalar_row(
        conn, _ROOT_DATASET if kind == "dataset" else _ROOT_JOB, {"ns": namespace, "name": name, "t": t}
    )
    if row is None:
        return None
    root_id: int = row[0]
    raw = await raw_connection(conn)
    walks = [
        w
        for w, on in ((True, direction in ("UPSTREAM", "BOTH")), (False, direction in ("DOWNSTREAM", "BOTH")))
        if on
    ]
    levels = 2 * depth + (1 if kind == "job" else 0)
    rows = await raw.fetch(WALK, root_id, kind == "job", walks, levels, t)
    names: dict[tuple[str, int], tuple[str, str, str]] = {}
    edge_rows = []
    for r in rows:
        if r["kind"] == "edge":
            edge_rows.append(r)
        elif r["kind"] == "dataset":
            ns, n = r["namespace"], r["name"]
            names[("dataset", r["dataset_id"])] = (dataset_node_id(ns, n), ns, n)
        else:
            ns, n = r["namespace"], r["name"]
            names[("job", r["job_id"])] = (job_node_id(ns, n), ns, n)
    nodes = [
        LineageNode(id=node_id, kind="dataset" if node_kind == "dataset" else "job", namespace=ns, name=n)
        for (node_kind, _), (node_id, ns, n) in sorted(names.items(), key=lambda item: item[1][0])
    ]
    graph_edges = []
    for r in edge_rows:
        job, dataset = names[("job", r["job_id"])][0], names[("dataset", r["dataset_id"])][0]
        origin, destination = (dataset, job) if r["direction"] == "input" else (job, dataset)
        graph_edges.append(LineageEdge(origin, destination, r["first_seen"], r["last_seen"]))
    graph_edges.sort(key=lambda e: (e.origin, e.destination))
    root = names[(kind, root_id)][0]
    return LineageGraph(root=root, nodes=nodes, edges=graph_edges)


async def _names(
    raw: asyncpg.Connection[Any], dataset_ids: Iterable[int], job_ids: Iterable[int]
) -> dict[tuple[str, int], tuple[str, str, str]]:
    """(kind, id) -> (node id, namespace, name), in one statement."""
    out: dict[tuple[str, int], tuple[str, str, str]] = {}
    for r in await raw.fetch(NAMES, list(dataset_ids), list(job_ids)):
        make = dataset_node_id if r["kind"] == "dataset" else job_node_id
        out[(r["kind"], r["id"])] = (make(r["namespace"], r["name"]), r["namespace"], r["name"])
    return out


# -- column lineage -------------------------------------------------------------------------------------

ColumnKey = tuple[int, int | None]  # (dataset id, field id | None for the whole dataset)


async def column_lineage(
    conn: AsyncConnection,
    *,
    namespace: str,
    dataset: str,
    field: str | None = None,
    direction: Direction = "UPSTREAM",
    depth: int = 5,
    as_of: dt.datetime | None = None,
) -> ColumnGraph | None:
    """Column edges within `depth` hops of a field (or of every field of a dataset when field is None)."""
    t = as_of or FOREVER
    depth = max(0, min(depth, MAX_DEPTH))
    params = {"ns": namespace, "name": dataset, "t": t}
    if field is None:
        row = await _scalar_row(conn, _ROOT_DATASET, params)
        if row is None:
            return None
        root: ColumnKey = (row[0], None)
    else:
        row = await _scalar_row(conn, _ROOT_FIELD, {**params, "field": field})
        if row is None:
            return None
        root = (row[0], row[1])
    raw = await raw_connection(conn)
    walks = [w for w, on in ((True, direction != "DOWNSTREAM"), (False, direction != "UPSTREAM")) if on]
    seen: dict[bool, set[ColumnKey]] = {True: {root}, False: {root}}
    frontier: dict[bool, list[ColumnKey]] = {w: [root] for w in walks}
    frontier.setdefault(True, [])
    frontier.setdefault(False, [])
    edges: dict[int, asyncpg.Record] = {}
    for _ in range(depth):
        up, down = frontier[True], frontier[False]
        if not (up or down):
            break
        up_fields = [k for k in up if k[1] is not None]
        down_fields = [k for k in down if k[1] is not None]
        rows = await raw.fetch(
            LEVEL_COLUMN_EDGES,
            [k[0] for k in up_fields],
            [k[1] for k in up_fields],
            [k[0] for k in up if k[1] is None],
            [k[0] for k in down_fields],
            [k[1] for k in down_fields],
            [k[0] for k in down if k[1] is None],
            t,
        )
        up_targets = set(up)
        up_datasets = {k[0] for k in up}
        down_sources = set(down)
        down_datasets = {k[0] for k in down if k[1] is None}
        next_: dict[bool, list[ColumnKey]] = {True: [], False: []}
        for r in rows:
            target: ColumnKey = (r["target_dataset_id"], r["target_field_id"])
            source: ColumnKey = (r["source_dataset_id"], r["source_field_id"])
            # One statement serves both walks, so tell which frontier each row answers.
            answers_up = (
                target in up_targets
                or (target[0], None) in up_targets
                or (target[1] is None and target[0] in up_datasets)
            )
            answers_down = source in down_sources or source[0] in down_datasets
            if answers_up or answers_down:
                edges.setdefault(r["id"], r)
            if answers_up and source not in seen[True]:
                seen[True].add(source)
                next_[True].append(source)
            if answers_down and target not in seen[False]:
                seen[False].add(target)
                next_[False].append(target)
        frontier = next_
    keys = seen[True] | seen[False]
    for r in edges.values():  # a dataset-wide root reaches its own columns only as edge endpoints
        keys.add((r["target_dataset_id"], r["target_field_id"]))
        keys.add((r["source_dataset_id"], r["source_field_id"]))
    if field is None:
        keys.discard(root)  # listed first, below
    job_ids = {r["job_id"] for r in edges.values() if r["job_id"] is not None}
    names = await _names(raw, {k[0] for k in keys} | {root[0]}, job_ids)
    field_ids = [k[1] for k in keys if k[1] is not None]
    fields = (
        {r["id"]: (r["path"], r["type"]) for r in await raw.fetch(FIELD_NAMES, field_ids)}
        if field_ids
        else {}
    )

    def node(key: ColumnKey) -> ColumnNode:
        _, ns, ds = names[("dataset", key[0])]
        path, field_type = fields[key[1]] if key[1] is not None else (None, None)
        return ColumnNode(
            id=field_node_id(ns, ds, path), namespace=ns, dataset=ds, field=path, field_type=field_type
        )

    nodes = sorted((node(k) for k in keys), key=lambda n: n.id)
    out_edges = []
    for r in edges.values():
        job = names.get(("job", r["job_id"])) if r["job_id"] is not None else None
        out_edges.append(
            ColumnLineageEdge(
                origin=node((r["source_dataset_id"], r["source_field_id"])).id,
                destination=node((r["target_dataset_id"], r["target_field_id"])).id,
                transformation_type=r["transformation_type"],
                transformation_subtype=r["transformation_subtype"],
                masking=r["masking"],
                description=r["description"],
                job_namespace=job[1] if job else None,
                job_name=job[2] if job else None,
                first_seen=r["first_seen"],
                last_seen=r["last_seen"],
            )
        )
    out_edges.sort(key=lambda e: (e.origin, e.destination, e.transformation_type, e.transformation_subtype))
    root_node = node(root)
    if field is None:
        nodes.insert(0, root_node)
    return ColumnGraph(root=root_node.id, nodes=nodes, edges=out_edges)


# -- node ids -------------------------------------------------------------------------------------------

_VERSION_SUFFIX = re.compile(r"#[0-9a-fA-F-]{36}$")

RESOLVE_DATASETS = """
SELECT n.name AS namespace, d.name FROM datasets d JOIN namespaces n ON n.id = d.namespace_id
JOIN unnest($1::text[], $2::text[]) AS c(ns, name) ON n.name = c.ns AND d.name = c.name
"""
RESOLVE_JOBS = """
SELECT n.name AS namespace, j.name FROM jobs j JOIN namespaces n ON n.id = j.namespace_id
JOIN unnest($1::text[], $2::text[]) AS c(ns, name) ON n.name = c.ns AND j.name = c.name
"""
RESOLVE_FIELDS = """
SELECT n.name AS namespace, d.name, f.path FROM datasets d JOIN namespaces n ON n.id = d.namespace_id
JOIN dataset_fields f ON f.dataset_id = d.id
JOIN unnest($1::text[], $2::text[], $3::text[]) AS c(ns, name, path)
  ON n.name = c.ns AND d.name = c.name AND f.path = c.path
"""


@dataclass(frozen=True, slots=True)
class NodeRef:
    kind: Literal["dataset", "job", "datasetField"]
    namespace: str
    name: str
    field: str | None = None


def _splits(value: str) -> list[tuple[str, str]]:
    """Every way to cut `value` at one ':' into two non-empty parts."""
    return [(value[:i], value[i + 1 :]) for i, ch in enumerate(value) if ch == ":" and 0 < i < len(value) - 1]


async def resolve_dataset_paths(conn: AsyncConnection, paths: Iterable[str]) -> dict[str, tuple[str, str]]:
    """(namespace, name) of each `<namespace>/<name>` string (the form of column paths `…#field` in
    findings and propagation paths) naming a stored dataset; both parts may contain '/', so every cut
    is tried in one statement and the longest namespace that exists wins. Unknown paths are absent."""
    wanted = sorted(set(paths))
    candidates = [
        (path[:i], path[i + 1 :])
        for path in wanted
        for i, ch in enumerate(path)
        if ch == "/" and 0 < i < len(path) - 1
    ]
    if not candidates:
        return {}
    raw = await raw_connection(conn)
    rows = await raw.fetch(RESOLVE_DATASETS, [c[0] for c in candidates], [c[1] for c in candidates])
    found: dict[str, tuple[str, str]] = {}
    for r in sorted(rows, key=lambda r: len(r["namespace"])):
        found[f"{r['namespace']}/{r['name']}"] = (r["namespace"], r["name"])
    return found


async def resolve_node_id(conn: AsyncConnection, node_id: str) -> NodeRef | None:
    """Parse a Marquez node id. Namespaces (`postgres://db:5432`) and names may contain ':', so every
    cut is tried against the catalog in one statement; the longest namespace that exists wins."""
    node_id = _VERSION_SUFFIX.sub("", node_id)
    kind, _, rest = node_id.partition(":")
    raw = await raw_connection(conn)
    if kind in ("dataset", "job"):
        candidates = _splits(rest)
        if not candidates:
            return None
        rows = await raw.fetch(
            RESOLVE_DATASETS if kind == "dataset" else RESOLVE_JOBS,
            [c[0] for c in candidates],
            [c[1] for c in candidates],
        )
        if not rows:
            return None
        best = max(rows, key=lambda r: len(r["namespace"]))
        return NodeRef(kind, best["namespace"], best["name"])  # type: ignore[arg-type]
    if kind == "datasetField":
        triples = [(ns, name, path) for ns, tail in _splits(rest) for name, path in _splits(tail)]
        if not triples:
            return None
        rows = await raw.fetch(
            RESOLVE_FIELDS, [c[0] for c in triples], [c[1] for c in triples], [c[2] for c in triples]
        )
        if not rows:
            return None
        best = max(rows, key=lambda r: (len(r["namespace"]), len(r["name"])))
        return NodeRef("datasetField", best["namespace"], best["name"], best["path"])
    return None
