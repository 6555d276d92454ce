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
- Facets are redacted by kind, custom ones included (`redact_facets`): those known to name columns
  (`columnLineage`, `lineage`, `dataQualityMetrics`, `dataQualityAssertions`, `tags`) lose their entries
  about the column; those known to carry no column detail (`COLUMN_FREE_FACETS`) pass; any other is
  withheld. No facet but the schema names the column afterwards: one that still does (as a word of a
  string: prose, an assertion named after it, a self-referencing lineage entry) is withheld, and another
  column's schema members that name it are left out.
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
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Set
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
    """REST `fields` (flat, `name` is the dotted path): redacted columns keep their name only; another
    column's details that name a redacted one (a description "copy of cpf") are emptied."""
    if not sensitive:
        return fields
    pattern = _name_patterns(sensitive)
    return [
        {"name": f["name"], "type": None, "tags": [], "description": None, "masked": True}
        if is_redacted(f["name"], sensitive)
        else _scrubbed(f, pattern, empty=True)
        for f in fields
    ]


def redact_schema(fields: Any, sensitive: Set[str], prefix: str = "") -> Any:
    """A producer's schema field list (schema facet, stored version): nested `fields`, names relative
    to their parent. Redacted columns keep their name only, with `masked: true`; another column's
    members that name a redacted one are left out."""
    if not isinstance(fields, list) or not sensitive:
        return fields
    return _redact_schema(fields, sensitive, prefix, _name_patterns(sensitive))


def _redact_schema(
    fields: list[Any], sensitive: Set[str], prefix: str, pattern: re.Pattern[str]
) -> list[Any]:
    out: list[Any] = []
    for f in fields:
        if not isinstance(f, dict) or not isinstance(f.get("name"), str):
            if not _mentions(f, pattern):
                out.append(f)
            continue
        path = prefix + f["name"]
        if is_redacted(path, sensitive):
            out.append({"name": f["name"], "masked": True})
            continue
        kept = _scrubbed(f, pattern, empty=False)
        if isinstance(f.get("fields"), list):
            kept["fields"] = _redact_schema(f["fields"], sensitive, path + ".", pattern)
        out.append(kept)
    return out


def _scrubbed(field: Json, pattern: re.Pattern[str], *, empty: bool) -> Json:
    """A column entry without the members (other than its name and nested fields) that name a redacted
    column: emptied (`empty`: the REST shape keeps its keys) or left out."""
    out: Json = {}
    for key, value in field.items():
        if key in ("name", "fields") or not _mentions(value, pattern):
            out[key] = value
        elif empty:
            out[key] = [] if isinstance(value, list) else {} if isinstance(value, dict) else None
    return out


# Standard facets whose shape carries no column detail (the data source, the dataset's own description,
# owners, lifecycle, version, storage, symlinks, type, catalog, hierarchy, whole-dataset statistics).
COLUMN_FREE_FACETS = frozenset(
    {
        "dataSource",
        "documentation",
        "ownership",
        "lifecycleStateChange",
        "version",
        "storage",
        "symlinks",
        "datasetType",
        "catalog",
        "hierarchy",
        "inputStatistics",
        "outputStatistics",
    }
)


def _without_keys(member: str) -> Callable[[Json, Set[str]], Json]:
    """A facet whose `member` maps column names to their details (columnLineage, lineage `fields`,
    dataQualityMetrics `columnMetrics`): the redacted columns' entries removed."""

    def redact(facet: Json, sensitive: Set[str]) -> Json:
        keyed = facet.get(member)
        if not isinstance(keyed, dict):
            return facet
        return {**facet, member: {k: v for k, v in keyed.items() if not is_redacted(k, sensitive)}}

    return redact


