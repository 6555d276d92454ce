"""PII classification end to end: a CPF from a payments OLTP table through CDC to BigQuery, masked in one
branch and not in another; a loop in the lineage; a steward rejecting a false positive that survives
re-ingest and rebuild; declared tags; precedence."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.ingest.rebuild import projection_fingerprint, rebuild_projection
from catalog.policies_in_force import Policies
from tests.factories import at, column_lineage, dataset, run_event, schema

PG = "postgres://payments-db:5432"
KAFKA = "kafka://payments-kafka:9093"
BQ = "bigquery"

CUSTOMERS = "payments.public.customers"
TOPIC = "payments.public.customers.cdc"
RAW = "analytics.payments.customers_raw"
MASKED = "analytics.payments.customers_masked"
SEGMENTS = "analytics.marketing.segments"
DAILY = "analytics.payments.daily_counts"
ORDERS = "analytics.payments.orders_enriched"

CUSTOMER_SCHEMA = schema(
    ("id", "BIGINT"),
    ("cpf", "STRING"),
    ("email_verified", "BOOLEAN"),
    ("phone_count", "INT64"),
    ("cpf_hash", "STRING"),
)


def identity(ns: str, name: str, field: str) -> tuple[str, str, str, str, str, bool]:
    return (ns, name, field, "DIRECT", "IDENTITY", False)


async def batch(client: httpx.AsyncClient, *events: dict[str, Any]) -> None:
    response = await client.post("/api/v1/lineage/batch", content=orjson.dumps(list(events)))
    assert response.status_code in (200, 204), response.text


def payments_pipeline(day: int = 1) -> list[dict[str, Any]]:
    """OLTP -> Debezium topic -> BigQuery raw (unmasked) and masked copies -> marketing segments;
    a daily count (aggregation) and an orders table joined on the CPF (indirect)."""
    source = dataset(PG, CUSTOMERS, schema=CUSTOMER_SCHEMA)
    topic = dataset(
        KAFKA,
        TOPIC,
        schema=schema("cpf", "id"),
        columnLineage=column_lineage(
            {"cpf": [identity(PG, CUSTOMERS, "cpf")], "id": [identity(PG, CUSTOMERS, "id")]}
        ),
    )
    raw = dataset(
        BQ,
        RAW,
        schema=schema("document", "id"),  # renamed: only lineage can tell it holds the CPF
        columnLineage=column_lineage(
            {"document": [identity(KAFKA, TOPIC, "cpf")], "id": [identity(KAFKA, TOPIC, "id")]}
        ),
    )
    masked = dataset(
        BQ,
        MASKED,
        schema=schema("customer_key"),
        columnLineage=column_lineage(
            {"customer_key": [(KAFKA, TOPIC, "cpf", "DIRECT", "TRANSFORMATION", True)]}  # sha256(cpf)
        ),
    )
    segments = dataset(
        BQ,
        SEGMENTS,
        schema=schema("customer_key"),
        columnLineage=column_lineage({"customer_key": [identity(BQ, MASKED, "customer_key")]}),
    )
    daily = dataset(
        BQ,
        DAILY,
        schema=schema(("customers", "INT64")),
        columnLineage=column_lineage({"customers": [(BQ, RAW, "document", "DIRECT", "AGGREGATION", False)]}),
    )
    orders = dataset(
        BQ,
        ORDERS,
        schema=schema(("amount", "NUMERIC")),
        columnLineage=column_lineage({"amount": [(BQ, RAW, "document", "INDIRECT", "JOIN", False)]}),
    )
    when = at(day)
    return [
        run_event(when=when, job=("debezium", "payments-cdc"), inputs=[source], outputs=[topic]),
        run_event(when=when, job=("airflow-payments", "bq_load_raw"), inputs=[topic], outputs=[raw]),
        run_event(when=when, job=("airflow-payments", "bq_load_masked"), inputs=[topic], outputs=[masked]),
        run_event(when=when, job=("airflow-marketing", "segments"), inputs=[masked], outputs=[segments]),
        run_event(when=when, job=("airflow-payments", "daily"), inputs=[raw], outputs=[daily]),
        run_event(when=when, job=("airflow-payments", "orders"), inputs=[raw], outputs=[orders]),
    ]


async def classifications(client: httpx.AsyncClient, ns: str, name: str) -> dict[str | None, list[Any]]:
    response = await client.get("/api/v1/classifications", params={"namespace": ns, "dataset": name})
    assert response.status_code == 200, response.text
    out: dict[str | None, list[Any]] = {}
    for c in response.json()["classifications"]:
        out.setdefault(c["field"], []).append(c)
    return out


async def test_cpf_flows_from_oltp_through_cdc_to_bigquery_masked_in_one_branch(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await batch(client, *payments_pipeline())

    source = await classifications(client, PG, CUSTOMERS)
    assert [(c["tag"], c["source"]) for c in source["cpf"]] == [("PII.CPF", "detected")]
    # hard negatives in the same table: hash, boolean, count
    assert "cpf_hash" not in source
    assert "email_verified" not in source
    assert "phone_count" not in source

    raw = await classifications(client, BQ, RAW)
    (document,) = raw["document"]
    # The topic's `cpf` is detected itself, so the nearest classified origin is one hop up.
    assert (document["tag"], document["source"], document["status"], document["depth"]) == (
        "PII.CPF",
        "propagated",
        "pii",
        1,
    )
    assert document["path"] == [f"{KAFKA}/{TOPIC}#cpf", f"{BQ}/{RAW}#document"]

    masked = await classifications(client, BQ, MASKED)
    assert [(c["tag"], c["status"]) for c in masked["customer_key"]] == [("PII.CPF", "masked")]
    segments = await classifications(client, BQ, SEGMENTS)
    # Like `document` above, depth counts from the nearest classified origin (the topic's detected `cpf`):
    # topic#cpf -> masked#customer_key -> segments#customer_key. The flow read below counts from the OLTP
    # column the question starts at, so there the same field is 3 hops away.
    assert [(c["tag"], c["status"], c["depth"], c["path"]) for c in segments["customer_key"]] == [
        (
            "PII.CPF",
            "masked",
            2,
            [f"{KAFKA}/{TOPIC}#cpf", f"{BQ}/{MASKED}#customer_key", f"{BQ}/{SEGMENTS}#customer_key"],
        )
    ]
    assert await classifications(client, BQ, DAILY) == {}  # an aggregation does not carry the value
    assert await classifications(client, BQ, ORDERS) == {}  # a join key influences, does not carry

    # The dataset read shows effective, unmasked PII tags on its fields.
    body = (await client.get(f"/api/v1/namespaces/{BQ}/datasets/{RAW}")).json()
    assert {f["name"]: f["tags"] for f in body["fields"]} == {"document": ["PII.CPF"], "id": []}
    body = (await client.get(f"/api/v1/namespaces/{BQ}/datasets/{MASKED}")).json()
    assert {f["name"]: f["tags"] for f in body["fields"]} == {"customer_key": []}

    inventory = (await client.get("/api/v1/pii/inventory")).json()
    located = {(f["namespace"], f["dataset"], f["field"]) for f in inventory["fields"]}
    assert located == {(PG, CUSTOMERS, "cpf"), (KAFKA, TOPIC, "cpf"), (BQ, RAW, "document")}
    only_bq = (await client.get("/api/v1/pii/inventory", params={"namespace": BQ})).json()
    assert [(f["dataset"], f["field"]) for f in only_bq["fields"]] == [(RAW, "document")]
    before = (await client.get("/api/v1/pii/inventory", params={"asOf": "2026-02-01T00:00:00Z"})).json()
    assert before["fields"] == []
    # Product and tier come from the product assignments (tests/classification/test_inventory_filters.py).
    payments = (await client.get("/api/v1/pii/inventory", params={"product": "payments"})).json()
    assert {(f["dataset"], f["product"]) for f in payments["fields"]} == {
        (CUSTOMERS, "payments"),
        (TOPIC, "payments"),
        (RAW, "payments"),
    }

    flow = (
        await client.get("/api/v1/pii/flow", params={"namespace": PG, "dataset": CUSTOMERS, "field": "cpf"})
    ).json()
    hops = {(h["to"]["dataset"], h["to"]["field"]): h for h in flow["hops"]}
    assert hops[(TOPIC, "cpf")]["effect"] == "carries"
    assert hops[(TOPIC, "cpf")]["depth"] == 1
    assert hops[(MASKED, "customer_key")]["maskingPoint"] is True
    assert hops[(MASKED, "customer_key")]["effect"] == "masked"
    assert hops[(SEGMENTS, "customer_key")]["depth"] == 3
    assert hops[(DAILY, "customers")]["effect"] == "aggregated"
    assert hops[(ORDERS, "amount")]["effect"] == "influences"
    assert hops[(RAW, "document")]["targetClassifications"][0]["tag"] == "PII.CPF"

    # Everything derived comes back identical from the log.
    async with engine.connect() as conn:
        live = await projection_fingerprint(conn)
    await rebuild_projection(engine, Policies.load(), batch_size=2)
    async with engine.connect() as conn:
        assert await projection_fingerprint(conn) == live
    assert live["classifications"][0] >= 6


async def test_a_loop_in_the_lineage_terminates_and_propagates_once_the_seed_arrives(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    ns = "postgres://ledger-db:5432"

    def hop(target: str, source: str, when: str) -> dict[str, Any]:
        out = dataset(
            ns,
            target,
            schema=schema("value"),
            columnLineage=column_lineage({"value": [identity(ns, source, "value")]}),
        )
        return run_event(
            when=when, job=("sync", f"{source}->{target}"), inputs=[dataset(ns, source)], outputs=[out]
        )

    # a -> b -> c -> a: a cycle with nothing classified yet
    await batch(client, hop("b", "a", at(1)), hop("c", "b", at(1)), hop("a", "c", at(1)))
    assert await classifications(client, ns, "a") == {}
    # Then a steward marks a.value as a CPF: it travels round the loop once and stops.
    response = await client.post(
        "/api/v1/classifications/decisions",
        json={
            "namespace": ns,
            "dataset": "a",
            "field": "value",
            "tag": "PII.CPF",
            "action": "add",
            "reason": "holds CPFs",
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["author"] == "bootstrap admin (admin-token)"
    a, b, c = [await classifications(client, ns, name) for name in "abc"]
    assert [(x["source"], x["depth"]) for x in a["value"]] == [("manual", 0)]
    assert [(x["source"], x["depth"]) for x in b["value"]] == [("propagated", 1)]
    assert [(x["source"], x["depth"]) for x in c["value"]] == [("propagated", 2)]
    # A new edge from a classified column propagates on ingest: d is fed by c.
    await batch(client, hop("d", "c", at(2)))
    d = await classifications(client, ns, "d")
    assert [(x["tag"], x["depth"]) for x in d["value"]] == [("PII.CPF", 3)]
    async with engine.connect() as conn:
        live = await projection_fingerprint(conn)
    await rebuild_projection(engine, Policies.load(), batch_size=1)
    async with engine.connect() as conn:
        assert await projection_fingerprint(conn) == live


async def test_a_steward_rejects_a_false_positive_and_it_survives_reingest_and_rebuild(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    ns = "postgres://marketing-db:5432"
    campaigns = dataset(ns, "marketing.public.campaigns", schema=schema("agencia", "budget"))  # an ad agency
    # The copy is renamed so that only lineage makes it PII: a copy still named `agencia` would be detected
    # by its own name (detected outranks propagated) and would need its own decision.
    report = dataset(
        BQ,
        "analytics.marketing.campaigns",
        schema=schema("agency_name"),
        columnLineage=column_lineage(
            {"agency_name": [identity(ns, "marketing.public.campaigns", "agencia")]}
        ),
    )
    await batch(
        client, run_event(when=at(1), job=("airflow", "campaigns"), inputs=[campaigns], outputs=[report])
    )
    detected = await classifications(client, ns, "marketing.public.campaigns")
    assert [c["tag"] for c in detected["agencia"]] == ["PII.BANK_ACCOUNT"]
    assert [
        c["source"]
        for c in (await classifications(client, BQ, "analytics.marketing.campaigns"))["agency_name"]
    ] == ["propagated"]

    response = await client.post(
        "/api/v1/classifications/decisions",
        json={
            "namespace": ns,
            "dataset": "marketing.public.campaigns",
            "field": "agencia",
            "tag": "PII.BANK_ACCOUNT",
            "action": "reject",
            "reason": "advertising agency name, not a bank branch",
        },
    )
    assert response.status_code == 201, response.text
    decision = response.json()
    assert decision["author"]
    assert decision["reason"].startswith("advertising")
    assert decision["decidedAt"]
    assert await classifications(client, ns, "marketing.public.campaigns") == {}
    assert await classifications(client, BQ, "analytics.marketing.campaigns") == {}  # re-propagated

    # Re-ingest (a new run re-detects the field) and rebuild: the reject still holds.
    await batch(
        client, run_event(when=at(2), job=("airflow", "campaigns"), inputs=[campaigns], outputs=[report])
    )
    assert await classifications(client, ns, "marketing.public.campaigns") == {}
    async with engine.connect() as conn:
        live = await projection_fingerprint(conn)
    await rebuild_projection(engine, Policies.load())
    async with engine.connect() as conn:
        assert await projection_fingerprint(conn) == live
    assert await classifications(client, ns, "marketing.public.campaigns") == {}
    assert await classifications(client, BQ, "analytics.marketing.campaigns") == {}
    listed = (await client.get("/api/v1/classifications/decisions", params={"namespace": ns})).json()
    assert [d["action"] for d in listed["decisions"]] == ["reject"]

    # Withdrawing the decision brings the detection back, downstream too; the decision stays for audit.
    assert (await client.delete(f"/api/v1/classifications/decisions/{decision['id']}")).status_code == 200
    assert [
        c["source"]
        for c in (await classifications(client, BQ, "analytics.marketing.campaigns"))["agency_name"]
    ] == ["propagated"]
    audit = (
        await client.get(
            "/api/v1/classifications/decisions", params={"namespace": ns, "includeRetired": "true"}
        )
    ).json()
    assert audit["decisions"][0]["retiredAt"] is not None
    assert (await client.delete(f"/api/v1/classifications/decisions/{decision['id']}")).status_code == 404


async def test_declared_tags_and_precedence(client: httpx.AsyncClient) -> None:
    ns = "postgres://onboarding-db:5432"
    tags = {
        "_producer": "https://example/tests",
        "_schemaURL": "https://openlineage.io/spec/facets/1-0-0/TagsDatasetFacet.json",
        "tags": [
            {"key": "classification", "value": "PII.CPF", "field": "doc"},
            {"key": "pii", "value": "true"},
            {"key": "environment", "value": "production"},
        ],
    }
    fields = schema(
        "doc",
        {
            "name": "contact",
            "type": "STRUCT",
            "fields": [{"name": "handle", "type": "STRING", "tags": ["PII.EMAIL"]}],
        },
        ("cpf", "STRING"),
    )
    applicants = dataset(ns, "onboarding.public.applicants", schema=fields, tags=tags)
    await batch(client, run_event(when=at(1), job=("airflow", "onboarding"), outputs=[applicants]))
    found = await classifications(client, ns, "onboarding.public.applicants")
    assert [(c["tag"], c["source"]) for c in found[None]] == [("PII", "declared")]
    assert [(c["tag"], c["source"]) for c in found["doc"]] == [("PII.CPF", "declared")]
    assert [(c["tag"], c["source"]) for c in found["contact.handle"]] == [("PII.EMAIL", "declared")]
    assert [(c["tag"], c["source"]) for c in found["cpf"]] == [("PII.CPF", "detected")]

    # manual > declared: a steward's confirmation takes over; a dataset read shows the tags.
    response = await client.post(
        "/api/v1/classifications/decisions",
        json={
            "namespace": ns,
            "dataset": "onboarding.public.applicants",
            "field": "doc",
            "tag": "PII.CPF",
            "action": "confirm",
        },
    )
    assert response.status_code == 201
    found = await classifications(client, ns, "onboarding.public.applicants")
    assert [(c["tag"], c["source"]) for c in found["doc"]] == [("PII.CPF", "manual")]
    body = (
        await client.get(f"/api/v1/namespaces/{quote(ns, safe='')}/datasets/onboarding.public.applicants")
    ).json()
    assert body["tags"] == ["PII"]
    assert {f["name"]: f["tags"] for f in body["fields"]}["contact.handle"] == ["PII.EMAIL"]

    # Unknown targets are 404s, not 500s.
    missing = await client.post(
        "/api/v1/classifications/decisions",
        json={
            "namespace": ns,
            "dataset": "onboarding.public.applicants",
            "field": "nope",
            "tag": "PII.CPF",
            "action": "add",
        },
    )
    assert missing.status_code == 404
