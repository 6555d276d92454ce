"""A direct lane for `POST /api/v1/lineage`: what OpenLineage's HTTP transport sends, one event a request,
the hottest request the service answers.

FastAPI's routing, dependency solving and exception middleware were over a third of such a request's CPU
(py-spy on `catalog serve`, single events): more than validating, redacting and appending the event; the
lane took the server's CPU per single event from 0.40 to 0.29 ms (`bench/ingest.py`'s load). This
middleware, the innermost of the app's own (so request ids, the request log, body limits, the text
guard, the write-position header and the HTTP metrics all apply as to any request), hands the request
straight to the route's own access dependency and handler, and answers their errors through the app's own
exception handlers, as Starlette's exception middleware would. Nothing is declared twice: the route (its
OpenAPI entry, its `Requires`) stays where it is, and the lane reads it from the app.

Only the ordinary case takes the lane: POST to exactly that path with no query or only `wait=logged` /
`wait=projected`. Anything else (another query parameter, an invalid `wait`) goes the normal way, so every
answer stays FastAPI's. The lane refuses to start if the route grows a dependency or parameter it does
not know, rather than skip it silently (tests/rest/test_ingest_lane.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from catalog.api.rest import ingest as ingest_routes
from catalog.api.rest.deps import bearer
from catalog.api.rest.ingest import WaitFor
from catalog.api.rest.requires import iter_routes
from catalog.api.text_guard import reject_marked_path_parameters

# The route's dependencies the lane may leave out, and why it may: its path has no parameters to guard,
# and a `Catalog-Position` read wait never applies to an ingest (`await_requested_position` returns at once).
NOT_NEEDED = frozenset({reject_marked_path_parameters, ingest_routes.await_requested_position})
# The query strings the lane takes, and the `wait` each means.
WAITS: dict[bytes, WaitFor | None] = {b"": None, b"wait=logged": "logged", b"wait=projected": "projected"}

Handler = Callable[[Request, Any], Response | Awaitable[Response]]


class IngestLane:
    """What the lane calls, read once from the app: the route's access dependency and the app's handlers."""

    def __init__(self, app: FastAPI) -> None:
        route = next(
            (
                r
                for r in iter_routes(app.routes)
                if isinstance(r, APIRoute)
                and r.path == ingest_routes.SINGLE_PATH
                and "POST" in (r.methods or ())
            ),
            None,
        )
        if route is None or route.endpoint is not ingest_routes.ingest_event:
            raise RuntimeError(f"the ingest lane found no POST {ingest_routes.SINGLE_PATH} route")
        access = [d.call for d in route.dependant.dependencies if hasattr(d.call, "route_policy")]
        unknown = [
            d.call
            for d in route.dependant.dependencies
            if d.call not in NOT_NEEDED and not hasattr(d.call, "route_policy")
        ]
        queries = [q.name for q in route.dependant.query_params]
        if len(access) != 1 or unknown or queries != ["wait"] or route.dependant.body_params:
            raise RuntimeError(
                f"POST {ingest_routes.SINGLE_PATH} changed its dependencies or parameters; "
                "teach catalog/api/rest/ingest_lane.py about them"
            )
        self.access = cast(Callable[..., Awaitable[Any]], access[0])
        # As Starlette's ExceptionMiddleware holds them: by class and by HTTP status; `Exception` (and
        # 500) stay with the outermost ServerErrorMiddleware, which the lane lets them reach.
        self.by_class: dict[type[BaseException], Handler] = {}
        self.by_status: dict[int, Handler] = {}
        for key, handler in app.exception_handlers.items():
            if isinstance(key, int):
                if key != 500:
                    self.by_status[key] = handler
            elif key is not Exception:
                self.by_class[key] = handler

    def handler_for(self, exc: Exception) -> Handler | None:
        if isinstance(exc, StarletteHTTPException) and exc.status_code in self.by_status:
            return self.by_status[exc.status_code]
        for cls in type(exc).__mro__:
            if cls in self.by_class:
                return self.by_class[cls]
        return None


class IngestLaneMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.lane: IngestLane | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or _route_path(scope) != ingest_routes.SINGLE_PATH
            or (query := scope.get("query_string", b"")) not in WAITS
        ):
            await self.app(scope, receive, send)
            return
        if self.lane is None:
            self.lane = IngestLane(scope["app"])
        request = Request(scope, receive, send)
        try:
            principal = await self.lane.access(request=request, credentials=await bearer(request))
            response: Response = await ingest_routes.ingest_event(request, principal, WAITS[query])
        except Exception as exc:
            handler = self.lane.handler_for(exc)
            if handler is None:
                raise
            answer = handler(request, exc)
            response = await answer if inspect.isawaitable(answer) else answer
            exc.__traceback__ = None  # as Starlette does: a reused exception would keep growing it
        await response(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path routes are matched against (without the root path a proxy mounts the service under)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path