def _without_entries(member: str, key: str) -> Callable[[Json, Set[str]], Json]:
    """A facet whose `member` lists entries naming a column in `key` (tags' `field`, dataQualityAssertions'
    `column`, lineage `inputs`' `field`): the entries about a redacted column removed."""

    def redact(facet: Json, sensitive: Set[str]) -> Json:
        entries = facet.get(member)
        if not isinstance(entries, list):
            return facet
        kept = [
            e
            for e in entries
            if not (isinstance(e, dict) and isinstance(e.get(key), str) and is_redacted(e[key], sensitive))
        ]
        return {**facet, member: kept}

    return redact


def _lineage(facet: Json, sensitive: Set[str]) -> Json:
    return _without_entries("inputs", "field")(_without_keys("fields")(facet, sensitive), sensitive)


# Standard facets whose shape names columns: each redactor removes every entry about a redacted column.
COLUMN_FACET_REDACTORS: dict[str, Callable[[Json, Set[str]], Json]] = {
    "columnLineage": _without_keys("fields"),
    "lineage": _lineage,
    "dataQualityMetrics": _without_keys("columnMetrics"),
    "dataQualityAssertions": _without_entries("assertions", "column"),
    "tags": _without_entries("tags", "field"),
}


def _name_patterns(sensitive: Set[str]) -> re.Pattern[str]:
    """Any redacted column's path or own (last) name as a whole word of a string."""
    names = sorted(
        {n for path in sensitive for n in (path, path.rsplit(".", 1)[-1]) if n}, key=len, reverse=True
    )
    return re.compile(r"(?<![\w$])(?:" + "|".join(re.escape(n) for n in names) + r")(?![\w$])")


def _mentions(value: Any, pattern: re.Pattern[str]) -> bool:
    """Does `value` (a facet, or part of one) name a redacted column as a word of one of its strings?
    Keys are not read: those of a known facet are its own member names (a column `name` or `type`
    would otherwise withhold every facet), and a facet keyed by columns has its redactor."""
    if isinstance(value, str):
        return pattern.search(value) is not None
    if isinstance(value, dict):
        return any(_mentions(v, pattern) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, pattern) for v in value)
    return False


def names_redacted(value: Any, sensitive: Set[str]) -> bool:
    """Does `value` name a redacted column as a word of one of its strings (a description "copy of cpf")?"""
    return bool(sensitive) and _mentions(value, _name_patterns(sensitive))


def redact_facets(facets: Mapping[str, Any], sensitive: Set[str]) -> Json:
    """A copy of a dataset's facets (or an event's input/output facets) as a masked-only grantee sees
    them (the input is not changed: it may be a loader's cached value). Redaction is by facet kind,
    whatever the producer: the schema lists a redacted column by name only (`masked: true`); a facet
    known to name columns (`COLUMN_FACET_REDACTORS`) loses its entries about redacted columns; a facet
    known to carry no column detail (`COLUMN_FREE_FACETS`) passes; any other facet — custom ones
    included — is withheld, as its shape is unknown. Then whatever still names a redacted column (as a
    word of a string: a free-text description, an assertion named after the column) is
    withheld too: no facet but the schema names a redacted column."""
    if not sensitive:
        return dict(facets)
    pattern = _name_patterns(sensitive)
    out: Json = {}
    for name, value in facets.items():
        if not isinstance(value, dict):
            continue
        if name == "schema":
            if "fields" in value:
                value = {**value, "fields": redact_schema(value["fields"], sensitive)}
            out[name] = value
            continue
        redactor = COLUMN_FACET_REDACTORS.get(name)
        if redactor is not None:
            value = redactor(value, sensitive)
        elif name not in COLUMN_FREE_FACETS:
            continue
        if not _mentions(value, pattern):
            out[name] = value
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
            nodes.setdefault(whole, dataclasses.replace(n, id=whole, field=None, field_type=None))
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


# A column named as text (findings' evidence, propagation paths): `<namespace>/<dataset>#<field path>`.
COLUMN_TEXT = re.compile(r"(?P<dataset>[^\s#]+/[^\s#]+)#(?P<field>[^\s#]+)")


