"""Marquez's /search and dataset versions over REST, and the one search of the read model both APIs use."""

from __future__ import annotations

from urllib.parse import quote

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.metadata import queries
from tests.factories import at, dataset, run_event, schema
from tests.lineage.conftest import BQ, JOBS, PG, chain_events, ingest

EXTRACT = f"job:{JOBS}:extract_customers"


def enc(name: str) -> str:
    return quote(name, safe="")


async def test_search_by_substring_filter_and_sort(client: httpx.AsyncClient) -> None:
    await ingest(client, *chain_events())
    response = await client.get("/api/v1/search", params={"q": "CUSTOMERS"})
    results = response.json()["results"]
    assert response.json()["totalCount"] == len(results) == 5
    assert [r["name"] for r in results][:2] == ["dw.dim_customers", "dw.raw_customers"]
    jobs = (await client.get("/api/v1/search", params={"q": "customers", "filter": "JOB"})).json()["results"]
    assert {(r["type"], r["nodeId"]) for r in jobs} == {
        ("JOB", EXTRACT),
        ("JOB", f"job:{JOBS}:model_customers"),
    }
    newest = (
        await client.get("/api/v1/search", params={"q": "customers", "sort": "UPDATE_AT", "limit": 1})
    ).json()
    assert newest["results"][0]["updatedAt"] == "2026-03-03T00:00:00Z"
    literal = (await client.get("/api/v1/search", params={"q": "%"})).json()
    assert literal["totalCount"] == 0


async def test_dataset_versions(client: httpx.AsyncClient) -> None:
    table = "payments.public.accounts"
    await ingest(
        client,
        run_event(when=at(2), job=(JOBS, "j"), outputs=[dataset(PG, table, schema=schema("id"))]),
        run_event(when=at(3), job=(JOBS, "j"), outputs=[dataset(PG, table, schema=schema("id", "iban"))]),
    )
    base = f"/api/v1/namespaces/{enc(PG)}/datasets/{enc(table)}/versions"
    body = (await client.get(base)).json()
    assert body["totalCount"] == 2
    newest, oldest = body["versions"]
    assert [f["name"] for f in newest["fields"]] == ["id", "iban"]
    assert [f["name"] for f in oldest["fields"]] == ["id"]
    one = await client.get(f"{base}/{oldest['version']}")
    assert one.status_code == 200
    assert one.json()["version"] == oldest["version"]
    assert (await client.get(f"/api/v1/namespaces/{enc(PG)}/datasets/nope/versions")).status_code == 404


async def test_one_search_serves_both_apis(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    """GraphQL's search (fields too, by relevance) and Marquez's (datasets and jobs, by name or
    update, in a namespace) are the one statement of the read model."""
    await ingest(client, *chain_events())
    async with engine.connect() as conn:
        everything = await queries.search(conn, term="cpf", limit=50)
        named = await queries.search(conn, term="cpf", limit=50, kinds=frozenset({"dataset", "job"}))
        in_bq = await queries.search(conn, term="customers", limit=50, namespace=BQ, order="name")
        exact = await queries.search(conn, term="dw.raw_customers", limit=50)
    assert {(h.kind, h.name) for h in everything} == {("field", "cpf"), ("field", "cpf_hash")}
    assert everything[-1].name == "cpf_hash"  # exact matches first
    assert named == []
    assert [(h.kind, h.namespace, h.name) for h in in_bq] == [
        ("dataset", BQ, "dw.dim_customers"),
        ("dataset", BQ, "dw.raw_customers"),
    ]
    assert exact[0].name == "dw.raw_customers"


async def test_search_filters_by_product_tier_and_pii_before_the_limit(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """The filters are applied in the statement, so a limit counts only matching hits: payments owns the
    PG customers table and the jobs; BigQuery is the analytics tier; raw_customers' `cpf` is PII and
    dim_customers holds none (its `cpf_hash` is masked)."""
    await ingest(client, *chain_events())
    async with engine.connect() as conn:
        owned = await queries.search(conn, term="customers", limit=50, product="payments")
        analytics = await queries.search(conn, term="customers", limit=50, tier="analytics")
        first_pii = await queries.search(conn, term="customers", limit=1, has_pii=True, order="name")
        no_pii = await queries.search(conn, term="customers", limit=50, has_pii=False)
        pii_fields = await queries.search(conn, term="cpf", limit=50, has_pii=True)
        pii_in_bq = await queries.search(conn, term="c", limit=50, has_pii=True, tier="analytics")
        nobody = await queries.search(conn, term="customers", limit=50, product="nobody")
    assert {(h.kind, h.name) for h in owned} == {
        ("dataset", "payments.public.customers"),
        ("job", "extract_customers"),
        ("job", "model_customers"),
    }
    assert {(h.kind, h.name) for h in analytics} == {
        ("dataset", "dw.dim_customers"),
        ("dataset", "dw.raw_customers"),
    }
    # Without the filter, dim_customers would be first by name; jobs never match a PII filter.
    assert [(h.kind, h.name) for h in first_pii] == [("dataset", "dw.raw_customers")]
    assert [(h.kind, h.name) for h in no_pii] == [("dataset", "dw.dim_customers")]
    assert {(h.kind, h.namespace, h.name) for h in pii_fields} == {("field", BQ, "cpf"), ("field", PG, "cpf")}
    assert {(h.kind, h.namespace, h.name) for h in pii_in_bq} == {
        ("field", BQ, "cpf"),
        ("dataset", BQ, "dw.raw_customers"),
    }
    assert nobody == []


async def test_search_filters_over_graphql_and_rest(client: httpx.AsyncClient) -> None:
    await ingest(client, *chain_events())
    query = """query($p: String, $t: String, $pii: Boolean) {
        search(query: "customers", first: 1, product: $p, tier: $t, hasPii: $pii) {
            __typename ... on Dataset { name } ... on Job { name } } }"""
    gql_hits = {}
    for name, variables in {
        "pii": {"pii": True},
        "clean": {"pii": False},
        "oltp": {"t": "oltp"},
    }.items():
        response = await client.post("/graphql", json={"query": query, "variables": variables})
        body = response.json()
        assert "errors" not in body, body
        gql_hits[name] = [h["name"] for h in body["data"]["search"]]
    assert gql_hits == {
        "pii": ["dw.raw_customers"],
        "clean": ["dw.dim_customers"],
        "oltp": ["payments.public.customers"],
    }
    rest = (
        await client.get("/api/v1/search", params={"q": "customers", "product": "payments", "filter": "JOB"})
    ).json()
    assert {r["name"] for r in rest["results"]} == {"extract_customers", "model_customers"}
    analytics = (await client.get("/api/v1/search", params={"q": "customers", "tier": "analytics"})).json()
    assert {r["name"] for r in analytics["results"]} == {"dw.dim_customers", "dw.raw_customers"}
