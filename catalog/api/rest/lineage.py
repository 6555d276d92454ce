"""Marquez-compatible lineage REST: /lineage, /column-lineage, /search and dataset versions.

Shapes follow Marquez's openapi (`{"graph": [{id, type, data, inEdges, outEdges}]}`) so the Marquez UI
and `marquez-python` work unchanged; `asOf` is our addition (the graph as it stood at that instant).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from typing import Annotated, Any, Literal
from urllib.parse import unquote

from fastapi import APIRouter, Path, Query, Request
from pydantic import AfterValidator, BeforeValidator
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.api.rest.deps import ReadConn
from catalog.api.rest.problems import Problem, problem_responses
from catalog.api.rest.requires import Requires, authoriser_of
from catalog.auth.service import Principal
from catalog.lineage import service as lineage_service
from catalog.lineage.service import ColumnGraph, LineageGraph, NodeRef
from catalog.metadata import queries
from catalog.metadata import service as metadata
from catalog.metadata.service import iso
from catalog.policy.authoriser import EVERYTHING
from catalog.policy.masking import (
    collapse_unreadable,
    discoverable_dataset,
    discoverable_job,
    hide_columns,
    redact_dataset,
)

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
    data: dict[str, Json] = {}
    # The same bodies GET dataset/job answers (the dataset's stewards' tags included).
    for (namespace, name), body in (await metadata.tagged_datasets(conn, datasets)).items():
        if scope.shows((namespace, name)):
            body = redact_dataset(body, scope.sensitive((namespace, name)))
        else:
            body = discoverable_dataset(body)
        data[lineage_service.dataset_node_id(namespace, name)] = body
    if jobs:
        hidden = await authoriser_of(request).hidden_jobs(conn, jobs) if request is not None else frozenset()
        for body in await metadata.jobs_by_name(conn, jobs):
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
        roots = [(ns, name, None) for ns, name in await queries.job_outputs(conn, ref.namespace, ref.name)]
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
    product: Annotated[
        str | None, Query(max_length=200, description="Only subjects of this stored product")
    ] = None,
    tier: Annotated[
        str | None, Query(max_length=50, description="Only subjects in namespaces of this tier")
    ] = None,
) -> Json:
    results = await metadata.search(
        conn, q=q, kind=filter, sort=sort, limit=limit, namespace=namespace, product=product, tier=tier
    )
    return {"totalCount": len(results), "results": results}


# -- dataset versions -----------------------------------------------------------------------------------


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
    page = await metadata.list_versions(conn, namespace, name, version=version, limit=limit, offset=offset)
    if page is None:
        return None
    # Through a masked-columns-only grant the PII columns are redacted (catalog/policy/masking.py).
    sensitive = (await authoriser_of(request).route_redactions(conn, [(namespace, name)])).get(
        (namespace, name), frozenset()
    )
    return [redact_dataset(body, sensitive) for body in page[0]], page[1]


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
