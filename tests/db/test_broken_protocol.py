"""A connection whose backend was terminated while it sat idle: asyncpg parses the server's FATAL error at
once but sees the end of the stream a loop turn later, and in between the connection is broken yet not
closed (`InternalClientError: cannot switch to state …; another operation (2) is in progress`). CI met
it once: a backend killed under load, the pooled connection handed out again, a 500 on an ingest.

The window is one loop turn on a real socket; a proxy between the engine and PostgreSQL widens it (it
forwards every byte at once but holds the server's close back), so the tests meet that state every time,
with the real server, driver and pool.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from catalog.app import create_app
from catalog.config import Settings
from catalog.db.engine import create_engine, libpq_dsn, raw_connection
from catalog.db.errors import is_unavailable
from catalog.ingest.projector import Watermark


class CloseHoldingProxy:
    """TCP on 127.0.0.1 in front of the test's PostgreSQL (TCP or Unix socket). Bytes pass both ways at
    once; when the server closes a connection, the close reaches the client only after `release()`."""

    def __init__(self, database_url: str) -> None:
        self._upstream = make_url(database_url)
        self.server_closed = asyncio.Event()
        self._released = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = self._upstream.set(host="127.0.0.1", port=port, query={}).render_as_string(
            hide_password=False
        )

    def release(self) -> None:
        self._released.set()

    async def close(self) -> None:
        self.release()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _connect_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        socket_dir = self._upstream.query.get("host")
        port = self._upstream.port or 5432
        if isinstance(socket_dir, str) and socket_dir.startswith("/"):
            return await asyncio.open_unix_connection(str(Path(socket_dir) / f".s.PGSQL.{port}"))
        return await asyncio.open_connection(self._upstream.host or "127.0.0.1", port)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await self._connect_upstream()
        to_server = asyncio.create_task(self._pump(client_r, server_w, hold_close=False))
        to_client = asyncio.create_task(self._pump(server_r, client_w, hold_close=True))
        self._tasks.update((to_server, to_client))
        await asyncio.gather(to_server, to_client, return_exceptions=True)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, hold_close: bool
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        if hold_close:
            self.server_closed.set()
            await self._released.wait()
        sink.close()


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[CloseHoldingProxy]:
    proxied = CloseHoldingProxy(database_url)
    await proxied.start()
    try:
        yield proxied
    finally:
        await proxied.close()


@pytest.fixture
async def engine_via_proxy(proxy: CloseHoldingProxy) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(proxy.url, pool_size=1)
    try:
        yield engine
    finally:
        proxy.release()
        await engine.dispose()


async def _backend_pid(conn: AsyncConnection) -> int:
    return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


def _terminate(database_url: str, pid: int) -> None:
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def _kill_and_let_the_fatal_error_arrive(proxy: CloseHoldingProxy, database_url: str, pid: int) -> None:
    await asyncio.to_thread(_terminate, database_url, pid)
    await asyncio.wait_for(proxy.server_closed.wait(), 10)
    await asyncio.sleep(0.1)  # the client's loop reads the FATAL ErrorResponse the proxy passed on


async def test_a_pooled_connection_killed_while_idle_is_replaced_on_checkout(
    proxy: CloseHoldingProxy, engine_via_proxy: AsyncEngine, database_url: str
) -> None:
    async with engine_via_proxy.connect() as conn:
        victim = await _backend_pid(conn)
        driver = await raw_connection(conn)
    await _kill_and_let_the_fatal_error_arrive(proxy, database_url, victim)
    assert not driver.is_closed()  # the state the pool cannot see: broken, "open"

    # The pool's pre-ping meets the broken protocol, asyncpg aborts the connection, and SQLAlchemy
    # (which asks asyncpg whether it is closed) reconnects: the checkout does not fail.
    async with engine_via_proxy.connect() as conn:
        assert await _backend_pid(conn) != victim


async def test_a_statement_on_a_checked_out_connection_killed_meanwhile_is_unavailable(
    proxy: CloseHoldingProxy, engine_via_proxy: AsyncEngine, database_url: str
) -> None:
    """The race of a raw asyncpg statement right after a good checkout (the ingest's wait read): the error
    is a lost connection (503, retry), and the connection is not pooled again."""
    async with engine_via_proxy.connect() as conn:
        victim = await _backend_pid(conn)
        raw = await raw_connection(conn)
        await _kill_and_let_the_fatal_error_arrive(proxy, database_url, victim)
        with pytest.raises(asyncpg.exceptions.InternalClientError) as raised:
            await raw.fetchval("SELECT 1")
        # asyncpg aborted it: through SQLAlchemy it is a lost connection, invalidated, not pooled again.
        with pytest.raises(DBAPIError) as through_sqlalchemy:
            await conn.execute(text("SELECT 1"))
        invalidated = conn.invalidated
    assert is_unavailable(raised.value)
    assert is_unavailable(through_sqlalchemy.value)
    assert invalidated
    proxy.release()
    async with engine_via_proxy.connect() as conn:
        assert await _backend_pid(conn) != victim


async def test_waiting_for_the_projection_tolerates_a_database_out_of_reach(database_url: str) -> None:
    """An ingest is answered once its events are committed; a lost connection while it then waits for
    the projector means "not projected yet", not an error (it was a 500)."""
    unreachable = create_engine(
        make_url(database_url).set(host="127.0.0.1", port=1, query={}).render_as_string(hide_password=False),
        connect_timeout=2,
    )
    reachable = create_engine(database_url, pool_size=1)
    try:
        assert await Watermark(unreachable, poll=0.05).wait_for(1, 0.3) is False
        assert await Watermark(reachable, poll=0.05).wait_for(0, 0.3) is True
        assert await Watermark(reachable, poll=0.05).wait_for(10**12, 0.2) is False
    finally:
        await unreachable.dispose()
        await reachable.dispose()


async def test_a_request_meeting_such_a_connection_answers_503_inside_the_app(
    proxy: CloseHoldingProxy, engine_via_proxy: AsyncEngine, database_url: str, settings: Settings
) -> None:
    """The error is answered by the app's own handlers (503 + Retry-After), not re-raised to the server:
    uvicorn closes the client's connection after an exception escapes the app (CI saw `httpx.ReadError`
    on the next request). The ASGI transport below raises whatever escapes."""

    async def statement_after_the_backend_was_killed() -> None:
        async with engine_via_proxy.connect() as conn:
            raw = await raw_connection(conn)
            victim = await raw.fetchval("SELECT pg_backend_pid()")
            await _kill_and_let_the_fatal_error_arrive(proxy, database_url, victim)
            await raw.fetchval("SELECT 1")

    app = create_app(settings, database_url)
    app.add_api_route("/test/killed-backend", statement_after_the_backend_was_killed, methods=["GET"])
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://catalog") as http,
    ):
        answer = await http.get("/test/killed-backend")
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"]
    assert answer.json()["type"] == "/problems/database-unavailable"
