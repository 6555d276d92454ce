"""Two service processes ingesting at once lose nothing; an unreachable database answers 503 + Retry-After."""

from __future__ import annotations

import asyncio

import httpx
import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.app import create_app
from catalog.config import Settings
from tests.conftest import ADMIN_TOKEN
from tests.factories import at, dataset, run_event, schema


async def test_two_apps_on_one_database_store_everything_once(
    settings: Settings, database_url: str, engine: AsyncEngine
) -> None:
    # Both "processes" write the same hot namespace/dataset rows, and half the events are sent to both.
    events = [
        run_event(
            when=at(1 + i % 20, i % 24, i % 60),
            job=("airflow-payments", f"job_{i % 7}"),
            inputs=[dataset("bigquery", f"t.in_{i % 5}", schema=schema("id", "cpf"))],
            outputs=[dataset("bigquery", f"t.out_{i % 3}", schema=schema("id"))],
        )
        for i in range(240)
    ]
    apps = [create_app(settings, database_url), create_app(settings, database_url)]
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with apps[0].router.lifespan_context(apps[0]), apps[1].router.lifespan_context(apps[1]):
        clients = [
            httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://c", headers=headers)
            for a in apps
        ]
        semaphore = asyncio.Semaphore(32)

        async def send(i: int, event: dict[str, object]) -> list[int]:
            targets = clients if i % 2 == 0 else [clients[i % 3 % 2]]
            async with semaphore:
                answers = await asyncio.gather(
                    *(c.post("/api/v1/lineage", content=orjson.dumps(event)) for c in targets)
                )
            return [a.status_code for a in answers]

        statuses = await asyncio.gather(*(send(i, e) for i, e in enumerate(events)))
        for c in clients:
            await c.aclose()
    assert {s for group in statuses for s in group} == {201}
    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT count(*) FROM event_log"))).scalar_one()
        runs = (await conn.execute(text("SELECT count(*) FROM runs"))).scalar_one()
    assert stored == len(events)
    assert runs == len(events)


async def test_unreachable_database_is_a_503_with_retry_after(settings: Settings) -> None:
    app = create_app(settings, "postgresql://postgres@127.0.0.1:1/nowhere")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://c",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as http,
    ):
        response = await http.post("/api/v1/lineage", content=orjson.dumps(run_event()))
        assert response.status_code == 503
        assert response.headers["retry-after"]
        assert response.headers["content-type"].startswith("application/problem+json")
        read = await http.get("/api/v1/namespaces")
        assert read.status_code == 503
        # Every route answers it through the one handler: writes, raw-asyncpg reads, GraphQL.
        for answer in (
            await http.put("/api/v1/tags/pii", json={"description": "x"}),
            await http.get("/api/v1/lineage", params={"nodeId": "dataset:bigquery:t"}),
            await http.get("/api/v1/classifications", params={"namespace": "bigquery", "dataset": "t"}),
            await http.post("/graphql", json={"query": "{ namespaces { nodes { name } } }"}),
        ):
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"] == "1"
            assert answer.json()["type"] == "/problems/database-unavailable"
        health = await http.get("/health")
        assert health.status_code == 503
