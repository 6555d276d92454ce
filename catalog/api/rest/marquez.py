"""The rest of Marquez's API: every job, a run's facets, the event log by namespace, sources, `/stats/*`,
and Marquez's write endpoints, answered 405: this catalog is built from OpenLineage events only.

Reads apply the rules of the reads they extend (catalog.py): jobs of another product keep their name,
inputs and outputs but lose their facets and runs unless the caller may read that product's internals;
the event log and its counts list only the events GET /events/lineage lists to the same caller.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal, NoReturn
from urllib.parse import unquote

from fastapi import APIRouter, Path, Query, Request
from pydantic import AfterValidator, BeforeValidator

from catalog.api.rest.catalog import _discoverable_jobs, events_page, readable_job_products
from catalog.api.rest.deps import ReadConn
from catalog.api.rest.problems import Problem, problem_responses
from catalog.api.rest.requires import Requires, authoriser_of
from catalog.auth.service import Principal
from catalog.metadata import marquez as service

router = APIRouter(prefix="/api/v1", tags=["marquez"])

ERRORS = problem_responses(400, 401, 403, 404, 503)
REFUSED = problem_responses(401, 403, 405)
Json = dict[str, Any]

Limit = Annotated[int, Query(ge=1, le=1000, description="Page size (at most 1000).")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Rows to skip.")]
Namespace = Annotated[str, Path(description="Namespace name, URL-encoded."), AfterValidator(unquote)]
Name = Annotated[str, Path(description="Name, URL-encoded."), AfterValidator(unquote)]


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


PeriodParam = Annotated[
    service.Period,
    Query(description="DAY: the last 24 hours by hour; WEEK: the last 7 days by day."),
    BeforeValidator(_upper),
]
Timezone = Annotated[
    str | None,
    Query(max_length=64, description="IANA zone the buckets are cut in (default UTC)."),
]


# -- jobs and runs --------------------------------------------------------------------------------------


@router.get("/jobs", summary="List the jobs of every namespace", responses=ERRORS)
async def list_all_jobs(
    request: Request,
    conn: ReadConn,
    _: Annotated[Principal, Requires("catalog.discover", "read")],
    limit: Limit = 100,
    offset: Offset = 0,
    last_run_states: Annotated[
        list[str] | None,
        Query(
            alias="lastRunStates",
            description="Only jobs whose latest run is in one of these states: "
            + ", ".join(service.RUN_STATES)
            + " (NEW: never run).",
        ),
    ] = None,
) -> Json:
    states = [s.upper() for s in last_run_states or ()]
    unknown = sorted(set(states) - set(service.RUN_STATES))
    if unknown:
        raise Problem(
            "invalid-parameter",
            f"lastRunStates: {', '.join(unknown)} is not one of {', '.join(service.RUN_STATES)}",
            pointer="lastRunStates",
        )
    jobs, total = await service.list_all_jobs(conn, limit=limit, offset=offset, last_run_states=states)
    return {"jobs": await _discoverable_jobs(request, conn, jobs), "totalCount": total}


@router.get(
    "/jobs/runs/{run_id}/facets",
    summary="The facets of a run, or of its job (`type=job`)",
    responses=ERRORS,
)
async def get_run_facets(
    run_id: uuid.UUID,
    conn: ReadConn,
    _: Annotated[Principal, Requires("catalog.internals", "read", "run")],
    type: Annotated[
        Literal["run", "job"], Query(), BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v)
    ] = "run",
) -> Json:
    found = await service.run_facets(conn, run_id=run_id, kind=type)
    if found is None:
        raise Problem("not-found", f"run {run_id} not found")
    return found


# -- the event log --------------------------------------------------------------------------------------


@router.get(
    "/events",
    summary="List stored OpenLineage events, newest first",
    description="Marquez's EventResource: the rule and shape of GET /events/lineage.",
    responses=ERRORS,
)
async def list_events(
    request: Request,
    conn: ReadConn,
    principal: Annotated[Principal, Requires("events", "read")],
    limit: Limit = 100,
    offset: Offset = 0,
) -> Json:
    return await events_page(
        request, conn, principal, before=None, after=None, ascending=False, limit=limit, offset=offset
    )


@router.get(
    "/events/{namespace}",
    summary="List stored OpenLineage events of the jobs of a namespace, newest first",
    description="Marquez's EventResource: the rule and shape of GET /events/lineage, only events whose "
    "job is in the namespace (a namespace named `lineage` is served by GET /events/lineage).",
    responses=ERRORS,
)
async def list_namespace_events(
    namespace: Namespace,
    request: Request,
    conn: ReadConn,
    principal: Annotated[Principal, Requires("events", "read")],
    limit: Limit = 100,
    offset: Offset = 0,
) -> Json:
    return await events_page(
        request,
        conn,
        principal,
        before=None,
        after=None,
        ascending=False,
        limit=limit,
        offset=offset,
        job_namespace=namespace,
    )


# -- sources --------------------------------------------------------------------------------------------

SOURCES_NOTE = (
    "Sources are the `dataSource` facets of datasets: the facet's name (its URI when unnamed), the type "
    "from the URI scheme, the most recent URI with credentials masked. A dataset's facets are its "
    "product's internals: a source shows from the datasets whose internals the caller may read."
)


def _readable(request: Request, principal: Principal) -> service.Readable | None:
    """What the caller may read the internals of, by product; None: every product's (auditor, admin)."""
    if authoriser_of(request).allowed_everywhere():
        return None
    products, unowned = readable_job_products(request, principal)
    return service.Readable(products, unowned)


