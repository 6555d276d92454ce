"""Parameters that are not storable text (catalog/api/text.py), answered with a 400 problem+json: the
middleware that refuses query parameters and marks bad path segments before routing, and the route
dependency that names the marked path parameter."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from catalog.api.paths import routing_path
from catalog.api.rest.problems import PROBLEM_MEDIA_TYPE, PROBLEM_TYPES, Problem
from catalog.api.text import BAD_SEGMENTS, mark_segments, path_defects, path_segment_problem, query_defects


class ParameterTextMiddleware:
    """400 problem+json for a path segment or query parameter that is not storable text (see catalog/api/text.py).

    Query parameters are refused here; a bad path segment is marked for the route's dependency (or for
    the 404/405 handler when no route takes the path), which refuses it by its parameter name."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query: bytes = scope.get("query_string") or b""
            for name, detail in query_defects(query) if query else ():
                await _refuse(scope, send, detail, name)
                return
            raw_path: bytes = (scope.get("raw_path") or scope["path"].encode()).split(b"?", 1)[0]
            defects = path_defects(raw_path) if b"%" in raw_path else {}
            if defects:
                marked = mark_segments(raw_path, defects)
                scope = dict(scope, raw_path=marked, path=routing_path(marked.decode("latin-1")))
                scope.setdefault("state", {})[BAD_SEGMENTS] = defects
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, send: Send, detail: str, parameter: str) -> None:
    body = orjson.dumps(
        {
            "type": "/problems/invalid-parameter",
            "title": PROBLEM_TYPES["invalid-parameter"][0],
            "status": 400,
            "detail": detail,
            "pointer": parameter,
            "instance": scope.get("raw_path", b"").decode("latin-1") or scope.get("path"),
            "requestId": (scope.get("state") or {}).get("request_id"),
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def reject_marked_path_parameters(request: Request) -> None:
    """A dependency of every route: a path parameter holding a marked segment is a 400 naming it."""
    found = path_segment_problem(request.scope, request.path_params)
    if found is not None:
        detail, parameter = found
        raise Problem("invalid-parameter", detail, pointer=parameter)
