"""Marquez-compatible lineage REST: /lineage and /column-lineage, over ASGI."""

from __future__ import annotations

from urllib.parse import quote

import httpx

from tests.factories import at, column_lineage, dataset, run_event, schema
from tests.lineage.conftest import BQ, JOBS, PG, chain_events, ingest

CUSTOMERS = f"dataset:{PG}:payments.public.customers"
RAW = f"dataset:{BQ}:dw.raw_customers"
EXTRACT = f"job:{JOBS}:extract_customers"


def enc(name: str) -> str:
    return quote(name, safe="")


async def test_lineage_graph_has_marquez_nodes_and_edges(client: httpx.AsyncClient) -> None:
    await ingest(client, *chain_events())
    response = await client.get("/api/v1/lineage", params={"nodeId": CUSTOMERS, "depth": 1})
    assert response.status_code == 200, response.text
    nodes = {n["id"]: n for n in response.json()["graph"]}
    assert set(nodes) == {CUSTOMERS, EXTRACT, RAW}
    assert nodes[CUSTOMERS]["type"] == "DATASET"
    assert nodes[CUSTOMERS]["data"]["namespace"] == PG
    assert [f["name"] for f in nodes[CUSTOMERS]["data"]["fields"]] == ["id", "cpf", "email"]
    assert nodes[EXTRACT]["type"] == "JOB"
    assert nodes[EXTRACT]["data"]["name"] == "extract_customers"
    assert nodes[EXTRACT]["inEdges"] == [{"origin": CUSTOMERS, "destination": EXTRACT}]
    assert nodes[EXTRACT]["outEdges"] == [{"origin": EXTRACT, "destination": RAW}]
    assert nodes[CUSTOMERS]["inEdges"] == []


async def test_lineage_as_of_and_errors(client: httpx.AsyncClient) -> None:
    await ingest(client, *chain_events())
    before = await client.get("/api/v1/lineage", params={"nodeId": RAW, "asOf": "2026-03-01T00:00:00Z"})
    assert before.status_code == 404
    naive = await client.get("/api/v1/lineage", params={"nodeId": RAW, "asOf": "2026-03-05T00:00:00"})
    assert naive.status_code == 400
    assert naive.json()["pointer"] == "asOf"
    unknown = await client.get("/api/v1/lineage", params={"nodeId": f"dataset:{PG}:nope"})
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")
    garbage = await client.get("/api/v1/lineage", params={"nodeId": "nonsense"})
    assert garbage.status_code == 404


async def test_column_lineage_upstream_and_with_downstream(client: httpx.AsyncClient) -> None:
    await ingest(client, *chain_events())
    node = f"datasetField:{BQ}:dw.raw_customers:cpf"
    up = await client.get("/api/v1/column-lineage", params={"nodeId": node, "withDownstream": "False"})
    assert up.status_code == 200, up.text
    ids = {n["id"] for n in up.json()["graph"]}
    assert ids == {node, f"datasetField:{PG}:payments.public.customers:cpf"}
    raw_cpf = next(n for n in up.json()["graph"] if n["id"] == node)
    assert raw_cpf["type"] == "DATASET_FIELD"
    assert raw_cpf["data"]["inputFields"][0]["field"] == "cpf"
    assert raw_cpf["data"]["inputFields"][0]["masking"] is True
    both = await client.get("/api/v1/column-lineage", params={"nodeId": node, "withDownstream": "True"})
    assert f"datasetField:{BQ}:dw.dim_customers:cpf_hash" in {n["id"] for n in both.json()["graph"]}
    job = await client.get("/api/v1/column-lineage", params={"nodeId": EXTRACT})
    assert {n["id"] for n in job.json()["graph"]} >= {node, f"datasetField:{BQ}:dw.raw_customers:id"}
    bad = await client.get("/api/v1/column-lineage", params={"nodeId": node, "withDownstream": "maybe"})
    assert bad.status_code == 400


async def test_column_lineage_nodes_carry_the_schema_facets_field_type(client: httpx.AsyncClient) -> None:
    """`fieldType` is the type the dataset's schema facet gives the field (null only without one)."""
    source = dataset(
        PG, "shop.public.orders", schema=schema(("order_id", "BIGINT"), ("total", "NUMERIC(12,2)"))
    )
    target = dataset(
        BQ,
        "dw.orders",
        schema=schema(("order_key", "INT64"), ("total_brl", "BIGNUMERIC")),
        columnLineage=column_lineage(
            {
                "order_key": [(PG, "shop.public.orders", "order_id", "DIRECT", "IDENTITY", False)],
                "total_brl": [(PG, "shop.public.orders", "total", "DIRECT", "TRANSFORMATION", False)],
            }
        ),
    )
    untyped = dataset(
        BQ,
        "dw.orders_copy",
        schema=schema({"name": "order_key"}),
        columnLineage=column_lineage(
            {"order_key": [(BQ, "dw.orders", "order_key", "DIRECT", "IDENTITY", False)]}
        ),
    )
    await ingest(
        client,
        run_event(when=at(2), job=(JOBS, "load_orders"), inputs=[source], outputs=[target]),
        run_event(
            when=at(3), job=(JOBS, "copy_orders"), inputs=[dataset(BQ, "dw.orders")], outputs=[untyped]
        ),
    )
    response = await client.get(
        "/api/v1/column-lineage", params={"nodeId": f"dataset:{BQ}:dw.orders", "withDownstream": "true"}
    )
    assert response.status_code == 200, response.text
    types = {n["id"]: n["data"]["fieldType"] for n in response.json()["graph"]}
    assert types == {
        f"datasetField:{PG}:shop.public.orders:order_id": "BIGINT",
        f"datasetField:{PG}:shop.public.orders:total": "NUMERIC(12,2)",
        f"datasetField:{BQ}:dw.orders:order_key": "INT64",
        f"datasetField:{BQ}:dw.orders:total_brl": "BIGNUMERIC",
        f"datasetField:{BQ}:dw.orders_copy:order_key": None,
        f"dataset:{BQ}:dw.orders": None,
    }
