"""POST /api/v1/lineage (what OpenLineage's HTTP transport sends), the spec's batch endpoint, the ingest
status, and the wait for freshness.

An ingest is answered once its events are durably in the event log (201): the projector folds them into
the catalog moments later (catalog/ingest/projector.py). The answer carries the log position
(`Catalog-Position` header, `position` member); a request that sends `Catalog-Position` back is served
once the projector has passed it (bounded by `read_wait_seconds`), so a client reads its own writes;
`?wait=projected` makes the ingest answer itself wait for its events to be projected."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from catalog.api.consistency import PROJECTED_LSN, READ_METHODS
from catalog.api.rest.problems import Problem, problem_responses, unavailable
from catalog.api.rest.requires import Requires, authoriser_of
from catalog.auth.service import Principal
from catalog.db.engine import raw_connection
from catalog.db.errors import DatabaseUnavailable
from catalog.db.replica import ReadRouter, current_lsn
from catalog.ingest import projector
from catalog.ingest.projector import Watermark
from catalog.ingest.projector_process import ProjectorProcess
from catalog.ingest.writer import Accepted, IngestWriter
from catalog.metrics import count_events
from catalog.openlineage.body import decode_body, load_json, split_batch
from catalog.openlineage.events import EventRejected, OpenLineageEvent
from catalog.openlineage.validation import parse_event
from catalog.policy.authoriser import Authoriser
from catalog.policy.service import AccessDenied

PREFIX = "/api/v1"
router = APIRouter(prefix=PREFIX, tags=["ingest"])
SINGLE_PATH = f"{PREFIX}/lineage"
BATCH_PATH = f"{PREFIX}/lineage/batch"
POSITION_HEADER = "Catalog-Position"  # a log position: on ingest answers; sent back by readers to wait
PROJECTED_HEADER = "Catalog-Projected"  # how far the projection was when a waiting request was served

WaitFor = Literal["logged", "projected"]
WaitQuery = Annotated[
    WaitFor | None,
    Query(
        description="`logged` (the default unless the service is configured otherwise): answer once the "
        "events are durably in the event log. `projected`: also wait (bounded) until the projector has "
        "folded them into the catalog, so findings and classifications are there; `projected` in the "
        "answer says whether it happened in time."
    ),
]


class IngestResult(BaseModel):
    status: Literal["created", "duplicate"]
    position: int  # the event's place in the log; send it back as `Catalog-Position` to read it
    projected: bool | None = None  # with ?wait=projected: whether it was projected within the wait


class BatchSummary(BaseModel):
    received: int
    successful: int
    failed: int
    retriable: int
    non_retriable: int


class FailedEvent(BaseModel):
    index: int
    reason: str
    retriable: bool
    pointer: str | None = None


class BatchResult(BaseModel):
    """The OpenLineage spec's batch answer (spec 2-0-2, November 2025), plus `duplicates`."""

    status: Literal["success", "partial_success", "failure"]
    summary: BatchSummary
    failed_events: list[FailedEvent]
    duplicates: int
    position: int  # the furthest log position of the batch's events (0: none stored or known)
    projected: bool | None = None  # with ?wait=projected: whether they were projected within the wait


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes `limit` bytes (before it is all read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem("too-large", f"the body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem("too-large", f"the body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _problem(exc: EventRejected) -> Problem:
    slug = (
        exc.type_
        if exc.type_ in {"invalid-event", "invalid-json", "too-large", "too-deep"}
        else "invalid-body"
    )
    if exc.status == 415:
        slug = "unsupported-encoding"
    return Problem(slug, exc.detail, status=exc.status, pointer=exc.pointer)


async def _decoded(request: Request, limit: int) -> bytes:
    body = await read_body(request, limit)
    try:
        return decode_body(body, request.headers.get("content-encoding"), max_decompressed=limit)
    except EventRejected as exc:
        raise _problem(exc) from exc


def parse_sent(item: Any, authoriser: Authoriser) -> OpenLineageEvent:
    """`parse_event`, the event marked with the product and id of the key that sent it (stored with it):
    whose view of a dataset its facets are is judged by that product (catalog/ingest/extract.py)."""
    assert authoriser.principal is not None
    return parse_event(item, emitter=authoriser.emitting_product(), emitter_key=authoriser.principal.key_id)


async def _submit(writer: IngestWriter, events: list[OpenLineageEvent]) -> Accepted:
    """Stored once committed: the answer is sent only after the events are durable."""
    try:
        return await writer.submit(events)
    except DatabaseUnavailable as exc:
        raise unavailable() from exc
    except EventRejected as exc:  # a value PostgreSQL refused (see IngestWriter)
        raise _problem(exc) from exc


@router.post(
    "/lineage",
    status_code=201,
    response_model=IngestResult,
    summary="Ingest one OpenLineage event",
    description=(
        "Accepts a RunEvent, DatasetEvent or JobEvent (spec 2.x) exactly as the OpenLineage HTTP transport "
        "sends it (`Content-Encoding: gzip` supported). Stored once: a retried event answers `duplicate`. "
        "Secrets in URIs and facets are redacted before anything is stored."
    ),
    responses=problem_responses(400, 401, 413, 415, 422, 503),
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
    },
)
async def ingest_event(
    request: Request,
    principal: Annotated[Principal, Requires("lineage.event", "write", "own")],
    wait: WaitQuery = None,
) -> Response:
    settings = request.app.state.settings
    try:
        body = await _decoded(request, settings.max_body_bytes)
        authoriser = authoriser_of(request)
        try:
            event = parse_sent(load_json(body), authoriser)
        except EventRejected as exc:
            raise _problem(exc) from exc
        await authoriser.require_events([event])
        accepted = await _submit(request.app.state.writer, [event])
    except AccessDenied:
        count_events(rejected=1)
        raise
    except Problem as refused:
        if refused.status < 500:  # a 503 is "try again", not a verdict on the event
            count_events(rejected=1)
        raise
    count_events(accepted=accepted.stored, duplicate=accepted.duplicates)
    answer: dict[str, Any] = {
        "status": "created" if accepted.stored else "duplicate",
        "position": accepted.position,
    }
    projected = await _await_projection(request, wait, accepted.position)
    if projected is not None:
        answer["projected"] = projected
    # orjson: the standard library's encoder was 2 % of a single-event ingest's CPU (py-spy).
    return Response(
        orjson.dumps(answer),
        status_code=201,
        media_type="application/json",
        headers={POSITION_HEADER: str(accepted.position)},
    )


async def _await_projection(request: Request, wait: WaitFor | None, position: int) -> bool | None:
    """With `?wait=projected` (or that default): whether the projector passed `position` in time."""
    settings = request.app.state.settings
    if (wait or settings.ingest_default_wait) != "projected":
        return None
    watermark: Watermark = request.app.state.watermark
    return await watermark.wait_for(position, settings.ingest_wait_seconds)


@router.post(
    "/lineage/batch",
    response_model=BatchResult,
    summary="Ingest many OpenLineage events",
    description=(
        "A JSON array of events (the OpenLineage spec's batch form) or NDJSON (`Content-Type: "
        "application/x-ndjson`, one event a line, the file transport's output). Valid events are stored in "
        "one transaction; invalid ones are listed in `failed_events` with the JSON pointer that is wrong."
    ),
    responses=problem_responses(400, 401, 413, 415, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    },
)
async def ingest_batch(
    request: Request,
    principal: Annotated[Principal, Requires("lineage.event", "write", "own")],
    response: Response,
    wait: WaitQuery = None,
) -> BatchResult:
    settings = request.app.state.settings
    body = await _decoded(request, settings.max_batch_bytes)
    try:
        items = split_batch(body, request.headers.get("content-type"))
    except EventRejected as exc:
        raise _problem(exc) from exc
    if len(items) > settings.max_batch_events:
        raise Problem(
            "too-large", f"{len(items)} events in one batch; the limit is {settings.max_batch_events}"
        )
    authoriser = authoriser_of(request)
    events: list[OpenLineageEvent] = []
    failed: list[FailedEvent] = []
    for index, item in enumerate(items):
        try:
            if isinstance(item, EventRejected):
                raise item
            events.append(parse_sent(item, authoriser))
        except EventRejected as exc:
            failed.append(FailedEvent(index=index, reason=exc.detail, retriable=False, pointer=exc.pointer))
    accepted = Accepted(0, 0, 0)
    try:
        await authoriser.require_events(events)
        if events:
            accepted = await _submit(request.app.state.writer, events)
    except AccessDenied:  # one denied event refuses the batch: all its events are rejected
        count_events(rejected=len(items))
        raise
    except Problem as refused:
        if refused.status < 500:
            count_events(rejected=len(items))
        raise
    ok = len(events)
    count_events(accepted=accepted.stored, duplicate=accepted.duplicates, rejected=len(failed))
    projected = await _await_projection(request, wait, accepted.position)
    response.headers[POSITION_HEADER] = str(accepted.position)
    status: Any = "success" if not failed else ("partial_success" if ok else "failure")
    return BatchResult(
        status=status,
        summary=BatchSummary(
            received=len(items), successful=ok, failed=len(failed), retriable=0, non_retriable=len(failed)
        ),
        failed_events=failed,
        duplicates=accepted.duplicates,
        position=accepted.position,
        projected=projected,
    )


class IngestStatus(BaseModel):
    """How far the projector has folded the event log into the catalog."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    position: int  # the last log position folded (or set aside)
    head: int  # the last position in the log
    lag_events: int  # events logged and not yet folded
    lag_seconds: float  # how long the oldest of them has waited (0: none)
    set_aside: int  # events that failed to fold, kept aside with their error (`catalog projector retry`)
    last_error: str | None  # the latest error that set an event aside (admin and auditor keys only)
    last_error_at: dt.datetime | None
    updated_at: dt.datetime  # when the position last moved
    projector_here: bool  # whether the active projector is this service process's own (process or thread)
    # `<host>:<pid>` of the process projecting now, whichever process answers (null: none holds the
    # lock this instant, e.g. during a failover; admin and auditor keys only)
    projector: str | None = None
    # whether the active projector is this process's own and folds only a share of the time now, this
    # process being CPU-bound accepting (CATALOG_PROJECTOR_BUSY_SHARE): why the lag grows under a burst
    yielding_to_acceptance: bool = False


@router.get(
    "/ingest/status",
    response_model=IngestStatus,
    response_model_by_alias=True,
    summary="How far the projection is behind the event log",
    responses=problem_responses(401, 403, 503),
)
async def ingest_status(
    request: Request, principal: Annotated[Principal, Requires("catalog.discover", "read", "global")]
) -> IngestStatus:
    async with request.app.state.engine.connect() as conn:
        state = await projector.status(await raw_connection(conn))
    request.app.state.watermark.advance(state.position)
    # An error text may quote an event's values, and hosts are the operators' business: only roles
    # that read every product see them.
    operator = principal.role in ("admin", "auditor")
    return IngestStatus(
        position=state.position,
        head=state.head,
        lag_events=state.lag_events,
        lag_seconds=round(state.lag_seconds, 3),
        set_aside=state.set_aside,
        last_error=state.last_error if operator else None,
        last_error_at=state.last_error_at,
        updated_at=state.updated_at,
        projector_here=request.app.state.projector.leading,
        projector=state.projector if operator else None,
        yielding_to_acceptance=isinstance(request.app.state.projector, ProjectorProcess)
        and request.app.state.projector.yielding,
    )


async def await_requested_position(request: Request, response: Response) -> None:
    """An app-wide dependency: a request carrying `Catalog-Position` (the client's last ingest answer) is
    served once the projector has passed it, or after `read_wait_seconds` anyway; `Catalog-Projected`
    on the answer tells how far the projection was."""
    given = request.headers.get(POSITION_HEADER)
    if given is None or request.url.path in (SINGLE_PATH, BATCH_PATH):
        return
    if not given.strip().isdigit() or len(given.strip()) > 19:
        raise Problem(
            "invalid-parameter",
            f"{POSITION_HEADER} must be a log position (a non-negative integer); got {given[:40]!r}",
            status=400,
            pointer=POSITION_HEADER,
        )
    watermark: Watermark | None = getattr(request.app.state, "watermark", None)
    if watermark is None:
        return
    await watermark.wait_for(int(given), request.app.state.settings.read_wait_seconds)
    response.headers[PROJECTED_HEADER] = str(watermark.position)
    router: ReadRouter | None = getattr(request.app.state, "read", None)
    if router is not None and router.has_replica and request.method in READ_METHODS:
        # The replica must have replayed the projection too, not only the ingest (Catalog-LSN).
        setattr(request.state, PROJECTED_LSN, await current_lsn(router.primary))
