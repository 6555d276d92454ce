"""Request body size limits, for every route, enforced before and while the body is read.

FastAPI and strawberry read a whole body into memory before looking at it (a 256 MiB GraphQL body was
parsed, RSS 1 GB), so the limit must sit in front of them: a declared `Content-Length` over the limit is
answered 413 without reading a byte of the body, and a body without one (chunked) is counted as it
streams in and refused as soon as it passes the limit.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from catalog.api.rest.problems import PROBLEM_MEDIA_TYPE, PROBLEM_TYPES


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes its limit. An HTTPException, so every reader
    lets it through (FastAPI re-raises it while parsing a body) and the app's handler answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds the limit of {limit} bytes")


class BodyLimitMiddleware:
    """Refuse request bodies over a per-path limit (exact paths in `limits`, else `default`)."""

    def __init__(self, app: ASGIApp, *, limits: Mapping[str, int], default: int) -> None:
        self.app = app
        self.limits = dict(limits)
        self.default = default

    def limit_for(self, scope: Scope) -> int:
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        return self.limits.get(path, self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(scope, send, f"the request body is {declared} bytes; the limit here is {limit}")
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:
            # Normally the app's handler answered already; this covers a reader that let it escape.
            if started:
                raise
            await _refuse(scope, send, str(exc.detail))


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


async def _refuse(scope: Scope, send: Send, detail: str) -> None:
    """413 problem+json; the connection is closed after it, as the unread body cannot be skipped."""
    body = orjson.dumps(
        {
            "type": "/problems/too-large",
            "title": PROBLEM_TYPES["too-large"][0],
            "status": 413,
            "detail": detail,
            "instance": scope.get("path"),
            "requestId": (scope.get("state") or {}).get("request_id"),
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
