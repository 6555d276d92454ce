"""GraphQL fields are authorised like REST routes: another product's datasets are discoverable (name,
owners, product, tier) while their fields, versions, facets, runs and lineage internals need a grant;
denials are FORBIDDEN errors naming the rule, recorded once per request and rule; a page stays a
constant number of statements for product roles too."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.config import Settings
from tests.factories import column_lineage, dataset, run_event, schema
from tests.findings.helpers import FRAUD_DB, PAYMENTS_DB, ingest, source
from tests.graphql.conftest import app_client
from tests.keys import Key, make_key
from tests.policy.test_grants import grant_body, load_payments

INTERNALS = "other-products-internals-need-a-grant"
RUN_ID = "33333333-3333-4333-8333-333333333333"
DATASET = """query($ns: String!, $n: String!) {
  dataset(namespace: $ns, name: $n) { name namespace product tier owners { name } fields { name } }
}"""
PAYMENTS = {"ns": PAYMENTS_DB, "n": "payments.transactions"}


async def gql(
    client: httpx.AsyncClient, key: Key, query: str, variables: dict[str, Any] | None = None
) -> Any:
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=key.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def forbidden(body: dict[str, Any], *paths: list[Any]) -> None:
    """Exactly these paths failed, each with FORBIDDEN naming the internals rule."""
    errors = body.get("errors") or []
    assert sorted(e["path"] for e in errors) == sorted(paths), body
    for error in errors:
        assert error["extensions"]["code"] == "FORBIDDEN", error
        assert error["extensions"]["rule"] == INTERNALS, error
        assert INTERNALS in error["message"]


async def denials(engine: AsyncEngine, key: Key) -> list[tuple[str, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT rule, path FROM access_denials WHERE key_id = :k ORDER BY id"), {"k": key.key_id}
        )
        return [(r.rule, r.path) for r in rows]


async def load_fraud(client: httpx.AsyncClient) -> None:
    """fraud.scores reads payments.transactions.amount (column lineage across the boundary)."""
    scores = dataset(
        FRAUD_DB,
        "fraud.scores",
        dataSource=source("postgres://fraud-db-1.internal:5432/fraud?sslmode=verify-full"),
        schema=schema("id", ("score", "NUMERIC")),
        columnLineage=column_lineage(
            {"score": [(PAYMENTS_DB, "payments.transactions", "amount", "DIRECT", "AGGREGATION", False)]}
        ),
    )
    await ingest(
        client,
        run_event(
            run_id=RUN_ID,
            job=("airflow-fraud", "fraud_dag.score"),
            inputs=[dataset(PAYMENTS_DB, "payments.transactions")],
            outputs=[scores],
        ),
    )


async def test_another_products_engineer_discovers_a_dataset_and_reads_its_fields_with_a_grant(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await load_payments(client)
    payments_engineer = await make_key(engine, "engineer", "payments")
    steward = await make_key(engine, "steward", "payments")
    fraud_engineer = await make_key(engine, "engineer", "fraud")

    own = await gql(client, payments_engineer, DATASET, PAYMENTS)
    assert "errors" not in own, own
    assert [f["name"] for f in own["data"]["dataset"]["fields"]] == ["amount", "id"]

    before = await gql(client, fraud_engineer, DATASET, PAYMENTS)
    forbidden(before, ["dataset", "fields"])
    seen = before["data"]["dataset"]
    assert seen == {
        "name": "payments.transactions",
        "namespace": PAYMENTS_DB,
        "product": "payments",
        "tier": "oltp",
        "owners": [],
        "fields": None,
    }

    created = await client.post("/api/v1/grants", json=grant_body(), headers=steward.headers)
    assert created.status_code == 201, created.text
    after = await gql(client, fraud_engineer, DATASET, PAYMENTS)
    assert "errors" not in after, after
    assert [f["name"] for f in after["data"]["dataset"]["fields"]] == ["amount", "id"]
    # the grant is for that dataset only
    refunds = await gql(client, fraud_engineer, DATASET, {**PAYMENTS, "n": "payments.refunds"})
    forbidden(refunds, ["dataset", "fields"])

    revoked = await client.delete(f"/api/v1/grants/{created.json()['id']}", headers=steward.headers)
    assert revoked.status_code == 200, revoked.text
    again = await gql(client, fraud_engineer, DATASET, PAYMENTS)
    forbidden(again, ["dataset", "fields"])
    assert await denials(engine, fraud_engineer) == [(INTERNALS, "/graphql")] * 3
    assert await denials(engine, payments_engineer) == []


async def test_a_page_of_another_products_datasets_answers_names_and_records_one_denial(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await load_payments(client)
    fraud_engineer = await make_key(engine, "engineer", "fraud")
    auditor = await make_key(engine, "auditor")
    query = """query($ns: String!) {
      datasets(namespace: $ns) { nodes { name product fields { name } versions { id } sourceUri } }
    }"""
    body = await gql(client, fraud_engineer, query, {"ns": PAYMENTS_DB})
    nodes = body["data"]["datasets"]["nodes"]
    assert [(n["name"], n["product"]) for n in nodes] == [
        ("payments.refunds", "payments"),
        ("payments.transactions", "payments"),
    ]
    assert all(n["fields"] is None and n["versions"] is None and n["sourceUri"] is None for n in nodes)
    forbidden(
        body,
        *(["datasets", "nodes", i, field] for i in range(2) for field in ("fields", "versions", "sourceUri")),
    )
    # six denied fields in one request: one denial kept (per request and rule)
    assert await denials(engine, fraud_engineer) == [(INTERNALS, "/graphql")]

    # the auditor reads everything (and needs no product lookup)
    read = await gql(client, auditor, query, {"ns": PAYMENTS_DB})
    assert "errors" not in read, read
    assert all(n["fields"] for n in read["data"]["datasets"]["nodes"])


async def test_lineage_internals_of_another_product_need_a_grant(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await load_payments(client)
    await load_fraud(client)
    steward = await make_key(engine, "steward", "payments")
    fraud_engineer = await make_key(engine, "engineer", "fraud")
    payments_engineer = await make_key(engine, "engineer", "payments")
    columns = """query($ns: String!, $n: String!) {
      columnLineage(namespace: $ns, dataset: $n) { root nodes { id dataset field } edges { origin destination } }
    }"""
    lineage = """query($ns: String!, $n: String!) {
      lineage(node: {kind: DATASET, namespace: $ns, name: $n}) {
        root nodes { id name dataset { name product fields { name } } }
      }
    }"""
    fraud = {"ns": FRAUD_DB, "n": "fraud.scores"}

    # rooted at another product's node: the whole graph is internals (REST's /lineage rule)
    for query in (columns, lineage):
        denied = await gql(client, fraud_engineer, query, PAYMENTS)
        root = "columnLineage" if query is columns else "lineage"
        forbidden(denied, [root])
        assert denied["data"] == {root: None}

    # rooted at its own node: payments' columns appear only as their dataset
    own = await gql(client, fraud_engineer, columns, fraud)
    assert "errors" not in own, own
    graph = own["data"]["columnLineage"]
    payments_node = f"dataset:{PAYMENTS_DB}:payments.transactions"
    assert {(n["dataset"], n["field"]) for n in graph["nodes"]} >= {
        ("fraud.scores", "score"),
        ("payments.transactions", None),
    }
    assert all(n["field"] is None for n in graph["nodes"] if n["dataset"] == "payments.transactions")
    assert {"origin": payments_node, "destination": f"datasetField:{FRAUD_DB}:fraud.scores:score"} in graph[
        "edges"
    ]

    # the dataset-level graph names payments' dataset; its fields stay protected
    walked = await gql(client, fraud_engineer, lineage, fraud)
    nodes = {n["id"]: n for n in walked["data"]["lineage"]["nodes"]}
    assert nodes[payments_node]["dataset"]["product"] == "payments"
    assert nodes[payments_node]["dataset"]["fields"] is None
    assert nodes[f"dataset:{FRAUD_DB}:fraud.scores"]["dataset"]["fields"] is not None
    index = list(nodes).index(payments_node)
    forbidden(walked, ["lineage", "nodes", index, "dataset", "fields"])

    # payments' own engineer reads the graph rooted at its dataset
    theirs = await gql(client, payments_engineer, columns, PAYMENTS)
    assert "errors" not in theirs, theirs

    # with a grant the columns show
    created = await client.post("/api/v1/grants", json=grant_body(), headers=steward.headers)
    assert created.status_code == 201, created.text
    granted = await gql(client, fraud_engineer, columns, fraud)
    assert ("payments.transactions", "amount") in {
        (n["dataset"], n["field"]) for n in granted["data"]["columnLineage"]["nodes"]
    }
    assert "errors" not in await gql(client, fraud_engineer, columns, PAYMENTS)


async def test_runs_and_job_facets_of_another_product_need_its_product(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await load_payments(client)
    await load_fraud(client)
    fraud_engineer = await make_key(engine, "engineer", "fraud")
    payments_engineer = await make_key(engine, "engineer", "payments")
    job = """{ job(namespace: "airflow-fraud", name: "fraud_dag.score") {
      name product outputs { name } runs { nodes { id } } facets } }"""
    run = f'{{ run(id: "{RUN_ID}") {{ id state }} }}'

    own = await gql(client, fraud_engineer, job)
    assert "errors" not in own, own
    assert own["data"]["job"]["runs"]["nodes"] == [{"id": RUN_ID}]
    assert (await gql(client, fraud_engineer, run))["data"]["run"]["id"] == RUN_ID

    other = await gql(client, payments_engineer, job)
    forbidden(other, ["job", "runs"], ["job", "facets"])
    assert other["data"]["job"]["product"] == "fraud"
    assert other["data"]["job"]["outputs"] == [{"name": "fraud.scores"}]
    denied_run = await gql(client, payments_engineer, run)
    forbidden(denied_run, ["run"])


async def test_search_leaves_out_fields_of_datasets_the_caller_may_not_read(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await load_payments(client)
    fraud_engineer = await make_key(engine, "engineer", "fraud")
    payments_engineer = await make_key(engine, "engineer", "payments")
    query = """{ search(query: "amount") { __typename ... on DatasetField { path dataset { name } } } }"""
    theirs = await gql(client, payments_engineer, query)
    assert {h["__typename"] for h in theirs["data"]["search"]} == {"DatasetField"}
    other = await gql(client, fraud_engineer, query)
    assert "errors" not in other, other
    assert other["data"]["search"] == []
    # datasets themselves stay discoverable by name
    found = await gql(client, fraud_engineer, '{ search(query: "refunds") { ... on Dataset { name } } }')
    assert found["data"]["search"] == [{"name": "payments.refunds"}]


PAGE = """query($first: Int!) {
  datasets(namespace: "bigquery", first: $first) {
    nodes { name product fields { path children { path } } owners { name } producers { name runs { nodes { id } } } }
  }
}"""


async def test_a_page_costs_a_constant_number_of_statements_for_product_roles(
    settings: Settings, database_url: str
) -> None:
    """The product of every dataset and job of the page is looked up in one batch; the denial of a
    whole page is recorded once."""
    quiet = settings.model_copy(update={"grants_poll_seconds": 3600.0})
    async with app_client(quiet, database_url) as (app, http):
        events = [
            run_event(
                job=("airflow-payments", f"payments_dag.load_{i:04d}"),
                outputs=[dataset("bigquery", f"raw.payments.t_{i:04d}", schema=schema("id", "amount"))],
            )
            for i in range(100)
        ]
        response = await http.post("/api/v1/lineage/batch", json=events)
        assert response.status_code == 200, response.text
        keys = {
            "own": await make_key(app.state.engine, "engineer", "payments"),
            "other": await make_key(app.state.engine, "engineer", "fraud"),
        }
        counts: dict[tuple[str, int], int] = {}
        statements: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        for side, key in keys.items():
            await gql(http, key, PAGE, {"first": 1})  # warm up: the key cache, prepared statements
            event.listen(app.state.engine.sync_engine, "before_cursor_execute", count)
            try:
                for first in (10, 100):
                    statements.clear()
                    body = await gql(http, key, PAGE, {"first": first})
                    nodes = body["data"]["datasets"]["nodes"]
                    assert len(nodes) == first
                    assert {n["product"] for n in nodes} == {"payments"}
                    if side == "own":
                        assert "errors" not in body, body
                        assert nodes[0]["producers"][0]["runs"]["nodes"]
                    else:
                        assert len(body["errors"]) == 2 * first  # fields and runs of each
                        assert all(n["fields"] is None for n in nodes)
                    counts[(side, first)] = len(statements)
            finally:
                event.remove(app.state.engine.sync_engine, "before_cursor_execute", count)

    print(f"SQL statements per page: {counts}")
    assert counts[("own", 10)] == counts[("own", 100)], counts
    assert counts[("other", 10)] == counts[("other", 100)], counts
