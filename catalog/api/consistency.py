"""Read-your-writes across the primary and its replicas: every successful write answer carries the
primary's WAL position as `Catalog-LSN`; a read that sends it back is served no older than that
(catalog/db/replica.py decides where it is served)."""

from __future__ import annotations

import logging

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from catalog.api.rest.problems import Problem
from catalog.db.replica import LSN_HEADER, InvalidLsn, ReadRouter, current_lsn, parse_lsn

log = logging.getLogger("catalog.http")

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Set in the request's state by a POST that turned out to write nothing (a GraphQL query document).
READ_ONLY_FLAG = "catalog_read_only"


def mark_read_only(request: Request) -> None:
    """This POST writes nothing: its answer needs no Catalog-LSN (saves a primary round trip)."""
    setattr(request.state, READ_ONLY_FLAG, True)


# Set by the wait for the projector (catalog/api/rest/ingest.py): the primary's WAL position once the
# projection passed the request's Catalog-Position, so a replica serves no older than that projection.
PROJECTED_LSN = "catalog_projected_lsn"


def requested_lsn(request: Request) -> str | None:
    """The request's read-your-writes token; a malformed one is a 400 naming the header."""
    given = _checked(request.headers.get(LSN_HEADER))
    projected: str | None = getattr(request.state, PROJECTED_LSN, None)
    # Read on the primary after every write the header stands for: at or past them.
    return projected if projected is not None else given


def _checked(value: str | None) -> str | None:
    try:
        return parse_lsn(value)
    except InvalidLsn as exc:
        raise Problem("invalid-parameter", str(exc), status=400, pointer=LSN_HEADER) from None


class WritePositionMiddleware:
    """On a successful non-GET answer, add the primary's WAL position (`Catalog-LSN`).

    The position is read when the answer starts, i.e. after the handler's transaction committed, so it
    covers the write. Only with a replica configured: without one every read is on the primary anyway.
    A POST /graphql that held only queries is marked by the GraphQL context (`mark_read_only`) and skipped.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in READ_METHODS:
            await self.app(scope, receive, send)
            return
        router: ReadRouter | None = getattr(scope["app"].state, "read", None)
        if router is None or not router.has_replica:
            await self.app(scope, receive, send)
            return

        async def send_with_position(message: Message) -> None:
            read_only = scope.get("state", {}).get(READ_ONLY_FLAG, False)
            if message["type"] == "http.response.start" and message["status"] < 400 and not read_only:
                try:
                    lsn = await current_lsn(router.primary)
                except Exception as exc:
                    # The write is done; an answer without the token only loses read-your-writes.
                    log.warning("no %s on this answer: %s", LSN_HEADER, type(exc).__name__)
                else:
                    message.setdefault("headers", []).append((LSN_HEADER.lower().encode(), lsn.encode()))
            await send(message)

        await self.app(scope, receive, send_with_position)