@router.get("/sources", summary="List data sources", description=SOURCES_NOTE, responses=ERRORS)
async def list_sources(
    request: Request,
    conn: ReadConn,
    principal: Annotated[Principal, Requires("catalog.discover", "read")],
    limit: Limit = 100,
    offset: Offset = 0,
) -> Json:
    rows, total = await service.list_sources(
        conn, limit=limit, offset=offset, readable=_readable(request, principal)
    )
    return {"sources": rows, "totalCount": total}


@router.get("/sources/{source}", summary="Get a data source", description=SOURCES_NOTE, responses=ERRORS)
async def get_source(
    source: Name,
    request: Request,
    conn: ReadConn,
    principal: Annotated[Principal, Requires("catalog.discover", "read")],
) -> Json:
    row = await service.get_source(conn, source, readable=_readable(request, principal))
    if row is None:
        raise Problem("not-found", f"source {source!r} not found")
    return row


# -- stats ----------------------------------------------------------------------------------------------


def _zone(timezone: str | None) -> str:
    try:
        return service.zone(timezone)
    except service.UnknownTimezone:
        raise Problem(
            "invalid-parameter", f"timezone {timezone!r} is not an IANA time zone", pointer="timezone"
        ) from None


@router.get(
    "/stats/lineage-events",
    summary="START/COMPLETE/FAIL/ABORT events per hour (DAY) or per day (WEEK)",
    description="Counts the events GET /events/lineage would list to the caller.",
    responses=ERRORS,
)
async def lineage_event_stats(
    request: Request,
    conn: ReadConn,
    principal: Annotated[Principal, Requires("events", "read")],
    period: PeriodParam,
    timezone: Timezone = None,
) -> list[Json]:
    return await service.lineage_event_stats(
        conn, period=period, tz=_zone(timezone), readable=_readable(request, principal)
    )


GROWTH = "How many {0} existed at the end of each hour (DAY) or day (WEEK)"


@router.get("/stats/jobs", summary=GROWTH.format("jobs"), responses=ERRORS)
async def job_stats(
    conn: ReadConn,
    _: Annotated[Principal, Requires("catalog.discover", "read")],
    period: PeriodParam,
    timezone: Timezone = None,
) -> list[Json]:
    return await service.growth_stats(conn, entity="jobs", period=period, tz=_zone(timezone))


@router.get("/stats/datasets", summary=GROWTH.format("datasets"), responses=ERRORS)
async def dataset_stats(
    conn: ReadConn,
    _: Annotated[Principal, Requires("catalog.discover", "read")],
    period: PeriodParam,
    timezone: Timezone = None,
) -> list[Json]:
    return await service.growth_stats(conn, entity="datasets", period=period, tz=_zone(timezone))


@router.get(
    "/stats/sources",
    summary=GROWTH.format("sources"),
    description="Counts the sources GET /sources lists to the caller.",
    responses=ERRORS,
)
async def source_stats(
    request: Request,
    conn: ReadConn,
    principal: Annotated[Principal, Requires("catalog.discover", "read")],
    period: PeriodParam,
    timezone: Timezone = None,
) -> list[Json]:
    return await service.growth_stats(
        conn, entity="sources", period=period, tz=_zone(timezone), readable=_readable(request, principal)
    )


# -- Marquez's writes: refused ----------------------------------------------------------------------------

OPENLINEAGE_ONLY = (
    "{what} cannot be written here: this catalog is built only from OpenLineage events; send them to "
    "POST /api/v1/lineage (or POST /api/v1/lineage/batch)"
)


def _refuse(what: str, allow: str = "GET") -> NoReturn:
    raise Problem("method-not-allowed", OPENLINEAGE_ONLY.format(what=what), headers={"Allow": allow})


