"""RFC 9457 problem+json errors: one registry of problem types drives the handlers and the OpenAPI docs."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from catalog.api.text import path_segment_problem
from catalog.db.errors import RETRY_AFTER_SECONDS, DatabaseUnavailable, is_unavailable
from catalog.policy.enforcer import Decision
from catalog.policy.service import AccessDenied

log = logging.getLogger(__name__)

# What a database error can be raised as (the driver's own, SQLAlchemy's wrappers, sockets).
DATABASE_ERROR_CLASSES: tuple[type[Exception], ...] = (
    DatabaseUnavailable,
    SQLAlchemyError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,  # a connection whose backend was terminated (catalog/db/errors.py)
    OSError,
)

PROBLEM_MEDIA_TYPE = "application/problem+json"

# type slug -> (title, default status). The slug is stable: clients may switch on it.
PROBLEM_TYPES: dict[str, tuple[str, int]] = {
    "invalid-event": ("The OpenLineage event is invalid", 422),
    "invalid-json": ("The body is not valid JSON", 400),
    "invalid-body": ("The request body is not acceptable", 400),
    "too-large": ("The request is too large", 413),
    "too-deep": ("The event is nested too deeply", 422),
    "unsupported-encoding": ("Unsupported Content-Encoding", 415),
    "unsupported-media-type": ("Unsupported Content-Type", 415),
    "invalid-parameter": ("A request parameter is invalid", 400),
    "unauthenticated": ("Authentication required", 401),
    "forbidden": ("Not allowed", 403),
    "not-found": ("Not found", 404),
    "method-not-allowed": ("Method not allowed", 405),
    "database-unavailable": ("The database is unavailable; retry later", 503),
    "internal-error": ("Internal error", 500),
}


class ProblemModel(BaseModel):
    """The shape of every error answer (for the OpenAPI document)."""

    type: str
    title: str
    status: int
    detail: str | None = None
    pointer: str | None = None
    instance: str | None = None
    requestId: str | None = None


class Problem(Exception):
    """Raise anywhere in a request to answer with problem+json."""

    def __init__(
        self,
        slug: str,
        detail: str | None = None,
        *,
        status: int | None = None,
        pointer: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        title, default_status = PROBLEM_TYPES[slug]
        super().__init__(detail or title)
        self.slug = slug
        self.title = title
        self.status = status or default_status
        self.detail = detail
        self.pointer = pointer
        self.headers = headers or {}
        self.extra = extra or {}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the given error statuses."""
    return {
        s: {"model": ProblemModel, "content": {PROBLEM_MEDIA_TYPE: {}}, "description": _describe(s)}
        for s in statuses
    }


def _describe(status: int) -> str:
    titles = sorted({title for title, code in PROBLEM_TYPES.values() if code == status})
    return "; ".join(titles) or "Error"


def render(request: Request, problem: Problem) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"/problems/{problem.slug}",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.url.path,
        "requestId": getattr(request.state, "request_id", None),
    }
    if problem.pointer is not None:
        body["pointer"] = problem.pointer
    body.update(problem.extra)
    return JSONResponse(
        body, status_code=problem.status, headers=problem.headers, media_type=PROBLEM_MEDIA_TYPE
    )


def forbidden(decision: Decision, detail: str | None = None) -> Problem:
    """A denial as 403 problem+json naming the rule, the domain, the object and the action."""
    return Problem(
        "forbidden",
        detail or decision.describe(),
        extra={
            "rule": decision.rule,
            "domain": decision.domain,
            "object": decision.obj,
            "action": decision.act,
        },
    )


def install_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return render(request, exc)

    async def on_denied(request: Request, exc: Exception) -> JSONResponse:
        # Raised by the request's Authoriser (catalog/policy/authoriser.py), which recorded the denial.
        assert isinstance(exc, AccessDenied)
        return render(request, forbidden(exc.decision, exc.detail))

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        location = [str(p) for p in first.get("loc", ())]
        field = location[-1] if location else None
        detail = f"{'.'.join(location)}: {first.get('msg', 'invalid')}" if location else "invalid request"
        return render(request, Problem("invalid-parameter", detail, pointer=field, status=400))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code in (404, 405):
            # No route took a path with a segment that is not storable text: say that, not "not found".
            found = path_segment_problem(request.scope, {})
            if found is not None:
                return render(request, Problem("invalid-parameter", found[0], pointer=found[1]))
        slug = {
            401: "unauthenticated",
            403: "forbidden",
            404: "not-found",
            405: "method-not-allowed",
            413: "too-large",
        }.get(exc.status_code, "invalid-body")
        detail = exc.detail if isinstance(exc.detail, str) else None
        return render(request, Problem(slug, detail, status=exc.status_code, headers=dict(exc.headers or {})))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        if is_unavailable(exc):
            # The one place a database outage becomes an answer, for every route (REST and /graphql):
            # whatever the route was doing was not committed, and the same request can be sent again.
            log.warning(
                "database unavailable: %s: %s",
                type(exc).__name__,
                exc,
                extra={"request_id": getattr(request.state, "request_id", None)},
            )
            return render(request, unavailable())
        log.exception("unhandled error", extra={"request_id": getattr(request.state, "request_id", None)})
        return render(request, Problem("internal-error", "an internal error occurred; quote the requestId"))

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(AccessDenied, on_denied)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    # The classes a database error can come as get the same handler in Starlette's ExceptionMiddleware
    # (inside our middlewares, so the answer keeps its X-Request-ID and is logged); `Exception` itself
    # is handled by the outermost ServerErrorMiddleware, for anything else.
    for cls in DATABASE_ERROR_CLASSES:
        app.add_exception_handler(cls, on_unexpected)
    app.add_exception_handler(Exception, on_unexpected)


def unavailable() -> Problem:
    """503 + Retry-After: the database is down, restarting, saturated, or the connection was lost."""
    return Problem(
        "database-unavailable",
        "PostgreSQL is unavailable or the connection to it was lost; nothing was changed; retry",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
