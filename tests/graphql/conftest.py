"""GraphQL test helpers: post a query, load a small catalog over the batch ingest API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
from fastapi import FastAPI

from catalog.app import create_app
from catalog.config import Settings
from tests.conftest import ADMIN_TOKEN
from tests.factories import PRODUCER, at, column_lineage, dataset, run_event, schema

PG = "postgres://payments-db:5432"  # a namespace with ':' in it, as real ones have
BQ = "bigquery"
JOBS = "airflow-payments"


async def gql(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None, *, status: int = 200
) -> dict[str, Any]:
    """POST a query; the decoded answer (with `data` and maybe `errors`)."""
    response = await client.post("/graphql", json={"query": query, "variables": variables or {}})
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def data_of(client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None) -> Any:
    """The `data` of a query that must succeed."""
    body = await gql(client, query, variables)
    assert "errors" not in body, body["errors"]
    return body["data"]


async def ingest(client: httpx.AsyncClient, events: list[dict[str, Any]]) -> None:
    response = await client.post("/api/v1/lineage/batch", content=orjson.dumps(events))
    assert response.status_code in (200, 204), response.text
    if response.status_code == 200:
        assert response.json()["summary"]["failed"] == 0, response.text


def ownership(*owners: str) -> dict[str, Any]:
    return {
        "_producer": PRODUCER,
        "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/OwnershipDatasetFacet.json",
        "owners": [{"name": o, "type": "MAINTAINER"} for o in owners],
    }


def payments_events() -> list[dict[str, Any]]:
    """PG payments --load--> BQ analytics.payments --report--> BQ reports.daily, with nested fields,
    owners and column lineage (amount masked nowhere, card number masked)."""
    payments = dataset(
        PG,
        "public.payments",
        schema=schema(
            ("id", "BIGINT"),
            ("amount", "NUMERIC"),
            {"name": "card", "type": "STRUCT", "fields": [{"name": "number", "type": "TEXT"}]},
        ),
        ownership=ownership("team:payments"),
    )
    analytics = dataset(
        BQ,
        "analytics.payments",
        schema=schema(("id", "INT64"), ("amount", "NUMERIC"), ("card_hash", "STRING")),
        ownership=ownership("team:analytics", "user:ana"),
        columnLineage=column_lineage(
            {
                "amount": [(PG, "public.payments", "amount", "DIRECT", "IDENTITY", False)],
                "card_hash": [(PG, "public.payments", "card.number", "DIRECT", "TRANSFORMATION", True)],
            }
        ),
    )
    daily = dataset(
        BQ,
        "reports.daily",
        schema=schema(("total", "NUMERIC")),
        columnLineage=column_lineage(
            {"total": [(BQ, "analytics.payments", "amount", "DIRECT", "AGGREGATION", False)]}
        ),
    )
    return [
        run_event(
            "START",
            when=at(2, 1),
            run_id="11111111-1111-4111-8111-111111111111",
            job=(JOBS, "payments_dag.load"),
            inputs=[payments],
            outputs=[analytics],
        ),
        run_event(
            when=at(2, 2),
            run_id="11111111-1111-4111-8111-111111111111",
            job=(JOBS, "payments_dag.load"),
            inputs=[payments],
            outputs=[analytics],
        ),
        run_event(
            when=at(3, 2),
            run_id="22222222-2222-4222-8222-222222222222",
            job=(JOBS, "payments_dag.load"),
            inputs=[payments],
            outputs=[analytics],
        ),
        run_event(
            when=at(3, 3),
            job=(JOBS, "reports_dag.daily"),
            inputs=[dataset(BQ, "analytics.payments")],
            outputs=[daily],
        ),
    ]


def many_datasets_events(count: int) -> list[dict[str, Any]]:
    """`count` datasets in one namespace, each with two fields (one nested), an owner and a producer."""
    events = []
    for i in range(count):
        out = dataset(
            BQ,
            f"wide.table_{i:04d}",
            schema=schema("id", {"name": "address", "type": "STRUCT", "fields": [{"name": "city"}]}),
            ownership=ownership(f"team:t{i % 7}"),
        )
        events.append(run_event(when=at(4), job=(JOBS, f"wide_dag.load_{i:04d}"), outputs=[out]))
    return events


@asynccontextmanager
async def app_client(
    settings: Settings, database_url: str
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app (for tests that need its engine or their own settings) and an admin client over ASGI."""
    app = create_app(settings, database_url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://catalog", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as http:
            yield app, http
