"""/ready (readiness) apart from /health (liveness): 503 with a reason while the schema is behind this
version's migrations or the database cannot be reached; open like /health."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy.engine import make_url

from catalog.app import create_app
from catalog.config import Settings
from catalog.db import migrate
from catalog.db.migrate import head_revisions
from tests.conftest import PgServer


async def test_ready_when_migrated_without_a_credential(client: httpx.AsyncClient) -> None:
    answer = await client.get("/ready", headers={"Authorization": ""})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ready"
    assert body["migrations"]["current"] == sorted(head_revisions())
    assert body["reasons"] == []


async def test_not_ready_with_a_migration_behind(
    settings: Settings, database_url: str, service_database_url: str
) -> None:
    await asyncio.to_thread(migrate.downgrade, database_url, "-1")
    behind = await asyncio.to_thread(migrate.current_revision, database_url)
    assert behind is not None
    assert behind not in head_revisions()
    app = create_app(settings, service_database_url)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://catalog") as http,
    ):
        ready = await http.get("/ready")
        assert ready.status_code == 503, ready.text
        assert ready.headers["retry-after"]
        assert ready.json()["status"] == "not ready"
        (reason,) = ready.json()["reasons"]
        assert behind in reason
        assert "catalog migrate" in reason
        # alive all the same: an orchestrator must not restart it for this
        assert (await http.get("/health")).status_code == 200


async def test_not_ready_while_the_database_is_unreachable(
    settings: Settings, pg_server: PgServer, service_database_url: str
) -> None:
    name = make_url(service_database_url).database
    app = create_app(settings, service_database_url)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://catalog") as http,
    ):
        assert (await http.get("/ready")).status_code == 200
        # the database stops taking connections and drops the ones it had (as in a failover)
        pg_server.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        pg_server.execute(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' "
            "AND pid <> pg_backend_pid()"
        )
        try:
            ready = await http.get("/ready")
            assert ready.status_code == 503, ready.text
            assert ready.json()["reasons"] == ["database unreachable"]
            assert ready.headers["retry-after"]
        finally:
            pg_server.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert (await http.get("/ready")).status_code == 200
