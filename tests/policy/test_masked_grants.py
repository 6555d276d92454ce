"""Masked-columns-only grants are enforced on reads (catalog/policy/masking.py): the grantee reads the
dataset's internals, but the columns holding unmasked PII come redacted — listed by name with
`masked: true`, no type/description/tags — in REST (dataset, versions, classifications, column
lineage) and GraphQL (fields, field, versions, facets, column lineage) alike; a full grant shows
everything, and after revocation the reads are denied again."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.api.graphql import loaders as graphql_loaders
from catalog.classification.reads import unmasked_pii_columns
from catalog.config import Settings
from catalog.lineage.service import ColumnGraph, ColumnLineageEdge, ColumnNode, field_node_id
from catalog.policy.masking import hide_columns, redact_field_list, redact_schema
from tests.factories import column_lineage, dataset, run_event, schema
from tests.findings.helpers import PAYMENTS_DB, ingest, source
from tests.graphql.conftest import app_client
from tests.keys import Key, make_key
from tests.policy.test_grants import TLS, dataset_url, denied_by, grant_body
from tests.policy.test_graphql_authz import INTERNALS, forbidden, gql

TRANSACTIONS = "payments.transactions"
LEDGER = "payments.ledger"
CPF = f"datasetField:{PAYMENTS_DB}:{TRANSACTIONS}:cpf"
AMOUNT = f"datasetField:{PAYMENTS_DB}:{TRANSACTIONS}:amount"
REDACTED: dict[str, Any] = {"name": "cpf", "type": None, "tags": [], "description": None, "masked": True}

FIELDS = """query($ns: String!, $n: String!) {
  dataset(namespace: $ns, name: $n) {
    fields { name type description masked }
    field(path: "cpf") { name type masked }
    versions { fields }
    facets
  }
}"""
COLUMNS = """query($ns: String!, $n: String!) {
  columnLineage(namespace: $ns, dataset: $n) { root nodes { id dataset field } edges { origin destination } }
}"""
VARS = {"ns": PAYMENTS_DB, "n": TRANSACTIONS}


async def load(client: httpx.AsyncClient) -> None:
    """payments.ledger feeds payments.transactions column by column: its `cpf` (detected PII.CPF) comes
    from the ledger's document number, its `amount` (no PII) from the ledger's value."""
    ledger = dataset(
        PAYMENTS_DB,
        LEDGER,
        dataSource=source(TLS),
        schema=schema("document_number", ("value", "NUMERIC")),
    )
    transactions = dataset(
        PAYMENTS_DB,
        TRANSACTIONS,
        dataSource=source(TLS),
        schema=schema(
            "id",
            {"name": "cpf", "type": "STRING", "description": "customer's CPF"},
            {"name": "amount", "type": "NUMERIC", "description": "settled amount"},
        ),
        columnLineage=column_lineage(
            {
                "cpf": [(PAYMENTS_DB, LEDGER, "document_number", "DIRECT", "IDENTITY", False)],
                "amount": [(PAYMENTS_DB, LEDGER, "value", "DIRECT", "IDENTITY", False)],
            }
        ),
    )
    await ingest(
        client,
        run_event(job=("airflow-payments", "payments_dag.settle"), inputs=[ledger], outputs=[transactions]),
    )


def by_name(fields: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in fields}


async def rest(client: httpx.AsyncClient, key: Key) -> dict[str, httpx.Response]:
    ns = quote(PAYMENTS_DB, safe="")
    name = quote(TRANSACTIONS, safe="")
    return {
        "dataset": await client.get(dataset_url(TRANSACTIONS), headers=key.headers),
        "versions": await client.get(
            f"/api/v1/namespaces/{ns}/datasets/{name}/versions", headers=key.headers
        ),
        "classifications": await client.get(
            "/api/v1/classifications",
            params={"namespace": PAYMENTS_DB, "dataset": TRANSACTIONS},
            headers=key.headers,
        ),
        "columns": await client.get(
            "/api/v1/column-lineage",
            params={"nodeId": f"dataset:{PAYMENTS_DB}:{TRANSACTIONS}"},
            headers=key.headers,
        ),
    }


def assert_full(answers: dict[str, httpx.Response], graphql: dict[str, Any]) -> None:
    """Every column with its details, cpf's hops included (what the owner and a full grantee see)."""
    for what, response in answers.items():
        assert response.status_code == 200, (what, response.text)
    fields = by_name(answers["dataset"].json()["fields"])
    assert fields["cpf"]["type"] == "STRING"
    assert fields["cpf"]["description"] == "customer's CPF"
    assert "PII.CPF" in fields["cpf"]["tags"]
    assert "masked" not in fields["cpf"]
    assert fields["amount"]["type"] == "NUMERIC"
    assert by_name(answers["versions"].json()["versions"][0]["fields"])["cpf"]["type"] == "STRING"
    tagged = {(c["field"], c["tag"]) for c in answers["classifications"].json()["classifications"]}
    assert ("cpf", "PII.CPF") in tagged
    assert CPF in {n["id"] for n in answers["columns"].json()["graph"]}

    assert "errors" not in graphql, graphql
    seen = graphql["data"]["dataset"]
    assert by_name(seen["fields"])["cpf"] == {
        "name": "cpf",
        "type": "STRING",
        "description": "customer's CPF",
        "masked": False,
    }
    assert seen["field"] == {"name": "cpf", "type": "STRING", "masked": False}


