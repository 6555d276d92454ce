"""Marquez-compatible reads: namespaces, datasets, jobs, runs and the raw event log."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal
from urllib.parse import unquote

from fastapi import APIRouter, Path, Query, Request
from pydantic import AfterValidator
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.api.rest.deps import ReadConn
from catalog.api.rest.problems import Problem, problem_responses
from catalog.api.rest.requires import Requires, authoriser_of
from catalog.auth.service import Principal
from catalog.metadata import service
from catalog.policy.enforcer import UNOWNED
from catalog.policy.masking import (
    discoverable_dataset,
    discoverable_job,
    event_as_seen,
    event_datasets,
    redact_dataset,
)

router = APIRouter(prefix="/api/v1", tags=["catalog"])

Limit = Annotated[int, Query(ge=1, le=1000, description="Page size (at most 1000).")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Rows to skip.")]
# Names are path segments: slashes and colons in OpenLineage names must be URL-encoded by the client
# (`postgres%3A%2F%2Fdb%3A5432`); `:path` lets an encoded slash through routing intact.
ERRORS = problem_responses(400, 401, 404, 503)
Namespace = Annotated[str, Path(description="Namespace name, URL-encoded."), AfterValidator(unquote)]
DatasetName = Annotated[str, Path(description="Dataset name, URL-encoded."), AfterValidator(unquote)]
JobName = Annotated[str, Path(description="Job name, URL-encoded."), AfterValidator(unquote)]
Json = dict[str, Any]


def _not_found(what: str) -> Problem:
    return Problem("not-found", f"{what} not found")


@router.get("/namespaces", summary="List namespaces", responses=ERRORS)
async def list_namespaces(
    conn: ReadConn,
    _: Annotated[Principal, Requires("catalog.discover", "read")],
    limit: Limit = 100,
    offset: Offset = 0,
) -> Json:
    rows, total = await service.list_namespaces(conn, limit=limit, offset=offset)
    return {"namespaces": rows, "totalCount": total}


@router.get("/namespaces/{namespace}", summary="Get a namespace", responses=ERRORS)
async def get_namespace(
    namespace: Namespace,
    conn: ReadConn,
    _: Annotated[Principal, Requires("catalog.discover", "read", "namespace")],
) -> Json:
    row = await service.get_namespace(conn, namespace)
    if row is None:
        raise _not_found(f"namespace {namespace!r}")
    return row


@router.get("/namespaces/{namespace}/datasets", summary="List a namespace's datasets", responses=ERRORS)
async def list_datasets(
    namespace: Namespace,
    request: Request,
    conn: ReadConn,
    _: Annotated[Principal, Requires("catalog.internals", "read", "namespace")],
    limit: Limit = 100,
    offset: Offset = 0,
) -> Json:
    page = await service.list_datasets(
        conn, namespace=namespace, limit=limit, offset=offset, masked=authoriser_of(request).masked_route
    )
    if page is None:
        raise _not_found(f"namespace {namespace!r}")
    # The namespace's product admitted the request; a dataset of it owned by another product (by name
    # or ownership facet) shows by name only unless granted, masked-granted ones come redacted.
    scope = await authoriser_of(request).internals_scope(conn, [(d["namespace"], d["name"]) for d in page[0]])
    datasets = [
        redact_dataset(d, scope.sensitive(key)) if scope.shows(key) else discoverable_dataset(d)
        for d, key in ((d, (d["namespace"], d["name"])) for d in page[0])
    ]
    return {"datasets": datasets, "totalCount": page[1]}


@router.get("/namespaces/{namespace}/datasets/{dataset:path}", summary="Get a dataset", responses=ERRORS)
async def get_dataset(
    namespace: Namespace,
    dataset: DatasetName,
    request: Request,
    conn: ReadConn,
    _: Annotated[Principal, Requires("catalog.internals", "read", "dataset")],
) -> Json:
    row = await service.get_dataset(
        conn, namespace=namespace, name=dataset, masked=authoriser_of(request).masked_route
    )
    if row is None:
        raise _not_found(f"dataset {dataset!r} in namespace {namespace!r}")
    return row


async def _discoverable_jobs(request: Request, conn: AsyncConnection, jobs: list[Json]) -> list[Json]:
    """Jobs are discoverable (name, dates, description, inputs and outputs); the facets, SQL, source
    location and latest run of a job of a product whose internals the caller may not read are emptied
    (GraphQL's `Job.facets`/`runs` rule)."""
    hidden = await authoriser_of(request).hidden_jobs(conn, [(j["namespace"], j["name"]) for j in jobs])
    return [discoverable_job(j) if (j["namespace"], j["name"]) in hidden else j for j in jobs]


@router.get("/namespaces/{namespace}/jobs", summary="List a namespace's jobs", responses=ERRORS)
async def list_jobs(
    namespace: Namespace,
    request: Request,
    conn: ReadConn,
    _: Annotated[Principal, Requires("catalog.discover", "read", "namespace")],
    limit: Limit = 100,
    offset: Offset = 0,
) -> Json:
    page = await service.list_jobs(conn, namespace=namespace, limit=limit, offset=offset)
    if page is None:
        raise _not_found(f"namespace {namespace!r}")
    return {"jobs": await _discoverable_jobs(request, conn, page[0]), "totalCount": page[1]}


@router.get(
    "/namespaces/{namespace}/jobs/{job}/runs", summary="List a job's runs, newest first", responses=ERRORS
)
async def list_runs(
    namespace: Namespace,
    job: JobName,
    conn: ReadConn,
    _: Annotated[Principal, Requires("catalog.internals", "read", "job")],
    limit: Limit = 100,
    offset: Offset = 0,
) -> Json:
    page = await service.list_runs(conn, namespace=namespace, job=job, limit=limit, offset=offset)
    if page is None:
        raise _not_found(f"job {job!r} in namespace {namespace!r}")
    return {"runs": page[0], "totalCount": page[1]}


@router.get("/namespaces/{namespace}/jobs/{job:path}", summary="Get a job", responses=ERRORS)
async def get_job(
    namespace: Namespace,
    job: JobName,
    request: Request,
    conn: ReadConn,
    _: Annotated[Principal, Requires("catalog.discover", "read", "job")],
) -> Json:
    row = await service.get_job(conn, namespace=namespace, name=job)
    if row is None:
        raise _not_found(f"job {job!r} in namespace {namespace!r}")
    return (await _discoverable_jobs(request, conn, [row]))[0]


@router.get("/jobs/runs/{run_id}", summary="Get a run by its OpenLineage run id", responses=ERRORS)
async def get_run(
    run_id: uuid.UUID, conn: ReadConn, _: Annotated[Principal, Requires("catalog.internals", "read", "run")]
) -> Json:
    row = await service.get_run(conn, run_id=run_id)
    if row is None:
        raise _not_found(f"run {run_id}")
    return row


@router.get(
    "/events/lineage",
    summary="List stored OpenLineage events by event time",
    description="Auditors and admins: every event as stored. Engineers and stewards: the events of jobs "
    "of products whose internals they may read (their own; unowned ones) and DatasetEvents, each dataset "
    "in them by the per-dataset rule — another product's by namespace and name only unless granted, a "
    "masked-columns-only grant's with its PII columns redacted from every facet. `totalCount` counts "
    "what is listed.",
    responses=ERRORS,
)
async def list_events(
    request: Request,
    conn: ReadConn,
    principal: Annotated[Principal, Requires("events", "read")],
    before: Annotated[
        dt.datetime | None, Query(description="Only events strictly before this instant.")
    ] = None,
    after: Annotated[
        dt.datetime | None, Query(description="Only events strictly after this instant.")
    ] = None,
    sortDirection: Annotated[Literal["asc", "desc"], Query()] = "desc",
    limit: Limit = 100,
    offset: Offset = 0,
) -> Json:
    return await events_page(
        request,
        conn,
        principal,
        before=before,
        after=after,
        ascending=sortDirection == "asc",
        limit=limit,
        offset=offset,
    )


async def events_page(
    request: Request,
    conn: AsyncConnection,
    principal: Principal,
    *,
    before: dt.datetime | None,
    after: dt.datetime | None,
    ascending: bool,
    limit: int,
    offset: int,
    job_namespace: str | None = None,
) -> Json:
    """One page of the raw event log as the caller may see it (the rule of GET /events/lineage)."""
    for name, value in (("before", before), ("after", after)):
        if value is not None and value.tzinfo is None:
            raise Problem(
                "invalid-parameter", f"{name} needs a time zone (e.g. 2026-01-01T00:00:00Z)", pointer=name
            )
    everything = authoriser_of(request).allowed_everywhere()
    job_products, unowned = (None, False) if everything else readable_job_products(request, principal)
    rows, total = await service.list_events(
        conn,
        before=before,
        after=after,
        limit=limit,
        offset=offset,
        ascending=ascending,
        job_products=job_products,
        unowned_jobs=unowned,
        job_namespace=job_namespace,
    )
    if not everything:
        # Every dataset of the page decided at once, as a lineage graph decides its nodes.
        scope = await authoriser_of(request).internals_scope(
            conn, [(d["namespace"], d["name"]) for e in rows for d in event_datasets(e)]
        )
        rows = [event_as_seen(e, scope.shows, scope.sensitive) for e in rows]
    return {"events": rows, "totalCount": total}


def readable_job_products(request: Request, principal: Principal) -> tuple[list[str], bool]:
    """The products whose job internals (facets, runs — an event is a run's record) the caller may
    read, and whether it may read those of jobs of no product: the enforcer's answer per product."""
    enforcer = request.app.state.enforcer
    products = sorted(enforcer.products.current.products)
    readable = [p for p in products if enforcer.decide(principal, "catalog.internals", "read", p).allowed]
    return readable, enforcer.decide(principal, "catalog.internals", "read", UNOWNED).allowed
