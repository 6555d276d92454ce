"""Shared builders for the governance scenario tests."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from tests.factories import PRODUCER

PAYMENTS_DB = "postgres://payments-db-1.internal:5432"
FRAUD_DB = "postgres://fraud-db-1.internal:5432"
PAYMENTS_KAFKA = "kafka://payments-kafka.internal:9093"


def source(uri: str, name: str = "source") -> dict[str, Any]:
    return {
        "_producer": PRODUCER,
        "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/DatasourceDatasetFacet.json",
        "name": name,
        "uri": uri,
    }


def job_type(integration: str) -> dict[str, Any]:
    return {
        "_producer": PRODUCER,
        "_schemaURL": "https://openlineage.io/spec/facets/2-0-3/JobTypeJobFacet.json",
        "processingType": "BATCH",
        "integration": integration,
        "jobType": "QUERY",
    }


def ownership(*owners: str) -> dict[str, Any]:
    return {
        "_producer": PRODUCER,
        "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/OwnershipDatasetFacet.json",
        "owners": [{"name": o, "type": "TEAM"} for o in owners],
    }


async def ingest(client: httpx.AsyncClient, *events: dict[str, Any]) -> None:
    response = await client.post("/api/v1/lineage/batch", content=orjson.dumps(list(events)))
    assert response.status_code == 200, response.text
    assert response.json()["summary"]["failed"] == 0, response.text


async def findings(client: httpx.AsyncClient, rule: str, status: str | None = None) -> list[dict[str, Any]]:
    params = {"rule": rule, **({"status": status} if status else {})}
    response = await client.get("/api/v1/findings", params=params)
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["findings"]
    return rows
