"""Marquez's tags over REST: create, list, put on and take off datasets and fields."""

from __future__ import annotations

from urllib.parse import quote

import httpx

from tests.lineage.conftest import PG, chain_events, ingest

CUSTOMERS = f"dataset:{PG}:payments.public.customers"


def enc(name: str) -> str:
    return quote(name, safe="")


async def test_tags_on_datasets_and_fields(client: httpx.AsyncClient) -> None:
    await ingest(client, *chain_events())
    base = f"/api/v1/namespaces/{enc(PG)}/datasets/{enc('payments.public.customers')}"
    created = await client.put("/api/v1/tags/PII", json={"description": "personal data"})
    assert created.json() == {"name": "PII", "description": "personal data"}
    tagged = await client.post(f"{base}/tags/SENSITIVE")
    assert tagged.status_code == 200
    assert tagged.json()["tags"] == ["SENSITIVE"]
    field = await client.post(f"{base}/fields/cpf/tags/PII")
    cpf = next(f for f in field.json()["fields"] if f["name"] == "cpf")
    assert cpf["tags"] == ["PII"]
    tags = (await client.get("/api/v1/tags")).json()["tags"]
    assert tags == [
        {"name": "PII", "description": "personal data"},
        {"name": "SENSITIVE", "description": None},
    ]
    assert (await client.delete(f"{base}/tags/SENSITIVE")).json()["tags"] == []
    assert (await client.delete(f"{base}/tags/SENSITIVE")).status_code == 404
    assert (await client.post(f"{base}/fields/nope/tags/PII")).status_code == 404
    # Node data in the lineage graph carries the tags too.
    graph = (await client.get("/api/v1/lineage", params={"nodeId": CUSTOMERS, "depth": 0})).json()["graph"]
    cpf_in_graph = next(f for f in graph[0]["data"]["fields"] if f["name"] == "cpf")
    assert cpf_in_graph["tags"] == ["PII"]
