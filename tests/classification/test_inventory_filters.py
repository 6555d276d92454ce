"""The REST PII inventory's filters: product (the dataset's product assignment), tier (its namespace's),
asOf (event time for what was seen, wall-clock time for stewards' decisions), and paging."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.classification.test_scenarios import (
    BQ,
    CUSTOMERS,
    KAFKA,
    ORDERS,
    PG,
    RAW,
    TOPIC,
    batch,
    identity,
    payments_pipeline,
)
from tests.factories import at, column_lineage, dataset, run_event, schema
from tests.keys import make_key

FRAUD_DB = "postgres://fraud-db-1.internal:5432"
FRAUD_SCORES = "fraud.public.scores"


async def inventory(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/v1/pii/inventory", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def located(body: dict[str, Any]) -> set[tuple[str, str, str | None]]:
    return {(f["namespace"], f["dataset"], f["field"]) for f in body["fields"]}


def fraud_event(day: int) -> dict[str, Any]:
    """A fraud OLTP table with a customer e-mail, then (later) a copy of the payments CPF into it."""
    scores = dataset(
        FRAUD_DB,
        FRAUD_SCORES,
        schema=schema("customer_email", "document"),
        columnLineage=column_lineage({"document": [identity(BQ, RAW, "document")]}) if day > 1 else None,
    )
    if scores["facets"]["columnLineage"] is None:
        del scores["facets"]["columnLineage"]
    return run_event(when=at(day), job=("airflow-fraud", "fraud_dag.score"), outputs=[scores])


async def test_inventory_by_product_and_tier(client: httpx.AsyncClient) -> None:
    await batch(client, *payments_pipeline(), fraud_event(1))
    everything = await inventory(client)
    assert located(everything) == {
        (PG, CUSTOMERS, "cpf"),
        (KAFKA, TOPIC, "cpf"),
        (BQ, RAW, "document"),
        (FRAUD_DB, FRAUD_SCORES, "customer_email"),
    }
    assert {(f["dataset"], f["product"], f["tier"]) for f in everything["fields"]} == {
        (CUSTOMERS, "payments", "oltp"),
        (TOPIC, "payments", "stream"),
        (RAW, "payments", "analytics"),
        (FRAUD_SCORES, "fraud", "oltp"),
    }

    fraud = await inventory(client, product="fraud")
    assert located(fraud) == {(FRAUD_DB, FRAUD_SCORES, "customer_email")}
    assert fraud["totalCount"] == 1
    assert located(await inventory(client, product="payments")) == {
        (PG, CUSTOMERS, "cpf"),
        (KAFKA, TOPIC, "cpf"),
        (BQ, RAW, "document"),
    }
    oltp = await inventory(client, tier="oltp")
    assert located(oltp) == {(PG, CUSTOMERS, "cpf"), (FRAUD_DB, FRAUD_SCORES, "customer_email")}
    assert located(await inventory(client, tier="oltp", product="payments")) == {(PG, CUSTOMERS, "cpf")}
    assert located(await inventory(client, tier="analytics")) == {(BQ, RAW, "document")}
    assert (await inventory(client, product="ledger"))["fields"] == []
    assert (await inventory(client, tier="file"))["fields"] == []
    # combined with the namespace filter and paged: the total counts every page
    page = await inventory(client, product="payments", limit=2, offset=1)
    assert page["totalCount"] == 3
    assert len(page["fields"]) == 2


async def test_inventory_as_of_cuts_fields_edges_and_decisions(client: httpx.AsyncClient) -> None:
    await batch(client, *payments_pipeline(day=1), fraud_event(1))
    # day 5: the fraud table starts copying the payments CPF (a new edge, propagated PII)
    await batch(client, fraud_event(5))
    now = await inventory(client, product="fraud")
    assert located(now) == {
        (FRAUD_DB, FRAUD_SCORES, "customer_email"),
        (FRAUD_DB, FRAUD_SCORES, "document"),
    }
    [document] = [f for f in now["fields"] if f["field"] == "document"]
    assert document["source"] == "propagated"
    assert document["path"][-2:] == [f"{BQ}/{RAW}#document", f"{FRAUD_DB}/{FRAUD_SCORES}#document"]

    # As of day 3 the field existed (seen on day 1) but the edge that brings the CPF did not.
    before = await inventory(client, product="fraud", asOf="2026-03-03T00:00:00Z")
    assert located(before) == {(FRAUD_DB, FRAUD_SCORES, "customer_email")}
    # Naive times are UTC.
    assert located(await inventory(client, product="fraud", asOf="2026-03-06T00:00:00")) == located(now)
    assert (await inventory(client, asOf="2026-02-01T00:00:00Z"))["fields"] == []

    # A steward's decisions count from when they were made (wall clock) until they are withdrawn.
    added = await client.post(
        "/api/v1/classifications/decisions",
        json={"namespace": BQ, "dataset": ORDERS, "field": "amount", "tag": "PII.NAME", "action": "add"},
    )
    assert added.status_code == 201, added.text
    rejected = await client.post(
        "/api/v1/classifications/decisions",
        json={
            "namespace": FRAUD_DB,
            "dataset": FRAUD_SCORES,
            "field": "customer_email",
            "tag": added.json()["tag"].replace("NAME", "EMAIL"),
            "action": "reject",
            "reason": "a test address",
        },
    )
    assert rejected.status_code == 201, rejected.text
    decided_at = rejected.json()["decidedAt"]
    current = await inventory(client)
    assert (BQ, ORDERS, "amount") in located(current)
    assert (FRAUD_DB, FRAUD_SCORES, "customer_email") not in located(current)
    # Before the decisions: the add is not there yet, and the rejected e-mail still is.
    earlier = await inventory(client, asOf="2026-03-06T00:00:00Z")
    assert (BQ, ORDERS, "amount") not in located(earlier)
    assert (FRAUD_DB, FRAUD_SCORES, "customer_email") in located(earlier)
    at_decision = await inventory(client, asOf=decided_at)
    assert (BQ, ORDERS, "amount") in located(at_decision)
    assert (FRAUD_DB, FRAUD_SCORES, "customer_email") not in located(at_decision)


async def test_inventory_items_carry_their_paths_whoever_asks(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """Paths are rebuilt only for the page shown (admin: paged in SQL; a product key: after its filter;
    GraphQL: after its authorisation) — each way must still fill them in and leak nothing internal."""
    await batch(client, *payments_pipeline())
    payments = await make_key(engine, "engineer", "payments")
    expected = [f"{KAFKA}/{TOPIC}#cpf", f"{BQ}/{RAW}#document"]
    admin = (await inventory(client))["fields"]
    mine = (await client.get("/api/v1/pii/inventory", headers=payments.headers)).json()["fields"]
    for fields in (admin, mine):
        assert next(f for f in fields if f["dataset"] == RAW)["path"] == expected
        assert (
            next(f for f in fields if f["dataset"] == CUSTOMERS)["path"] is None
        )  # detected, not propagated
        assert all(set(f) == set(admin[0]) for f in fields)
    assert "_trace" not in admin[0]
    assert (await inventory(client, offset=2, limit=1))["fields"] == admin[2:3]
    response = await client.post(
        "/graphql",
        json={"query": "{ piiInventory(first: 100) { nodes { dataset classification { path } } } }"},
        headers=payments.headers,
    )
    nodes = response.json()["data"]["piiInventory"]["nodes"]
    assert next(n for n in nodes if n["dataset"] == RAW)["classification"]["path"] == expected
