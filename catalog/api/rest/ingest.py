"""POST /api/v1/lineage (what OpenLineage's HTTP transport sends) and the spec's batch endpoint."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from catalog.api.rest.problems import Problem, problem_responses, unavailable
from catalog.api.rest.requires import Requires, authoriser_of
from catalog.auth.service import Principal
from catalog.db.errors import DatabaseUnavailable
from catalog.ingest.writer import IngestWriter
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


class IngestResult(BaseModel):
    status: Literal["created", "duplicate"]


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


def sent_by(authoriser: Authoriser, event: OpenLineageEvent) -> OpenLineageEvent:
    """The event marked with the product of the key that sent it (stored with it): whose view of a
    dataset its facets are is judged by it (catalog/ingest/extract.py)."""
    assert authoriser.principal is not None
    return replace(event, emitter=authoriser.emitting_product(), emitter_key=authoriser.principal.key_id)


async def _submit(writer: IngestWriter, events: list[OpenLineageEvent]) -> tuple[int, int]:
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
    request: Request, principal: Annotated[Principal, Requires("lineage.event", "write", "own")]
) -> JSONResponse:
    settings = request.app.state.settings
    try:
        body = await _decoded(request, settings.max_body_bytes)
        try:
            event = parse_event(load_json(body))
        except EventRejected as exc:
            raise _problem(exc) from exc
        await authoriser_of(request).require_events([event])
        stored, _ = await _submit(request.app.state.writer, [sent_by(authoriser_of(request), event)])
    except AccessDenied:
        count_events(rejected=1)
        raise
    except Problem as refused:
        if refused.status < 500:  # a 503 is "try again", not a verdict on the event
            count_events(rejected=1)
        raise
    count_events(accepted=stored, duplicate=1 - stored)
    return JSONResponse({"status": "created" if stored else "duplicate"}, status_code=201)


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
    request: Request, principal: Annotated[Principal, Requires("lineage.event", "write", "own")]
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
    events: list[OpenLineageEvent] = []
    failed: list[FailedEvent] = []
    for index, item in enumerate(items):
        try:
            if isinstance(item, EventRejected):
                raise item
            events.append(parse_event(item))
        except EventRejected as exc:
            failed.append(FailedEvent(index=index, reason=exc.detail, retriable=False, pointer=exc.pointer))
    stored = duplicates = 0
    try:
        await authoriser_of(request).require_events(events)
        if events:
            stored, duplicates = await _submit(
                request.app.state.writer, [sent_by(authoriser_of(request), e) for e in events]
            )
    except AccessDenied:  # one denied event refuses the batch: all its events are rejected
        count_events(rejected=len(items))
        raise
    except Problem as refused:
        if refused.status < 500:
            count_events(rejected=len(items))
        raise
    ok = len(events)
    count_events(accepted=stored, duplicate=duplicates, rejected=len(failed))
    status: Any = "success" if not failed else ("partial_success" if ok else "failure")
    return BatchResult(
        status=status,
        summary=BatchSummary(
            received=len(items), successful=ok, failed=len(failed), retriable=0, non_retriable=len(failed)
        ),
        failed_events=failed,
        duplicates=duplicates,
    )
