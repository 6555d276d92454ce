"""Shared builders for lineage tests: a small graph with a colon-laden namespace, loaded over the batch API."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from tests.factories import at, column_lineage, dataset, run_event, schema

PG = "postgres://payments-db:5432"  # a namespace with ':' in it, as real ones have
BQ = "bigquery"
JOBS = "airflow-payments"


async def ingest(client: httpx.AsyncClient, *events: dict[str, Any]) -> None:
    response = await client.post("/api/v1/lineage/batch", content=orjson.dumps(list(events)))
    assert response.status_code in (200, 204), response.text
    if response.status_code == 200:
        assert response.json()["summary"]["failed"] == 0, response.text


def chain_events() -> list[dict[str, Any]]:
    """PG customers --extract--> BQ raw_customers --model--> BQ dim_customers, with column lineage."""
    customers = dataset(PG, "payments.public.customers", schema=schema("id", "cpf", "email"))
    raw = dataset(
        BQ,
        "dw.raw_customers",
        schema=schema("id", "cpf", "email"),
        columnLineage=column_lineage(
            {
                "id": [(PG, "payments.public.customers", "id", "DIRECT", "IDENTITY", False)],
                "cpf": [(PG, "payments.public.customers", "cpf", "DIRECT", "TRANSFORMATION", True)],
                "email": [(PG, "payments.public.customers", "email", "DIRECT", "IDENTITY", False)],
            }
        ),
    )
    dim = dataset(
        BQ,
        "dw.dim_customers",
        schema=schema("customer_id", "cpf_hash"),
        columnLineage=column_lineage(
            {
                "customer_id": [(BQ, "dw.raw_customers", "id", "DIRECT", "IDENTITY", False)],
                "cpf_hash": [(BQ, "dw.raw_customers", "cpf", "DIRECT", "TRANSFORMATION", True)],
            }
        ),
    )
    return [
        run_event(
            when=at(2),
            job=(JOBS, "extract_customers"),
            inputs=[customers],
            outputs=[raw],
        ),
        run_event(
            when=at(3),
            job=(JOBS, "model_customers"),
            inputs=[dataset(BQ, "dw.raw_customers")],
            outputs=[dim],
        ),
    ]