def column_texts(value: Any) -> set[str]:
    """The `<namespace>/<dataset>` of every column `value` (any JSON) names as text."""
    if isinstance(value, str):
        return {m["dataset"] for m in COLUMN_TEXT.finditer(value)}
    if isinstance(value, dict):
        return set().union(*(column_texts(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(column_texts(v) for v in value))
    return set()


def _dataset_name(value: dict[str, Any]) -> Any:
    """The dataset a structured reference names: `name` (a finding's subject) or `dataset` (its evidence)."""
    name = value.get("name")
    return name if isinstance(name, str) else value.get("dataset")


def column_keys(value: Any) -> set[DatasetKey]:
    """The datasets of every structured `{namespace, name|dataset, field}` column reference in `value`."""
    if isinstance(value, dict):
        ns, name = value.get("namespace"), _dataset_name(value)
        own = (
            {(ns, name)}
            if isinstance(ns, str) and isinstance(name, str) and isinstance(value.get("field"), str)
            else set()
        )
        return own.union(*(column_keys(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(column_keys(v) for v in value))
    return set()


def columns_as_seen(
    value: Any, shown: Callable[[DatasetKey, str], bool], datasets: Mapping[str, DatasetKey]
) -> Any:
    """`value` (any JSON: a finding's evidence, a propagation path) with every column it names that
    the caller may not see (`shown` false: its dataset's internals are unreadable, or a masked-columns-
    only grant redacts it) shown as its dataset only — the rule of a column-lineage graph: text
    `ns/name#field` becomes `ns/name`, a structured `{namespace, name|dataset, field}` gets `field` null.
    `datasets`: the stored dataset of each text `ns/name` (both may contain '/'); a text naming no
    stored dataset is shown as its dataset."""

    def visible(text: str, field: str) -> bool:
        key = datasets.get(text)
        return key is not None and shown(key, field)

    if isinstance(value, str):
        return COLUMN_TEXT.sub(lambda m: m[0] if visible(m["dataset"], m["field"]) else m["dataset"], value)
    if isinstance(value, list):
        return [columns_as_seen(v, shown, datasets) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: columns_as_seen(v, shown, datasets) for k, v in value.items()}
    ns, name, field = value.get("namespace"), _dataset_name(value), value.get("field")
    if (
        isinstance(ns, str)
        and isinstance(name, str)
        and isinstance(field, str)
        and not shown((ns, name), field)
    ):
        out["field"] = None
    return out


def event_datasets(event: Json) -> list[Json]:
    """The dataset entries of a raw OpenLineage event: its inputs, outputs, and a DatasetEvent's dataset."""
    items = [*(event.get("inputs") or []), *(event.get("outputs") or []), event.get("dataset")]
    return [
        d
        for d in items
        if isinstance(d, dict) and isinstance(d.get("namespace"), str) and isinstance(d.get("name"), str)
    ]


def event_as_seen(
    event: Json, shows: Callable[[DatasetKey], bool], sensitive: Callable[[DatasetKey], Set[str]]
) -> Json:
    """A raw event as a caller who may read its job sees it: every dataset in it by the per-dataset
    rule of the lineage reads — one whose internals the caller may not read by namespace and name only
    (its facets, input and output facets left out), one read through a masked-columns-only grant with
    its facets redacted (`redact_facets`)."""

    def dataset(d: Any) -> Any:
        if (
            not isinstance(d, dict)
            or not isinstance(d.get("namespace"), str)
            or not isinstance(d.get("name"), str)
        ):
            return d
        key = (d["namespace"], d["name"])
        if not shows(key):
            return {"namespace": d["namespace"], "name": d["name"]}
        redacted = sensitive(key)
        if not redacted:
            return d
        return {
            **d,
            **{
                group: redact_facets(d[group], redacted)
                for group in ("facets", "inputFacets", "outputFacets")
                if isinstance(d.get(group), dict)
            },
        }

    out = dict(event)
    for member in ("inputs", "outputs"):
        if isinstance(out.get(member), list):
            out[member] = [dataset(d) for d in out[member]]
    if "dataset" in out:
        out["dataset"] = dataset(out["dataset"])
    return out