@router.put(
    "/namespaces/{namespace}",
    summary="Not supported: send OpenLineage events",
    responses=REFUSED,
    deprecated=True,
)
async def put_namespace(
    namespace: Namespace, _: Annotated[Principal, Requires("lineage.event", "write", "namespace")]
) -> None:
    _refuse("a namespace")


@router.delete(
    "/namespaces/{namespace}",
    summary="Not supported: send OpenLineage events",
    responses=REFUSED,
    deprecated=True,
)
async def delete_namespace(
    namespace: Namespace, _: Annotated[Principal, Requires("lineage.event", "write", "namespace")]
) -> None:
    _refuse("a namespace")


@router.put(
    "/sources/{source}", summary="Not supported: send OpenLineage events", responses=REFUSED, deprecated=True
)
async def put_source(source: Name, _: Annotated[Principal, Requires("lineage.event", "write")]) -> None:
    _refuse("a source (a dataset's `dataSource` facet)")


@router.put(
    "/namespaces/{namespace}/datasets/{dataset:path}",
    summary="Not supported: send OpenLineage events",
    responses=REFUSED,
    deprecated=True,
)
async def put_dataset(
    namespace: Namespace,
    dataset: Name,
    _: Annotated[Principal, Requires("lineage.event", "write", "dataset")],
) -> None:
    _refuse("a dataset")


@router.delete(
    "/namespaces/{namespace}/datasets/{dataset}",
    summary="Not supported: send OpenLineage events",
    responses=REFUSED,
    deprecated=True,
)
async def delete_dataset(
    namespace: Namespace,
    dataset: Name,
    _: Annotated[Principal, Requires("lineage.event", "write", "dataset")],
) -> None:
    _refuse("a dataset (a `lifecycleStateChange: DROP` facet marks it dropped)")


@router.put(
    "/namespaces/{namespace}/jobs/{job:path}",
    summary="Not supported: send OpenLineage events",
    responses=REFUSED,
    deprecated=True,
)
async def put_job(
    namespace: Namespace, job: Name, _: Annotated[Principal, Requires("lineage.event", "write", "job")]
) -> None:
    _refuse("a job")


@router.delete(
    "/namespaces/{namespace}/jobs/{job}",
    summary="Not supported: send OpenLineage events",
    responses=REFUSED,
    deprecated=True,
)
async def delete_job(
    namespace: Namespace, job: Name, _: Annotated[Principal, Requires("lineage.event", "write", "job")]
) -> None:
    _refuse("a job")


@router.post(
    "/namespaces/{namespace}/jobs/{job}/runs",
    summary="Not supported: send OpenLineage events",
    responses=REFUSED,
    deprecated=True,
)
async def create_run(
    namespace: Namespace, job: Name, _: Annotated[Principal, Requires("lineage.event", "write", "job")]
) -> None:
    _refuse("a run (a START event creates it)")


RunAction = Literal["start", "complete", "fail", "abort"]


@router.post(
    "/jobs/runs/{run_id}/{action}",
    summary="Not supported: send OpenLineage events (START/COMPLETE/FAIL/ABORT)",
    responses=REFUSED,
    deprecated=True,
)
async def mark_run(
    run_id: uuid.UUID, action: RunAction, _: Annotated[Principal, Requires("lineage.event", "write", "run")]
) -> None:
    event = {"start": "START", "complete": "COMPLETE", "fail": "FAIL", "abort": "ABORT"}[action]
    _refuse(f"a run's state (send a {event} event for the run)", allow="")


JOB_TAG = "/namespaces/{namespace}/jobs/{job}/tags/{tag}"
JOB_TAG_SUMMARY = "Not supported: a job's tags come from its `tags` facet"
JOB_TAGS_REFUSED = "a job's tags (send the job's `tags` facet in an event)"


@router.post(JOB_TAG, summary=JOB_TAG_SUMMARY, responses=REFUSED, deprecated=True)
async def tag_job(
    namespace: Namespace,
    job: Name,
    tag: Name,
    _: Annotated[Principal, Requires("lineage.event", "write", "job")],
) -> None:
    _refuse(JOB_TAGS_REFUSED, allow="")


@router.patch(JOB_TAG, summary=JOB_TAG_SUMMARY, responses=REFUSED, deprecated=True)
async def patch_job_tag(
    namespace: Namespace,
    job: Name,
    tag: Name,
    _: Annotated[Principal, Requires("lineage.event", "write", "job")],
) -> None:
    _refuse(JOB_TAGS_REFUSED, allow="")


@router.delete(JOB_TAG, summary=JOB_TAG_SUMMARY, responses=REFUSED, deprecated=True)
async def untag_job(
    namespace: Namespace,
    job: Name,
    tag: Name,
    _: Annotated[Principal, Requires("lineage.event", "write", "job")],
) -> None:
    _refuse(JOB_TAGS_REFUSED, allow="")
