"""CATALOG_READ_DATABASE_URL against a real streaming replica (tests/db/streaming.py): reads are served
there, a revoked key or grant is refused at once however far the replica lags, a writer reads its own
write (Catalog-LSN), and the primary answers when the replica is down.

How "served by the replica" is seen without any debug hook: replay is paused on the replica
(`pg_wal_replay_pause()`), so it holds a state the primary has left; an answer showing that old state
can only have come from the replica.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from catalog.app import create_app
from catalog.auth.service import revoke_key
from catalog.cli import app as cli
from catalog.config import DEFAULT_SERVICE_ROLE, Settings
from catalog.db import migrate
from catalog.db.engine import create_engine, libpq_dsn
from catalog.db.replica import LSN_HEADER
from catalog_client import AsyncCatalogClient
from catalog_client.errors import NotFound
from tests.db.streaming import BinariesMissing, StreamingPair, binaries_for
from tests.factories import dataset, run_event
from tests.keys import make_key
from tests.policy.test_grants import INTERNALS, dataset_url, denied_by, grant_body, load_payments

ADMIN = "replica-admin-token"
# One KEK for the module: its tests share one database, whose signing key it encrypts.
KEK = base64.b64encode(b"replica-tests-kek-32-bytes-long!").decode()
SERVICE_PASSWORD = "replica-tests"
DATABASE = "catalog"
NAMESPACE = "warehouse"
# Long enough to tell "waited for the replica" from "fell back after the bound" by the clock.
WAIT = 3.0
MAJOR = "SELECT current_setting('server_version_num')::int / 10000"


def pg_query(url: str, sql: str) -> object:
    with psycopg.connect(libpq_dsn(url), autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
    return row[0] if row else None


@pytest.fixture(scope="module")
def pair() -> Iterator[StreamingPair]:
    try:
        external = os.environ.get("CATALOG_TEST_DATABASE_URL")
        bin_dir, account = binaries_for(external)
    except BinariesMissing as exc:
        pytest.skip(str(exc))
    servers = StreamingPair(bin_dir, account)
    try:
        servers.start()
        if external is not None:  # the pair runs the server under test's own major version
            assert servers.execute(servers.primary, MAJOR) == pg_query(external, MAJOR)
        servers.execute(
            servers.primary, f"CREATE ROLE {DEFAULT_SERVICE_ROLE} LOGIN PASSWORD '{SERVICE_PASSWORD}'"
        )
        servers.execute(servers.primary, f"CREATE DATABASE {DATABASE}")
        migrate.upgrade(servers.url(servers.primary, DATABASE), service_role=DEFAULT_SERVICE_ROLE)
        servers.wait_until_streaming()
        yield servers
    finally:
        servers.stop()


@pytest.fixture(autouse=True)
def replay_resumed(pair: StreamingPair) -> Iterator[None]:
    """Each test starts with a replica that has caught up, and leaves replay running."""
    pair.wait_until_streaming()
    try:
        yield
    finally:
        if pair.replica in pair._started:
            pair.execute(pair.replica, "SELECT pg_wal_replay_resume()")


def service(pair: StreamingPair, node: Any) -> str:
    """The service role on that node: roles replicate, so the replica URL uses the same role."""
    return pair.url(node, DATABASE, role=DEFAULT_SERVICE_ROLE, password=SERVICE_PASSWORD)


@asynccontextmanager
async def catalog(pair: StreamingPair, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        service_app(pair, tmp_path) as app,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://catalog",
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=30,
        ) as client,
    ):
        yield client


@asynccontextmanager
async def service_app(pair: StreamingPair, tmp_path: Path) -> AsyncIterator[FastAPI]:
    """The service on the pair's primary, reading on its replica (lifespan running)."""
    settings = Settings(
        home=tmp_path / "home",
        admin_token=ADMIN,
        key_encryption_key=KEK,
        log_format="console",
        read_database_url=service(pair, pair.replica),
        read_your_writes_wait_seconds=WAIT,
        replica_retry_seconds=0.2,
        # No key cache: what is under test is where the key check reads, not how long a cache holds it.
        auth_cache_seconds=0,
    )
    app = create_app(settings, service(pair, pair.primary))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def primary(pair: StreamingPair) -> AsyncIterator[AsyncEngine]:
    """The primary as its superuser (keys are made and revoked as `catalog keys` does)."""
    engine = create_engine(pair.url(pair.primary, DATABASE), pool_size=1)
    try:
        yield engine
    finally:
        await engine.dispose()


