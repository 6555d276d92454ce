"""Shared fixtures: a real PostgreSQL (embedded by default, CATALOG_TEST_DATABASE_URL for an external one),
a migrated template database cloned per test, the app over ASGI, and a real HTTP server on a socket."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import uvicorn
from psycopg import sql
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.app import create_app
from catalog.config import DEFAULT_SERVICE_ROLE, Settings
from catalog.db import migrate
from catalog.db.embedded import EmbeddedPostgres
from catalog.db.engine import create_engine, libpq_dsn

ADMIN_TOKEN = "test-admin-" + secrets.token_hex(8)

# The service acknowledges an ingest once it is in the event log and projects it moments later. Most tests
# ingest and then read what the projection made of it: their services answer an ingest only once it is
# projected (what `?wait=projected` asks for), in-process apps and `catalog serve` subprocesses alike (they
# inherit the environment). Tests of the asynchronous path itself ask for `logged` explicitly.
os.environ.setdefault("CATALOG_INGEST_DEFAULT_WAIT", "projected")
# Apps built in-process run their projector on a thread: the projector process `catalog serve` runs by
# default is a fresh interpreter (about a second of CPU to start), and the suite builds hundreds of apps.
# The process is tested where it is the point (tests/ingest/test_projector_process.py) and by the
# `catalog serve` subprocesses that kill, fail over and stop (tests/ingest/test_projector.py,
# tests/cli/test_serve_signals.py), which run with it.
os.environ.setdefault("CATALOG_PROJECTOR_PROCESS", "false")


SERVICE_ROLE = DEFAULT_SERVICE_ROLE
# For an external server only (the embedded one generates its own): the service role is cluster-wide and
# shared by every test session on that server, so all of them give it the same password.
EXTERNAL_SERVICE_PASSWORD = "catalog-app-tests"


@dataclass
class PgServer:
    """A PostgreSQL server the tests may create and drop databases on."""

    admin_url: str  # any database on the server, as a SQLAlchemy/libpq URL
    template: str
    service_url: str  # the same server as the service role (migrations grant it its privileges)

    def url_for(self, database: str) -> str:
        """The database as the admin (superuser): owner of the schema, as migrations run."""
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    def service_url_for(self, database: str) -> str:
        """The database as the service role, as `catalog serve` connects."""
        return make_url(self.service_url).set(database=database).render_as_string(hide_password=False)

    def execute(self, sql: str) -> None:
        with psycopg.connect(libpq_dsn(self.admin_url), autocommit=True) as conn:
            conn.execute(sql)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    external = os.environ.get("CATALOG_TEST_DATABASE_URL")
    embedded: EmbeddedPostgres | None = None
    home: str | None = None
    if external:
        admin_url = external
        service_url = _external_service_role(external)
    else:
        home = tempfile.mkdtemp(prefix="catalog-test-", dir="/tmp")
        os.chmod(home, 0o755)
        embedded = EmbeddedPostgres(Path(home))
        embedded.start()
        embedded.ensure_login_role(SERVICE_ROLE)
        admin_url = embedded.sqlalchemy_url("postgres")
        service_url = embedded.sqlalchemy_url("postgres", role=SERVICE_ROLE)
    template = f"catalog_template_{os.getpid()}"
    server = PgServer(admin_url, template, service_url)
    server.execute(f'DROP DATABASE IF EXISTS "{template}"')
    server.execute(f'CREATE DATABASE "{template}"')
    migrate.upgrade(server.url_for(template), service_role=SERVICE_ROLE)
    try:
        yield server
    finally:
        server.execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
        if embedded is not None:
            embedded.stop()
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)


def _external_service_role(admin_url: str) -> str:
    """Make the service role able to log in on an external server; its URL (admin URL, other user).

    Several test sessions may do this at once on one server: an advisory lock in the admin database
    serialises them (a concurrent CREATE/ALTER ROLE would fail on the shared catalog row).
    """
    with psycopg.connect(libpq_dsn(admin_url), autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('catalog tests: service role'))")
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (SERVICE_ROLE,)).fetchone()
        conn.execute(
            sql.SQL("{} ROLE {} LOGIN NOSUPERUSER PASSWORD {}").format(
                sql.SQL("ALTER" if exists else "CREATE"),
                sql.Identifier(SERVICE_ROLE),
                sql.Literal(EXTERNAL_SERVICE_PASSWORD),
            )
        )
    url = make_url(admin_url).set(username=SERVICE_ROLE, password=EXTERNAL_SERVICE_PASSWORD)
    return url.render_as_string(hide_password=False)


@pytest.fixture
def service_database_url(pg_server: PgServer, database_url: str) -> str:
    """This test's database as the service role (what the app connects as under `catalog serve`)."""
    return pg_server.service_url_for(make_url(database_url).database or "")


@pytest.fixture
def database_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, migrated database for one test (a copy of the template: ~50 ms)."""
    name = f"t_{secrets.token_hex(6)}"
    pg_server.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_server.template}"')
    try:
        yield pg_server.url_for(name)
    finally:
        pg_server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", admin_token=ADMIN_TOKEN, log_format="console")


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database_url, pool_size=2)
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
async def client(settings: Settings, service_database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process (ASGI) on the service role, lifespan running, authenticated as the bootstrap admin."""
    app = create_app(settings, service_database_url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://catalog", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as http:
            yield http


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    server: uvicorn.Server


@pytest.fixture
def live_server(settings: Settings, service_database_url: str) -> Iterator[LiveServer]:
    """The real service on a real socket (uvicorn in a thread with its own event loop), on the service role."""
    port = free_port()
    app = create_app(settings, service_database_url)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,  # an open client connection must not keep the app (and its projector) alive
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", server)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(autouse=True)
def _no_projector_thread_outlives_its_test() -> Iterator[None]:
    """An app's projector thread must stop with the app: one that ran on (its loop swallowed a
    cancellation: catalog/periodic.py `raise_if_cancelled`) kept retrying a dropped database until the
    session ended. Set up first, so it looks after every other fixture's teardown."""
    before = {t.ident for t in threading.enumerate()}
    yield
    left = [t for t in threading.enumerate() if t.name == "projector" and t.ident not in before]
    for thread in left:
        thread.join(5)
    if any(thread.is_alive() for thread in left):
        pytest.fail("a projector thread started by this test is still running after it")
