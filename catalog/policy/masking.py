"""What a masked-columns-only grant lets the grantee see: reads apply it, in REST and GraphQL alike.

A grant with `masked_only` (catalog/policy/grants.py) lets product B read product A's dataset
internals — columns, versions, facets, classifications, column lineage — *except* the details of the
columns that hold unmasked PII: a column whose effective classification (catalog/classification/
service.py: manual > declared > detected > propagated, rejects suppressing) is a PII.*/PCI.* tag that
is not a masked derivative. Nested fields under such a column are redacted with it.

How a redacted column shows:

- In a field list (REST `fields`, the schema facet, a schema version; GraphQL `Dataset.fields`/`field`)
  it is **listed by name with `masked: true`**, and its type, description and tags are hidden (null /
  empty), as are its nested fields. Listed rather than omitted: the schema keeps its shape (a grantee
  writing a query or a contract sees every column and knows which ones it may only receive masked), and
  an omitted column would be indistinguishable from one that does not exist. The name itself is no
  value of the column and says no more than `masked: true` does.
- Column-keyed facets (`columnLineage`, `columnMetrics` of data quality) leave the column out: their
  only content is its details.
- Classifications (REST /classifications) leave out the column's rows: its tags are its details. Hops
  through it are removed from the propagation paths of the other rows.
- The PII inventory (REST /pii/inventory, GraphQL piiInventory) and the decisions list (REST
  /classifications/decisions) leave out the column's rows; a PII flow (REST /pii/flow, GraphQL piiFlow)
  leaves out the hops into or out of it (counted in `omittedHops`), and its classifications when it is
  the origin.
- Column lineage: the column's hops are hidden — the column's node and every edge into or out of it are
  left out, and so is whatever the graph reached only through it (a node whose only content is its hops
  would otherwise still say where the value came from). If the column is the graph's own root, the graph
  is empty.

Redaction sets are found set-based: one statement per request for all the datasets involved
(`unmasked_pii_columns`), or none where the read already computed the PII tags (GET dataset).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Mapping, Set
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from catalog.lineage.service import ColumnGraph

Json = dict[str, Any]
DatasetKey = tuple[str, str]  # namespace, dataset name


def is_redacted(path: str, sensitive: Set[str]) -> bool:
    """Is the field at dotted `path` redacted: it, or a field it is nested under, holds unmasked PII."""
    if not sensitive:
        return False
    if path in sensitive:
        return True
    parts = path.split(".")
    return any(".".join(parts[:cut]) in sensitive for cut in range(1, len(parts)))


def redact_field_list(fields: list[Json], sensitive: Set[str]) -> list[Json]:
    """REST `fields` (flat, `name` is the dotted path): redacted columns keep their name only."""
    return [
        {"name": f["name"], "type": None, "tags": [], "description": None, "masked": True}
        if is_redacted(f["name"], sensitive)
        else f
        for f in fields
    ]


def redact_schema(fields: Any, sensitive: Set[str], prefix: str = "") -> Any:
    """A producer's schema field list (schema facet, stored version): nested `fields`, names relative
    to their parent. Redacted columns keep their name only, with `masked: true`."""
    if not isinstance(fields, list):
        return fields
    out: list[Any] = []
    for f in fields:
        if not isinstance(f, dict) or not isinstance(f.get("name"), str):
            out.append(f)
            continue
        path = prefix + f["name"]
        if is_redacted(path, sensitive):
            out.append({"name": f["name"], "masked": True})
        elif isinstance(f.get("fields"), list):
            out.append({**f, "fields": redact_schema(f["fields"], sensitive, path + ".")})
        else:
            out.append(f)
    return out


def redact_facets(facets: Mapping[str, Any], sensitive: Set[str]) -> Json:
    """A copy of a dataset's facets without the redacted columns' details (the input is not changed:
    it may be a loader's cached value)."""
    if not sensitive:
        return dict(facets)
    out = dict(facets)
    schema = out.get("schema")
    if isinstance(schema, dict) and "fields" in schema:
        out["schema"] = {**schema, "fields": redact_schema(schema["fields"], sensitive)}
    lineage = out.get("columnLineage")
    if isinstance(lineage, dict) and isinstance(lineage.get("fields"), dict):
        kept = {k: v for k, v in lineage["fields"].items() if not is_redacted(k, sensitive)}
        out["columnLineage"] = {**lineage, "fields": kept}
    for name, value in facets.items():
        if isinstance(value, dict) and isinstance(value.get("columnMetrics"), dict):
            metrics = {k: v for k, v in value["columnMetrics"].items() if not is_redacted(k, sensitive)}
            out[name] = {**value, "columnMetrics": metrics}
    return out


def redact_dataset(body: Json, sensitive: Set[str]) -> Json:
    """A REST dataset (or dataset version) body as a masked-only grantee sees it."""
    if not sensitive:
        return body
    out = dict(body)
    if isinstance(out.get("fields"), list):
        out["fields"] = redact_field_list(out["fields"], sensitive)
    if isinstance(out.get("facets"), dict):
        out["facets"] = redact_facets(out["facets"], sensitive)
    return out


def redact_classifications(rows: list[Json], namespace: str, dataset: str, sensitive: Set[str]) -> list[Json]:
    """Effective classifications of one dataset without the redacted columns' rows, and without hops
    through them in the other rows' propagation paths."""
    if not sensitive:
        return rows
    own = f"{namespace}/{dataset}#"
    out = []
    for row in rows:
        if row.get("field") is not None and is_redacted(row["field"], sensitive):
            continue
        path = row.get("path")
        if path:
            kept = [h for h in path if not (h.startswith(own) and is_redacted(h[len(own) :], sensitive))]
            row = {**row, "path": kept or None}
        out.append(row)
    return out


def hide_columns(graph: ColumnGraph, sensitive: Mapping[DatasetKey, Set[str]]) -> ColumnGraph:
    """Column lineage without the hops of redacted columns (see the module docstring): their nodes and
    edges are left out, then whatever is no longer connected to the root's columns."""
    hidden = {
        n.id
        for n in graph.nodes
        if n.field is not None and is_redacted(n.field, sensitive.get((n.namespace, n.dataset), frozenset()))
    }
    if not hidden:
        return graph
    nodes = {n.id: n for n in graph.nodes if n.id not in hidden}
    edges = [e for e in graph.edges if e.origin not in hidden and e.destination not in hidden]
    if graph.root in hidden:
        starts: set[str] = set()
    elif graph.root in nodes and nodes[graph.root].field is not None:
        starts = {graph.root}
    else:
        # A dataset root: the walk started from each of its columns.
        starts = {i for i, n in nodes.items() if i == graph.root or _root_dataset(graph.root, n)}
    neighbours: dict[str, set[str]] = defaultdict(set)
    for e in edges:
        neighbours[e.origin].add(e.destination)
        neighbours[e.destination].add(e.origin)
    reached = set(starts)
    queue = list(starts)
    while queue:
        for nxt in neighbours[queue.pop()]:
            if nxt not in reached and nxt in nodes:
                reached.add(nxt)
                queue.append(nxt)
    return dataclasses.replace(
        graph,
        nodes=[n for i, n in nodes.items() if i in reached],
        edges=[e for e in edges if e.origin in reached and e.destination in reached],
    )


def collapse_unreadable(graph: ColumnGraph, hidden: Set[DatasetKey]) -> ColumnGraph:
    """Column lineage with the columns of datasets the caller may not read (`hidden`) collapsed to
    their dataset's node (`field` null), and without the edges such a dataset declares (its column
    lineage facet is its internals); edges from its columns into readable ones keep the readable side's
    transformation. The rule of GraphQL `columnLineage` and REST /column-lineage alike."""
    if not hidden:
        return graph
    from catalog.lineage.service import field_node_id

    replaced: dict[str, str] = {}
    nodes: dict[str, Any] = {}
    for n in graph.nodes:
        if (n.namespace, n.dataset) in hidden:
            whole = field_node_id(n.namespace, n.dataset, None)
            replaced[n.id] = whole
            nodes.setdefault(whole, dataclasses.replace(n, id=whole, field=None))
        else:
            nodes.setdefault(n.id, n)
    edges: dict[tuple[Any, ...], Any] = {}
    for e in graph.edges:
        if e.destination in replaced:
            continue
        edge = dataclasses.replace(e, origin=replaced.get(e.origin, e.origin))
        key = (edge.origin, edge.destination, edge.transformation_type, edge.transformation_subtype)
        edges.setdefault((*key, edge.job_namespace, edge.job_name), edge)
    root = replaced.get(graph.root, graph.root)
    return dataclasses.replace(
        graph, root=root, nodes=sorted(nodes.values(), key=lambda n: n.id), edges=list(edges.values())
    )


# What of a dataset body is discoverable by any catalog user (name, owner, product): the rest — columns,
# facets, classifications (tags), source, versions — is internals.
DISCOVERABLE_DATASET_KEYS = frozenset(
    {"id", "type", "name", "physicalName", "createdAt", "updatedAt", "namespace", "description", "deleted"}
)


def discoverable_dataset(body: Json) -> Json:
    """A REST dataset body (a lineage graph node's `data`) as a caller without access to the dataset's
    internals sees it: same keys, internals emptied (no fields, facets or tags; no source or version)."""
    return {
        key: value
        if key in DISCOVERABLE_DATASET_KEYS
        else []
        if isinstance(value, list)
        else {}
        if isinstance(value, dict)
        else None
        for key, value in body.items()
    }


# What of a job body is discoverable: its name, dates, description and the datasets it reads and
# writes (lineage at the dataset level); its facets, SQL, source location and runs are internals.
JOB_INTERNALS = ("location", "sql", "jobType", "facets", "latestRun")


def discoverable_job(body: Json) -> Json:
    """A REST job body as a caller without access to the job's product's internals sees it: same keys,
    internals emptied."""
    return {
        key: ({} if key == "facets" else None) if key in JOB_INTERNALS else value
        for key, value in body.items()
    }


def _root_dataset(root: str, node: Any) -> bool:
    """Is `node` a column of the dataset whose node id is `root` (`dataset:{ns}:{name}`)?"""
    return bool(root == f"dataset:{node.namespace}:{node.dataset}")
