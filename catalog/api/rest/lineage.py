"""Marquez-compatible lineage REST: /lineage, /column-lineage, /search, dataset versions and tags.

Shapes follow Marquez's openapi (`{"graph": [{id, type, data, inEdges, outEdges}]}`) so the Marquez UI
and `marquez-python` work unchanged; `asOf` is our addition (the graph as it stood at that instant).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal
from urllib.parse import unquote

from fastapi import APIRouter, Body, Path, Query, Request
from pydantic import AfterValidator, BeforeValidator
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.api.rest.deps import ReadConn
from catalog.api.rest.problems import Problem, problem_responses
from catalog.api.rest.requires import Requires, authoriser_of
from catalog.api.text import text_defect
from catalog.auth.service import Principal
from catalog.db.engine import lost_connection_guard
from catalog.lineage import service as lineage_service
from catalog.lineage.service import ColumnGraph, LineageGraph, NodeRef

# Marquez's private row builders are reused so a node's data is exactly what GET dataset/job returns.
from catalog.metadata.service import (
    DATASET_SELECT,
    JOB_SELECT,
    _dataset,
    _facets,
    _field_list,
    _jobs_page,
    iso,
    version_uuid,
)
from catalog.policy.authoriser import EVERYTHING
from catalog.policy.masking import (
    collapse_unreadable,
    discoverable_dataset,
    discoverable_job,
    hide_columns,
    redact_dataset,
)
from catalog.tags import service as tags_service

router = APIRouter(prefix="/api/v1", tags=["lineage"])

ERRORS = problem_responses(400, 401, 403, 404, 503)
Json = dict[str, Any]


def _boolean(value: Any) -> Any:
    # marquez-python sends Python's str(bool): `True`/`False`.
    return value.lower() if isinstance(value, str) else value


NodeIdParam = Annotated[
    str,
    Query(
        alias="nodeId",
        min_length=1,
        max_length=2000,
        description="`dataset:{ns}:{name}`, `job:{ns}:{name}` or `datasetField:{ns}:{name}:{field}`.",
    ),
]
Depth = Annotated[int, Query(ge=0, le=lineage_service.MAX_DEPTH, description="Job hops (column hops).")]
AsOf = Annotated[
    dt.datetime | None, Query(alias="asOf", description="The graph as it stood at this instant (with zone).")
]
Namespace = Annotated[str, Path(description="Namespace name, URL-encoded."), AfterValidator(unquote)]
DatasetName = Annotated[str, Path(description="Dataset name, URL-encoded."), AfterValidator(unquote)]
FieldName = Annotated[str, Path(description="Field path, URL-encoded."), AfterValidator(unquote)]
TagName = Annotated[str, Path(min_length=1, max_length=255), AfterValidator(unquote)]


def _check_as_of(as_of: dt.datetime | None) -> None:
    if as_of is not None and as_of.tzinfo is None:
        raise Problem(
            "invalid-parameter", "asOf needs a time zone (e.g. 2026-04-01T00:00:00Z)", pointer="asOf"
        )


async def _resolve(conn: AsyncConnection, node_id: str) -> NodeRef:
    ref = await lineage_service.resolve_node_id(conn, node_id)
    if ref is None:
        raise Problem("not-found", f"node {node_id!r} not found", pointer="nodeId")
    return ref


# -- /lineage -------------------------------------------------------------------------------------------


@router.get("/lineage", summary="Dataset/job lineage graph around a node (Marquez shape)", responses=ERRORS)
async def get_lineage(
    request: Request,
    conn: ReadConn,
    _: Annotated[Principal, Requires("catalog.internals", "read", "node")],
    node_id: NodeIdParam,
    depth: Depth = 20,
    as_of: AsOf = None,
    direction: Annotated[Literal["UPSTREAM", "DOWNSTREAM", "BOTH"], Query()] = "BOTH",
) -> Json:
    _check_as_of(as_of)
    ref = await _resolve(conn, node_id)
    if ref.kind == "datasetField":
        raise Problem("invalid-parameter", "use /column-lineage for a datasetField node", pointer="nodeId")
    graph = await lineage_service.lineage(
        conn,
        kind=ref.kind,
        namespace=ref.namespace,
        name=ref.name,
        direction=direction,
        depth=depth,
        as_of=as_of,
    )
    if graph is None:
        raise Problem("not-found", f"node {node_id!r} did not exist at {as_of}", pointer="nodeId")
    return {"graph": await _lineage_nodes(conn, graph, request)}


async def _lineage_nodes(
    conn: AsyncConnection, graph: LineageGraph, request: Request | None = None
) -> list[Json]:
    """Graph nodes with the same data GET dataset/job answers, fetched in bulk (a fixed number of queries);
    through a masked-columns-only grant, with the PII columns redacted (catalog/policy/masking.py)."""
    datasets = [(n.namespace, n.name) for n in graph.nodes if n.kind == "dataset"]
    # Another product's dataset shows by name only (its columns, facets, tags are internals) unless
    # granted; through a masked-columns-only grant its PII columns come redacted.
    scope = (
        await authoriser_of(request).internals_scope(conn, datasets) if request is not None else EVERYTHING
    )
    jobs = [(n.namespace, n.name) for n in graph.nodes if n.kind == "job"]
    keys = {"ns": [k[0] for k in datasets], "names": [k[1] for k in datasets]}
    data: dict[str, Json] = {}
    if datasets:
        rows = (
            await conn.execute(
                text(
                    DATASET_SELECT
                    + " JOIN unnest(CAST(:ns AS text[]), CAST(:names AS text[])) AS k(ns, name) "
                    "ON n.name = k.ns AND d.name = k.name"
                ),
                keys,
            )
        ).all()
        facets = await _facets(conn, "dataset", [r.id for r in rows])
        tags = await tags_service.tags_of(conn, datasets)
        for r in rows:
            body = tags_service.apply_tags(_dataset(r, facets.get(r.id, {})), tags.get((r.namespace, r.name)))
            if scope.shows((r.namespace, r.name)):
                body = redact_dataset(body, scope.sensitive((r.namespace, r.name)))
            else:
                body = discoverable_dataset(body)
            data[lineage_service.dataset_node_id(r.namespace, r.name)] = body
    if jobs:
        rows = (
            await conn.execute(
                text(
                    JOB_SELECT + " JOIN unnest(CAST(:ns AS text[]), CAST(:names AS text[])) AS k(ns, name) "
                    "ON n.name = k.ns AND j.name = k.name"
                ),
                {"ns": [k[0] for k in jobs], "names": [k[1] for k in jobs]},
            )
        ).all()
        hidden = await authoriser_of(request).hidden_jobs(conn, jobs) if request is not None else frozenset()
        for body in await _jobs_page(conn, rows):
            if (body["namespace"], body["name"]) in hidden:
                body = discoverable_job(body)
            data[lineage_service.job_node_id(body["namespace"], body["name"])] = body
    ins: dict[str, list[Json]] = defaultdict(list)
    outs: dict[str, list[Json]] = defaultdict(list)
    for e in graph.edges:
        edge = {"origin": e.origin, "destination": e.destination}
        outs[e.origin].append(edge)
        ins[e.destination].append(edge)
    return [
        {
            "id": n.id,
            "type": n.kind.upper(),
            "data": data.get(n.id, {"namespace": n.namespace, "name": n.name}),
            "inEdges": ins[n.id],
            "outEdges": outs[n.id],
        }
        for n in graph.nodes
    ]


# -- /column-lineage ------------------------------------------------------------------------------------


@router.get(
    "/column-lineage", summary="Column lineage graph around a field, dataset or job", responses=ERRORS
)
async def get_column_lineage(
    request: Request,
    conn: ReadConn,
    _: Annotated[Principal, Requires("catalog.internals", "read", "node")],
    node_id: NodeIdParam,
    depth: Depth = 20,
    with_downstream: Annotated[bool, Query(alias="withDownstream"), BeforeValidator(_boolean)] = False,
    as_of: AsOf = None,
) -> Json:
    _check_as_of(as_of)
    ref = await _resolve(conn, node_id)
    direction: lineage_service.Direction = "BOTH" if with_downstream else "UPSTREAM"
    roots: list[tuple[str, str, str | None]]
    if ref.kind == "job":
        # A job's column lineage is that of the datasets it writes (Marquez does the same).
        rows = await conn.execute(
            text(
                "SELECT dn.name AS namespace, d.name FROM jobs j JOIN namespaces n ON n.id = j.namespace_id "
                "JOIN job_io io ON io.job_id = j.id AND io.direction = 'output' "
                "JOIN datasets d ON d.id = io.dataset_id JOIN namespaces dn ON dn.id = d.namespace_id "
                "WHERE n.name = :ns AND j.name = :name ORDER BY 1, 2"
            ),
            {"ns": ref.namespace, "name": ref.name},
        )
        roots = [(r.namespace, r.name, None) for r in rows]
    else:
        roots = [(ref.namespace, ref.name, ref.field)]
    graphs: list[ColumnGraph] = []
    # One walk per output of a job: bounded by the job's outputs, not by the size of the graph.
    for namespace, dataset, field in roots:
        graph = await lineage_service.column_lineage(
            conn,
            namespace=namespace,
            dataset=dataset,
            field=field,
            direction=direction,
            depth=depth,
            as_of=as_of,
        )
        if graph is not None:
            graphs.append(graph)
    if not graphs and ref.kind != "job":
        raise Problem("not-found", f"node {node_id!r} did not exist at {as_of}", pointer="nodeId")
    # GraphQL columnLineage's rule: columns of datasets the caller may not read show only as their
    # dataset, and the edges those datasets declare are left out; through a masked-columns-only grant
    # the PII columns' hops are hidden (catalog/policy/masking.py).
    scope = await authoriser_of(request).internals_scope(
        conn, {(n.namespace, n.dataset) for g in graphs for n in g.nodes}
    )
    if scope.redacted:
        graphs = [hide_columns(g, scope.redacted) for g in graphs]
    if scope.hidden:
        graphs = [collapse_unreadable(g, scope.hidden) for g in graphs]
    return {"graph": _column_nodes(graphs)}


def _column_nodes(graphs: list[ColumnGraph]) -> list[Json]:
    nodes = {n.id: n for g in graphs for n in g.nodes}
    edges = {
        (e.origin, e.destination, e.transformation_type, e.transformation_subtype): e
        for g in graphs
        for e in g.edges
    }
    ins: dict[str, list[Any]] = defaultdict(list)
    outs: dict[str, list[Any]] = defaultdict(list)
    for e in edges.values():
        ins[e.destination].append(e)
        outs[e.origin].append(e)
    out: list[Json] = []
    for node_id in sorted(nodes):
        n = nodes[node_id]
        incoming = ins[node_id]
        first = incoming[0] if incoming else None
        out.append(
            {
                "id": n.id,
                "type": "DATASET_FIELD" if n.field is not None else "DATASET",
                "data": {
                    "namespace": n.namespace,
                    "dataset": n.dataset,
                    "datasetVersion": None,
                    "field": n.field,
                    "fieldType": n.field_type,
                    "transformationDescription": first.description if first else None,
                    "transformationType": first.transformation_type if first else None,
                    "inputFields": [
                        {
                            "namespace": nodes[e.origin].namespace,
                            "dataset": nodes[e.origin].dataset,
                            "datasetVersion": None,
                            "field": nodes[e.origin].field,
                            "transformationDescription": e.description,
                            "transformationType": e.transformation_type,
                            "transformationSubtype": e.transformation_subtype,
                            "masking": e.masking,
                            "job": {"namespace": e.job_namespace, "name": e.job_name} if e.job_name else None,
                            "firstSeen": iso(e.first_seen),
                            "lastSeen": iso(e.last_seen),
                        }
                        for e in incoming
                    ],
                },
                "inEdges": _unique_edges(incoming),
                "outEdges": _unique_edges(outs[node_id]),
            }
        )
    return out


def _unique_edges(edges: list[Any]) -> list[Json]:
    pairs = sorted({(e.origin, e.destination) for e in edges})
    return [{"origin": o, "destination": d} for o, d in pairs]


# -- /search --------------------------------------------------------------------------------------------

SEARCH = """
SELECT * FROM (
    SELECT 'DATASET' AS type, d.name, d.last_seen, n.name AS namespace FROM datasets d
    JOIN namespaces n ON n.id = d.namespace_id
    WHERE :datasets AND d.name ILIKE :pattern ESCAPE '\\' AND (CAST(:namespace AS text) IS NULL OR n.name = :namespace)
    UNION ALL
    SELECT 'JOB', j.name, j.last_seen, n.name FROM jobs j
    JOIN namespaces n ON n.id = j.namespace_id
    WHERE :jobs AND j.name ILIKE :pattern ESCAPE '\\' AND (CAST(:namespace AS text) IS NULL OR n.name = :namespace)
) r
ORDER BY {order}
LIMIT :limit
"""


@router.get(
    "/search", summary="Search datasets and jobs by name (substring, case-insensitive)", responses=ERRORS
)
async def search(
    conn: ReadConn,
    _: Annotated[Principal, Requires("catalog.discover", "read")],
    q: Annotated[str, Query(min_length=1, max_length=500)],
    filter: Annotated[
        Literal["DATASET", "JOB"] | None,
        Query(),
        BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
    ] = None,
    sort: Annotated[
        Literal["NAME", "UPDATE_AT"],
        Query(),
        BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
    ] = "NAME",
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
    namespace: Annotated[str | None, Query(max_length=1000)] = None,
) -> Json:
    # ILIKE '%q%' is served by the trigram GIN indexes (migration 0002); wildcards in q are literal.
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    order = "name, type, namespace" if sort == "NAME" else "last_seen DESC, name, type, namespace"
    rows = await conn.execute(
        text(SEARCH.replace("{order}", order)),
        {
            "pattern": f"%{escaped}%",
            "datasets": filter in (None, "DATASET"),
            "jobs": filter in (None, "JOB"),
            "namespace": namespace,
            "limit": limit,
        },
    )
    results = [
        {
            "type": r.type,
            "name": r.name,
            "updatedAt": iso(r.last_seen),
            "namespace": r.namespace,
            "nodeId": f"{r.type.lower()}:{r.namespace}:{r.name}",
        }
        for r in rows
    ]
    return {"totalCount": len(results), "results": results}


# -- dataset versions -----------------------------------------------------------------------------------

VERSIONS = """
SELECT v.id, v.schema_digest, v.fields, v.first_seen, v.last_seen, count(*) OVER () AS total
FROM dataset_versions v JOIN datasets d ON d.id = v.dataset_id JOIN namespaces n ON n.id = d.namespace_id
WHERE n.name = :ns AND d.name = :name AND (CAST(:prefix AS bytea) IS NULL OR substring(v.schema_digest FROM 1 FOR 16) = :prefix)
ORDER BY v.last_seen DESC, v.id DESC
LIMIT :limit OFFSET :offset
"""


async def _versions(
    request: Request,
    conn: AsyncConnection,
    namespace: str,
    name: str,
    *,
    version: bytes | None,
    limit: int,
    offset: int,
) -> tuple[list[Json], int] | None:
    dataset = await _dataset_body(conn, namespace, name)
    if dataset is None:
        return None
    # Through a masked-columns-only grant the PII columns are redacted (catalog/policy/masking.py).
    sensitive = (await authoriser_of(request).route_redactions(conn, [(namespace, name)])).get(
        (namespace, name), frozenset()
    )
    rows = (
        await conn.execute(
            text(VERSIONS),
            {"ns": namespace, "name": name, "prefix": version, "limit": limit, "offset": offset},
        )
    ).all()
    out = []
    for r in rows:
        body = dict(dataset)
        body.update(
            {
                "version": version_uuid(bytes(r.schema_digest)),
                "createdAt": iso(r.first_seen),
                "updatedAt": iso(r.last_seen),
                "fields": _field_list(r.fields),
                "createdByRun": None,
            }
        )
        body.pop("currentVersion", None)
        out.append(redact_dataset(body, sensitive))
    return out, (rows[0].total if rows else 0)


@router.get(
    "/namespaces/{namespace}/datasets/{dataset}/versions",
    summary="A dataset's schema versions, newest first",
    responses=ERRORS,
)
async def list_dataset_versions(
    namespace: Namespace,
    dataset: DatasetName,
    request: Request,
    conn: ReadConn,
    _: Annotated[Principal, Requires("catalog.internals", "read", "dataset")],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Json:
    page = await _versions(request, conn, namespace, dataset, version=None, limit=limit, offset=offset)
    if page is None:
        raise Problem("not-found", f"dataset {dataset!r} in namespace {namespace!r} not found")
    return {"versions": page[0], "totalCount": page[1]}


@router.get(
    "/namespaces/{namespace}/datasets/{dataset}/versions/{version}",
    summary="One schema version of a dataset",
    responses=ERRORS,
)
async def get_dataset_version(
    namespace: Namespace,
    dataset: DatasetName,
    version: str,
    request: Request,
    conn: ReadConn,
    _: Annotated[Principal, Requires("catalog.internals", "read", "dataset")],
) -> Json:
    try:
        prefix = uuid.UUID(version).bytes
    except ValueError as exc:
        raise Problem("invalid-parameter", "version must be a UUID", pointer="version") from exc
    page = await _versions(request, conn, namespace, dataset, version=prefix, limit=1, offset=0)
    if not page or not page[0]:
        raise Problem("not-found", f"version {version} of dataset {dataset!r} not found")
    return page[0][0]


# -- tags -----------------------------------------------------------------------------------------------


@asynccontextmanager
async def _write(request: Request) -> AsyncIterator[AsyncConnection]:
    """One write transaction for the request (the handler owns it; services only execute)."""
    conn = await request.app.state.engine.connect()
    try:
        async with lost_connection_guard(conn), conn.begin():
            yield conn
    finally:
        await conn.close()


async def _dataset_body(conn: AsyncConnection, namespace: str, name: str) -> Json | None:
    row = (
        await conn.execute(
            text(DATASET_SELECT + " WHERE n.name = :ns AND d.name = :name"), {"ns": namespace, "name": name}
        )
    ).first()
    if row is None:
        return None
    facets = await _facets(conn, "dataset", [row.id])
    tags = await tags_service.tags_of(conn, [(namespace, name)])
    return tags_service.apply_tags(_dataset(row, facets.get(row.id, {})), tags.get((namespace, name)))


@router.get("/tags", summary="List tags", responses=ERRORS)
async def list_tags(
    conn: ReadConn,
    _: Annotated[Principal, Requires("catalog.discover", "read")],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Json:
    return {"tags": await tags_service.list_tags(conn, limit=limit, offset=offset)}


@router.put("/tags/{tag}", summary="Create a tag (or update its description)", responses=ERRORS)
async def put_tag(
    tag: TagName,
    request: Request,
    principal: Annotated[Principal, Requires("tags", "write")],
    body: Annotated[dict[str, Any] | None, Body()] = None,
) -> Json:
    description = (body or {}).get("description")
    if description is not None and not isinstance(description, str):
        raise Problem("invalid-parameter", "description must be a string", pointer="description")
    reason = text_defect(description) if description is not None else None
    if reason:
        raise Problem("invalid-parameter", f"description {reason}", pointer="description")
    async with _write(request) as conn:
        return await tags_service.upsert_tag(conn, name=tag, description=description)


async def _change_tag(
    request: Request, namespace: str, dataset: str, tag: str, field: str | None, *, add: bool
) -> Json:
    async with _write(request) as conn:
        if await _dataset_body(conn, namespace, dataset) is None:
            raise Problem("not-found", f"dataset {dataset!r} in namespace {namespace!r} not found")
        if field is not None and not await tags_service.field_exists(
            conn, namespace=namespace, dataset=dataset, field=field
        ):
            raise Problem("not-found", f"field {field!r} of dataset {dataset!r} not found")
        if add:
            await tags_service.tag_dataset(conn, namespace=namespace, dataset=dataset, tag=tag, field=field)
        elif not await tags_service.untag_dataset(
            conn, namespace=namespace, dataset=dataset, tag=tag, field=field
        ):
            raise Problem("not-found", f"tag {tag!r} is not on {field or dataset!r}")
        body = await _dataset_body(conn, namespace, dataset)
        assert body is not None
        return body


@router.post(
    "/namespaces/{namespace}/datasets/{dataset}/tags/{tag}", summary="Tag a dataset", responses=ERRORS
)
async def tag_dataset(
    namespace: Namespace,
    dataset: DatasetName,
    tag: TagName,
    request: Request,
    principal: Annotated[Principal, Requires("classification", "write", "dataset")],
) -> Json:
    return await _change_tag(request, namespace, dataset, tag, None, add=True)


@router.delete(
    "/namespaces/{namespace}/datasets/{dataset}/tags/{tag}", summary="Untag a dataset", responses=ERRORS
)
async def untag_dataset(
    namespace: Namespace,
    dataset: DatasetName,
    tag: TagName,
    request: Request,
    principal: Annotated[Principal, Requires("classification", "write", "dataset")],
) -> Json:
    return await _change_tag(request, namespace, dataset, tag, None, add=False)


@router.post(
    "/namespaces/{namespace}/datasets/{dataset}/fields/{field}/tags/{tag}",
    summary="Tag a field of a dataset",
    responses=ERRORS,
)
async def tag_field(
    namespace: Namespace,
    dataset: DatasetName,
    field: FieldName,
    tag: TagName,
    request: Request,
    principal: Annotated[Principal, Requires("classification", "write", "dataset")],
) -> Json:
    return await _change_tag(request, namespace, dataset, tag, field, add=True)


@router.delete(
    "/namespaces/{namespace}/datasets/{dataset}/fields/{field}/tags/{tag}",
    summary="Untag a field of a dataset",
    responses=ERRORS,
)
async def untag_field(
    namespace: Namespace,
    dataset: DatasetName,
    field: FieldName,
    tag: TagName,
    request: Request,
    principal: Annotated[Principal, Requires("classification", "write", "dataset")],
) -> Json:
    return await _change_tag(request, namespace, dataset, tag, field, add=False)
