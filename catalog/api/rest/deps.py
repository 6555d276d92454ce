"""Request dependencies: the authenticated principal, a read connection and a write transaction.

Every route reaches the database through one of the two connection dependencies (never the engine
itself), so a database that is down, or a connection lost mid-request, always answers 503 through the
app's one handler for it (catalog/api/rest/problems.py, classified by catalog/db/errors.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.api.consistency import READ_METHODS, requested_lsn
from catalog.api.rest.problems import Problem
from catalog.auth.service import Authenticator, Principal
from catalog.db.engine import guarded_transaction
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
    """A connection in a transaction for the duration of the request, for reading.

    GET handlers read here, so with CATALOG_READ_DATABASE_URL they read on the replica, no older than
    the request's `Catalog-LSN` (catalog/db/replica.py); other methods read on the primary. The
    principal and its grants were checked on the primary before this."""
    router: ReadRouter = request.app.state.read
    conn = await (
        router.connect(after=requested_lsn(request))
        if request.method in READ_METHODS
        else request.app.state.engine.connect()
    )
    async with guarded_transaction(conn) as same:
        yield same


@asynccontextmanager
async def begin_write(request: Request) -> AsyncIterator[AsyncConnection]:
    """A write transaction on the primary, for a handler that writes only on one of its paths (a denial
    it records) or once more after its own write committed; every other write takes `WriteConn`, which
    is built on this."""
    conn = await request.app.state.engine.connect()
    async with guarded_transaction(conn) as same:
        yield same


async def write_transaction(request: Request) -> AsyncIterator[AsyncConnection]:
    """One transaction on the primary for the request's write: committed when the handler returns
    (before the response is sent), rolled back when it raises. A handler whose answer must be shaped
    after the commit (shaping it can record a denial, an audit append that waits for the audit lock
    this transaction holds) calls `await conn.commit()` first."""
    async with begin_write(request) as conn:
        yield conn


# scope="function": the connection goes back to the pool before the response is sent.
ReadConn = Annotated[AsyncConnection, Depends(read_connection, scope="function")]
# scope="function": committed before the response is sent, so a client that reads right after a write
# sees it (FastAPI's default runs the code after `yield` only after the response went out).
WriteConn = Annotated[AsyncConnection, Depends(write_transaction, scope="function")]
