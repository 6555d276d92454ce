"""Request dependencies: the authenticated principal and a read connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.api.consistency import READ_METHODS, requested_lsn
from catalog.api.rest.problems import Problem
from catalog.auth.service import Authenticator, Principal
from catalog.db.engine import lost_connection_guard
from catalog.db.replica import ReadRouter

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer cat_<id>_<secret>`.")

UNAUTHENTICATED = {"WWW-Authenticate": 'Bearer realm="catalog"'}


async def require_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    """Authentication: no valid key, no answer. Routes depend on it through what they declare they
    need (`Requires`, catalog/api/rest/requires.py), which then authorises."""
    if credentials is None or not credentials.credentials:
        raise Problem(
            "unauthenticated",
            "send an API key as `Authorization: Bearer <key>` (create one with `catalog keys create`)",
            headers=UNAUTHENTICATED,
        )
    authenticator: Authenticator = request.app.state.authenticator
    # A database that is down answers 503 through the app's handler (catalog/api/rest/problems.py).
    principal = await authenticator.authenticate(credentials.credentials)
    if principal is None:
        raise Problem(
            "unauthenticated", "the API key is unknown, revoked or expired", headers=UNAUTHENTICATED
        )
    request.state.principal = principal
    return principal


async def read_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    """A connection in a read-only transaction for the duration of the request. A database that is
    down, or a connection lost mid-request, answers 503 through the app's handler (problems.py).

    GET handlers read here, so with CATALOG_READ_DATABASE_URL they read on the replica, no older than
    the request's `Catalog-LSN` (catalog/db/replica.py). Write handlers open their own transaction
    on the primary engine; the principal and its grants were checked on the primary before this."""
    router: ReadRouter = request.app.state.read
    conn = await (
        router.connect(after=requested_lsn(request))
        if request.method in READ_METHODS
        else request.app.state.engine.connect()
    )
    try:
        async with lost_connection_guard(conn), conn.begin():
            yield conn
    finally:
        await conn.close()


# scope="function": the connection goes back to the pool before the response is sent.
ReadConn = Annotated[AsyncConnection, Depends(read_connection, scope="function")]