async def test_a_masked_only_grantee_reads_amount_fully_and_cpf_redacted(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await load(client)
    steward = await make_key(engine, "steward", "payments")
    payments_engineer = await make_key(engine, "engineer", "payments")
    fraud_engineer = await make_key(engine, "engineer", "fraud")

    # the owner sees cpf as detected PII, with its details
    assert_full(await rest(client, payments_engineer), await gql(client, payments_engineer, FIELDS, VARS))

    created = await client.post("/api/v1/grants", json=grant_body(masked_only=True), headers=steward.headers)
    assert created.status_code == 201, created.text
    assert created.json()["maskedOnly"] is True

    # -- REST --
    answers = await rest(client, fraud_engineer)
    for what, response in answers.items():
        assert response.status_code == 200, (what, response.text)
    body = answers["dataset"].json()
    fields = by_name(body["fields"])
    assert list(fields) == ["id", "cpf", "amount"]
    assert fields["amount"] == {
        "name": "amount",
        "type": "NUMERIC",
        "tags": [],
        "description": "settled amount",
    }
    assert fields["cpf"] == REDACTED
    # the facets carry no more of cpf than its name either
    assert by_name(body["facets"]["schema"]["fields"])["cpf"] == {"name": "cpf", "masked": True}
    assert by_name(body["facets"]["schema"]["fields"])["amount"]["type"] == "NUMERIC"
    assert set(body["facets"]["columnLineage"]["fields"]) == {"amount"}
    assert "customer's CPF" not in answers["dataset"].text

    version = answers["versions"].json()["versions"][0]
    assert by_name(version["fields"])["cpf"] == REDACTED
    assert by_name(version["fields"])["amount"]["type"] == "NUMERIC"

    classifications = answers["classifications"].json()["classifications"]
    assert all(c["field"] != "cpf" for c in classifications), classifications

    graph = {n["id"]: n for n in answers["columns"].json()["graph"]}
    assert AMOUNT in graph
    # the ledger is not granted: its columns show only as its dataset (GraphQL columnLineage's rule)
    assert [i["field"] for i in graph[AMOUNT]["data"]["inputFields"]] == [None]
    assert [i["dataset"] for i in graph[AMOUNT]["data"]["inputFields"]] == [LEDGER]
    assert CPF not in graph
    # nor whatever fed cpf: the hop through it is hidden, with what was reached only through it
    assert not any(n["data"]["field"] == "document_number" for n in graph.values())
    assert "document_number" not in answers["columns"].text

    # the dataset's node in its lineage graph carries the same redacted fields
    walked = await client.get(
        "/api/v1/lineage",
        params={"nodeId": f"dataset:{PAYMENTS_DB}:{TRANSACTIONS}"},
        headers=fraud_engineer.headers,
    )
    assert walked.status_code == 200, walked.text
    node = next(n for n in walked.json()["graph"] if n["id"] == f"dataset:{PAYMENTS_DB}:{TRANSACTIONS}")
    assert by_name(node["data"]["fields"])["cpf"] == REDACTED

    # -- GraphQL --
    seen = await gql(client, fraud_engineer, FIELDS, VARS)
    assert "errors" not in seen, seen
    gfields = by_name(seen["data"]["dataset"]["fields"])
    assert gfields["amount"] == {
        "name": "amount",
        "type": "NUMERIC",
        "description": "settled amount",
        "masked": False,
    }
    assert gfields["cpf"] == {"name": "cpf", "type": None, "description": None, "masked": True}
    assert seen["data"]["dataset"]["field"] == {"name": "cpf", "type": None, "masked": True}
    assert by_name(seen["data"]["dataset"]["versions"][0]["fields"])["cpf"] == {"name": "cpf", "masked": True}
    assert set(seen["data"]["dataset"]["facets"]["columnLineage"]["fields"]) == {"amount"}

    columns = await gql(client, fraud_engineer, COLUMNS, VARS)
    assert "errors" not in columns, columns
    nodes = {(n["dataset"], n["field"]) for n in columns["data"]["columnLineage"]["nodes"]}
    assert (TRANSACTIONS, "amount") in nodes
    assert (TRANSACTIONS, "cpf") not in nodes
    assert (LEDGER, "document_number") not in nodes
    edges = columns["data"]["columnLineage"]["edges"]
    assert all(CPF not in (e["origin"], e["destination"]) for e in edges), edges

    # the owner still sees everything
    assert_full(await rest(client, payments_engineer), await gql(client, payments_engineer, FIELDS, VARS))

    # -- a full grant instead: both columns in full --
    revoked = await client.delete(f"/api/v1/grants/{created.json()['id']}", headers=steward.headers)
    assert revoked.status_code == 200, revoked.text
    full = await client.post("/api/v1/grants", json=grant_body(), headers=steward.headers)
    assert full.status_code == 201, full.text
    assert full.json()["maskedOnly"] is False
    assert_full(await rest(client, fraud_engineer), await gql(client, fraud_engineer, FIELDS, VARS))

    # -- revoked: denied --
    revoked = await client.delete(f"/api/v1/grants/{full.json()['id']}", headers=steward.headers)
    assert revoked.status_code == 200, revoked.text
    for what, response in (await rest(client, fraud_engineer)).items():
        assert denied_by(response, INTERNALS), (what, response.text)
    denied = await gql(client, fraud_engineer, FIELDS, VARS)
    forbidden(
        denied,
        ["dataset", "fields"],
        ["dataset", "field"],
        ["dataset", "versions"],
        ["dataset", "facets"],
    )
    forbidden(await gql(client, fraud_engineer, COLUMNS, VARS), ["columnLineage"])


PAGE = """query($ns: String!, $first: Int!) {
  datasets(namespace: $ns, first: $first) { nodes { name fields { name type masked } } }
}"""


async def test_a_masked_page_costs_one_redaction_lookup_whatever_its_size(
    settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a masked-only namespace grant every dataset of a page is redacted, with the PII columns
    of all of them found in one statement (the loader's batch) and a constant number of statements."""
    quiet = settings.model_copy(update={"grants_poll_seconds": 3600.0})
    calls: list[int] = []
    real = unmasked_pii_columns

    async def counted(conn: Any, keys: Any) -> Any:
        calls.append(len(keys))
        return await real(conn, keys)

    monkeypatch.setattr(graphql_loaders, "unmasked_pii_columns", counted)
    async with app_client(quiet, database_url) as (app, http):
        tables = [
            dataset(PAYMENTS_DB, f"payments.t_{i:03d}", schema=schema("id", "cpf", ("amount", "NUMERIC")))
            for i in range(30)
        ]
        await ingest(http, run_event(job=("airflow-payments", "payments_dag.load"), outputs=tables))
        steward = await make_key(app.state.engine, "steward", "payments")
        fraud_engineer = await make_key(app.state.engine, "engineer", "fraud")
        granted = await http.post(
            "/api/v1/grants",
            json=grant_body(scope="namespace", name=None, masked_only=True),
            headers=steward.headers,
        )
        assert granted.status_code == 201, granted.text

        statements: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        await gql(http, fraud_engineer, PAGE, {"ns": PAYMENTS_DB, "first": 1})  # warm up
        counts: dict[int, tuple[int, int]] = {}
        event.listen(app.state.engine.sync_engine, "before_cursor_execute", count)
        try:
            for first in (5, 30):
                statements.clear()
                calls.clear()
                body = await gql(http, fraud_engineer, PAGE, {"ns": PAYMENTS_DB, "first": first})
                assert "errors" not in body, body
                nodes = body["data"]["datasets"]["nodes"]
                assert len(nodes) == first
                for node in nodes:
                    fields = by_name(node["fields"])
                    assert fields["cpf"] == {"name": "cpf", "type": None, "masked": True}
                    assert fields["amount"] == {"name": "amount", "type": "NUMERIC", "masked": False}
                assert calls == [first]
                counts[first] = (len(statements), len(calls))
        finally:
            event.remove(app.state.engine.sync_engine, "before_cursor_execute", count)
    assert counts[5] == counts[30], counts


def test_fields_nested_under_a_pii_column_are_redacted_with_it() -> None:
    sensitive = frozenset({"customer"})
    declared = [
        {"name": "customer", "type": "STRUCT", "fields": [{"name": "cpf", "type": "STRING"}]},
        {"name": "amount", "type": "NUMERIC"},
    ]
    assert redact_schema(declared, sensitive) == [
        {"name": "customer", "masked": True},
        {"name": "amount", "type": "NUMERIC"},
    ]
    flat: list[dict[str, Any]] = [
        {"name": path, "type": "STRING", "tags": [], "description": None}
        for path in ("customer", "customer.cpf", "customerId", "amount")
    ]
    assert [f.get("masked", False) for f in redact_field_list(flat, sensitive)] == [True, True, False, False]


def test_column_lineage_rooted_at_a_redacted_column_is_empty() -> None:
    seen = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)

    def node(dataset: str, field: str) -> ColumnNode:
        return ColumnNode(field_node_id("ns", dataset, field), "ns", dataset, field)

    def edge(origin: ColumnNode, destination: ColumnNode) -> ColumnLineageEdge:
        return ColumnLineageEdge(
            origin.id, destination.id, "DIRECT", "IDENTITY", False, None, None, None, seen, seen
        )

    raw, cpf = node("raw", "document"), node("t", "cpf")
    graph = ColumnGraph(cpf.id, [raw, cpf], [edge(raw, cpf)])
    assert hide_columns(graph, {("ns", "t"): frozenset({"cpf"})}) == ColumnGraph(cpf.id, [], [])
    assert hide_columns(graph, {("ns", "other"): frozenset({"cpf"})}) == graph