def table_url(name: str) -> str:
    return f"/api/v1/namespaces/{NAMESPACE}/datasets/{quote(name, safe='')}"


async def write_table(client: httpx.AsyncClient, name: str) -> str:
    """Ingest an event creating the dataset; the Catalog-LSN its answer carries."""
    event = run_event(job=("etl", f"load_{name}"), outputs=[dataset(NAMESPACE, name)])
    response = await client.post("/api/v1/lineage/batch", content=orjson.dumps([event]))
    assert response.status_code == 200, response.text
    return response.headers[LSN_HEADER]


def pause_replay(pair: StreamingPair) -> None:
    pair.execute(pair.replica, "SELECT pg_wal_replay_pause()")


GRAPHQL_DATASET = "query($ns: String!, $name: String!) { dataset(namespace: $ns, name: $name) { name } }"


async def graphql_dataset(client: httpx.AsyncClient, name: str, headers: dict[str, str]) -> Any:
    response = await client.post(
        "/graphql",
        json={"query": GRAPHQL_DATASET, "variables": {"ns": NAMESPACE, "name": name}},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]["dataset"]


async def test_reads_come_from_the_replica_and_a_writer_reads_its_own_write(
    pair: StreamingPair, tmp_path: Path
) -> None:
    async with catalog(pair, tmp_path) as client:
        lsn = await write_table(client, "orders")
        caught_up = await client.get(table_url("orders"), headers={LSN_HEADER: lsn})
        assert caught_up.status_code == 200, caught_up.text

        pause_replay(pair)
        lsn = await write_table(client, "refunds")
        # Without the token: the replica's state, which does not have the write yet.
        stale = await client.get(table_url("refunds"))
        assert stale.status_code == 404, stale.text
        assert await graphql_dataset(client, "refunds", {}) is None
        query = {"query": GRAPHQL_DATASET, "variables": {"ns": NAMESPACE, "name": "orders"}}
        assert LSN_HEADER not in (await client.post("/graphql", json=query)).headers  # a query wrote nothing
        listed = await client.get(f"/api/v1/namespaces/{NAMESPACE}/datasets")
        assert [d["name"] for d in listed.json()["datasets"]] == ["orders"], listed.text

        # With it: the replica never catches up (paused), so after the bound the primary answers.
        started = time.monotonic()
        fresh = await client.get(table_url("refunds"), headers={LSN_HEADER: lsn})
        assert fresh.status_code == 200, fresh.text
        assert time.monotonic() - started >= WAIT
        assert await graphql_dataset(client, "refunds", {LSN_HEADER: lsn}) == {"name": "refunds"}

        # With it, and the replica catching up meanwhile: served as soon as it has replayed the write.
        lsn = await write_table(client, "chargebacks")
        started = time.monotonic()
        waiting = asyncio.create_task(client.get(table_url("chargebacks"), headers={LSN_HEADER: lsn}))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await asyncio.to_thread(pair.execute, pair.replica, "SELECT pg_wal_replay_resume()")
        answer = await waiting
        assert answer.status_code == 200, answer.text
        assert time.monotonic() - started < WAIT - 1
        # An export reads a snapshot that has every write made before it began.
        exported = await client.get("/api/v1/exports")
        assert exported.status_code == 200, exported.text
        with zipfile.ZipFile(io.BytesIO(exported.content)) as bundle:
            assert any(b"chargebacks" in bundle.read(n) for n in bundle.namelist()), bundle.namelist()

        # A malformed token is the client's mistake, named.
        bad = await client.get(table_url("orders"), headers={LSN_HEADER: "yesterday"})
        assert bad.status_code == 400, bad.text
        assert bad.json()["pointer"] == LSN_HEADER


async def test_a_revoked_key_is_refused_at_once_while_the_replica_lags(
    pair: StreamingPair, tmp_path: Path, primary: AsyncEngine
) -> None:
    async with catalog(pair, tmp_path) as client:
        await write_table(client, "customers")
        key = await make_key(primary, "auditor")
        await asyncio.to_thread(pair.wait_until_streaming)
        assert (await client.get(table_url("customers"), headers=key.headers)).status_code == 200

        pause_replay(pair)
        async with primary.begin() as conn:
            assert await revoke_key(conn, key_id=key.key_id)
        refused = await client.get(table_url("customers"), headers=key.headers)
        assert refused.status_code == 401, refused.text
        refused = await client.post(
            "/graphql", json={"query": "{ namespaces { nodes { name } } }"}, headers=key.headers
        )
        assert refused.status_code == 401, refused.text


async def test_a_revoked_grant_is_refused_at_once_while_the_replica_lags(
    pair: StreamingPair, tmp_path: Path, primary: AsyncEngine
) -> None:
    async with catalog(pair, tmp_path) as client:
        await load_payments(client)
        steward = await make_key(primary, "steward", "payments")
        engineer = await make_key(primary, "engineer", "fraud")
        created = await client.post("/api/v1/grants", json=grant_body(), headers=steward.headers)
        assert created.status_code == 201, created.text
        await asyncio.to_thread(pair.wait_until_streaming)
        url = dataset_url("payments.transactions")
        assert (await client.get(url, headers=engineer.headers)).status_code == 200

        pause_replay(pair)
        revoked = await client.delete(f"/api/v1/grants/{created.json()['id']}", headers=steward.headers)
        assert revoked.status_code == 200, revoked.text
        # The replica still holds the grant; the decision does not read there.
        refused = await client.get(url, headers=engineer.headers)
        assert denied_by(refused, INTERNALS), refused.text


async def test_the_python_client_carries_its_write_position(pair: StreamingPair, tmp_path: Path) -> None:
    async with service_app(pair, tmp_path) as app:
        transport = httpx.ASGITransport(app=app)
        async with (
            AsyncCatalogClient("http://catalog", ADMIN, transport=transport) as writer,
            AsyncCatalogClient("http://catalog", ADMIN, transport=transport) as bystander,
        ):
            pause_replay(pair)
            event = run_event(job=("etl", "load_ledger"), outputs=[dataset(NAMESPACE, "ledger")])
            await writer.ingest(event)
            assert writer.write_position.lsn is not None
            # The writer sees its write (the primary, once the bound passed); a client that wrote
            # nothing reads the lagging replica.
            assert (await writer.dataset(NAMESPACE, "ledger")).name == "ledger"
            with pytest.raises(NotFound):
                await bystander.dataset(NAMESPACE, "ledger")


def test_the_export_command_reads_its_snapshot_on_the_replica(pair: StreamingPair, tmp_path: Path) -> None:
    """`catalog export` waits for the replica to have every write made before it began: with replay
    paused it waits out the bound (so it did ask the replica), then the primary gives it the write."""
    asyncio.run(_ingest_on_primary(pair, tmp_path, "journal"))
    pause_replay(pair)
    asyncio.run(_ingest_on_primary(pair, tmp_path, "postings"))
    env = {
        "CATALOG_READ_DATABASE_URL": service(pair, pair.replica),
        "CATALOG_READ_YOUR_WRITES_WAIT_SECONDS": "1.5",
        "CATALOG_KEY_ENCRYPTION_KEY": KEK,
        "CATALOG_MIGRATION_DATABASE_URL": pair.url(pair.primary, DATABASE),
    }
    out = tmp_path / "bundle.zip"
    started = time.monotonic()
    result = CliRunner().invoke(
        cli, ["export", "--out", str(out), "--database-url", service(pair, pair.primary)], env=env
    )
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started >= 1.5
    with zipfile.ZipFile(out) as bundle:
        assert any(b"postings" in bundle.read(n) for n in bundle.namelist())


async def _ingest_on_primary(pair: StreamingPair, tmp_path: Path, name: str) -> None:
    async with catalog(pair, tmp_path) as client:
        await write_table(client, name)


async def test_the_primary_answers_reads_when_the_replica_is_down(
    pair: StreamingPair, tmp_path: Path
) -> None:
    """Last in this module: it stops the replica."""
    async with catalog(pair, tmp_path) as client:
        await write_table(client, "invoices")
        await asyncio.to_thread(pair.stop_replica)
        lsn = await write_table(client, "credit_notes")
        started = time.monotonic()
        for headers in ({}, {LSN_HEADER: lsn}):
            answer = await client.get(table_url("credit_notes"), headers=headers)
            assert answer.status_code == 200, answer.text
            assert await graphql_dataset(client, "credit_notes", headers) == {"name": "credit_notes"}
        exported = await client.get("/api/v1/exports")
        assert exported.status_code == 200, exported.text
        # Refused connections, not timeouts: no read waited for the replica.
        assert time.monotonic() - started < WAIT
