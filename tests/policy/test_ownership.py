"""Ownership cannot be taken over through ingest (issue 11, item 1).

A product's pipeline key may record that its own job read or wrote another product's dataset, but its
ownership facet never moves that dataset into its product, and its dataset facets (ownership, tags,
schema, dataSource, custom ones) never change the owner's view: a reader's schema may add a field it saw,
never drop or retype the owner's. The conflicting claim is kept as a candidate, audit-logged in the ingest
transaction, and opens an `ownership-conflict` finding for the owning product's steward. products.yaml
places first; an ownership facet places only a dataset the file does not, sent by that same product's key.
All through the HTTP API with real keys of each product, and `catalog rebuild` reproduces the result.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.ingest.rebuild import projection_fingerprint, rebuild_projection
from catalog.policies_in_force import Policies
from catalog.policy import files
from catalog.policy.products import ANY_EMITTER, Claim, load_product_map
from tests.factories import PRODUCER, at, column_lineage, dataset, run_event, schema
from tests.findings.helpers import source
from tests.keys import Key, make_key

CARDS_DB = "postgres://payments-db.internal:5432"
CARDS = "payments.public.cards"
PAYMENTS_JOB = ("airflow-payments", "payments_dag.load_cards")
FRAUD_JOB = ("airflow-fraud", "fraud_dag.score_cards")
FRAUD_DB = "postgres://fraud-db.internal:5432"
TLS_URI = "postgres://payments-db.internal:5432/payments?sslmode=verify-full"
INTERNALS = "other-products-internals-need-a-grant"
# Not placed by products.yaml: s3 namespaces have a tier (file) but no product, and no dataset pattern.
SHARED = "s3://shared-exports"
EXPORT = "exports/cards_daily.csv"

DATASET = """query($ns: String!, $n: String!) {
  dataset(namespace: $ns, name: $n) { product owners { name } fields { path type description } }
}"""
PRODUCT = (
    """query($ns: String!, $n: String!) { dataset(namespace: $ns, name: $n) { product owners { name } } }"""
)


def ownership(*owners: str) -> dict[str, Any]:
    return {
        "_producer": PRODUCER,
        "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/OwnershipDatasetFacet.json",
        "owners": [{"name": o, "type": "TEAM"} for o in owners],
    }


def tags(*entries: tuple[str | None, str]) -> dict[str, Any]:
    return {
        "_producer": PRODUCER,
        "_schemaURL": "https://openlineage.io/spec/facets/1-0-0/TagsDatasetFacet.json",
        "tags": [
            {"key": "classification", "value": tag, **({"field": field} if field else {})}
            for field, tag in entries
        ],
    }


def owners_cards() -> dict[str, Any]:
    """payments' own view of its cards table: PAN typed and described, a declared PCI tag, TLS source."""
    return dataset(
        CARDS_DB,
        CARDS,
        schema=schema(("id", "BIGINT"), {"name": "pan", "type": "CHAR(16)", "description": "card PAN"}),
        tags=tags(("pan", "PCI.PAN")),
        dataSource=source(TLS_URI, "payments-db"),
        ownership=ownership("team:payments", "user:paula"),
    )


def claimed_cards() -> dict[str, Any]:
    """fraud's claim: its ownership, a schema without the PAN (id retyped), no tags, a plaintext source."""
    return dataset(
        CARDS_DB,
        CARDS,
        schema=schema(("id", "TEXT"), ("seen_by_fraud", "TEXT")),
        tags=tags(),
        dataSource=source("postgres://payments-db.internal:5432/payments?sslmode=disable", "fraud-copy"),
        ownership=ownership("team:fraud"),
        fraudNotes={"_producer": PRODUCER, "_schemaURL": "https://example.com/fraud.json", "note": "mine"},
    )


async def post(client: httpx.AsyncClient, key: Key, event: dict[str, Any]) -> None:
    response = await client.post("/api/v1/lineage", json=event, headers=key.headers)
    assert response.status_code == 201, response.text


async def gql(client: httpx.AsyncClient, key: Key, query: str, ns: str, name: str) -> Any:
    response = await client.post(
        "/graphql", json={"query": query, "variables": {"ns": ns, "n": name}}, headers=key.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def dataset_url(ns: str, name: str) -> str:
    return f"/api/v1/namespaces/{quote(ns, safe='')}/datasets/{quote(name, safe='')}"


async def audit_rows(engine: AsyncEngine, action: str) -> list[Any]:
    async with engine.connect() as conn:
        return list(
            (
                await conn.execute(
                    text("SELECT actor, subject, details FROM audit_log WHERE action = :a ORDER BY seq"),
                    {"a": action},
                )
            ).mappings()
        )


async def conflicts(client: httpx.AsyncClient, key: Key) -> list[dict[str, Any]]:
    response = await client.get(
        "/api/v1/findings", params={"rule": "ownership-conflict", "product": key.product}, headers=key.headers
    )
    assert response.status_code == 200, response.text
    return list(response.json()["findings"])


@pytest.mark.parametrize("direction", ["outputs", "inputs"])
async def test_another_products_ownership_facet_changes_nothing_and_is_flagged(
    client: httpx.AsyncClient, engine: AsyncEngine, direction: str
) -> None:
    payments_pipeline = await make_key(engine, "pipeline", "payments")
    fraud_pipeline = await make_key(engine, "pipeline", "fraud")
    payments_engineer = await make_key(engine, "engineer", "payments")
    payments_steward = await make_key(engine, "steward", "payments")
    fraud_engineer = await make_key(engine, "engineer", "fraud")
    fraud_steward = await make_key(engine, "steward", "fraud")

    await post(client, payments_pipeline, run_event(when=at(1), job=PAYMENTS_JOB, outputs=[owners_cards()]))
    before = await client.get(dataset_url(CARDS_DB, CARDS), headers=payments_engineer.headers)
    assert before.status_code == 200, before.text

    # fraud's own job, the cards table as its output (or only its input), claimed, a day later: accepted
    scores = dataset(FRAUD_DB, "fraud.public.scores", schema=schema("id", "score"))
    io: dict[str, Any] = {"inputs": [claimed_cards()], "outputs": [scores]}
    if direction == "outputs":
        io = {"inputs": [], "outputs": [claimed_cards(), scores]}
    await post(client, fraud_pipeline, run_event(when=at(2), job=FRAUD_JOB, **io))

    # the product stays payments, in GraphQL for either product and in the product map's discovery
    for key in (payments_engineer, fraud_engineer):
        body = await gql(client, key, PRODUCT, CARDS_DB, CARDS)
        assert body["data"]["dataset"]["product"] == "payments", body
        assert {o["name"] for o in body["data"]["dataset"]["owners"]} == {"team:payments", "user:paula"}
    discovered = await client.get(
        "/api/v1/policy/discover", params={"q": "cards"}, headers=fraud_engineer.headers
    )
    assert [(d["name"], d["product"]) for d in discovered.json()["datasets"]] == [(CARDS, "payments")]

    # fraud's engineer still cannot read the columns (REST and GraphQL)
    denied = await client.get(dataset_url(CARDS_DB, CARDS), headers=fraud_engineer.headers)
    assert denied.status_code == 403, denied.text
    assert denied.json()["rule"] == INTERNALS
    fields = await gql(client, fraud_engineer, DATASET, CARDS_DB, CARDS)
    assert fields["data"]["dataset"]["fields"] is None
    assert fields["errors"][0]["extensions"]["rule"] == INTERNALS

    # payments' view is unchanged: owners, schema (PAN kept, id not retyped), source, declared tag, facets
    after = await client.get(dataset_url(CARDS_DB, CARDS), headers=payments_engineer.headers)
    assert after.status_code == 200, after.text
    view = after.json()
    assert view["facets"]["ownership"] == before.json()["facets"]["ownership"]
    assert [(f["name"], f["type"]) for f in view["fields"]] == [("id", "BIGINT"), ("pan", "CHAR(16)")]
    assert view["currentVersion"] == before.json()["currentVersion"]
    assert view["sourceUri"] == TLS_URI
    assert "fraudNotes" not in view["facets"]
    assert view["facets"]["tags"] == before.json()["facets"]["tags"]
    classified = await client.get(
        "/api/v1/classifications",
        params={"namespace": CARDS_DB, "dataset": CARDS},
        headers=payments_engineer.headers,
    )
    declared = {
        (c["field"], c["tag"]) for c in classified.json()["classifications"] if c["source"] == "declared"
    }
    assert declared == {("pan", "PCI.PAN")}
    # GraphQL's field list: fraud's schema only added the field it saw, it retyped nothing
    listed = await gql(client, payments_engineer, DATASET, CARDS_DB, CARDS)
    assert {(f["path"], f["type"]) for f in listed["data"]["dataset"]["fields"]} == {
        ("id", "BIGINT"),
        ("pan", "CHAR(16)"),
        ("seen_by_fraud", "TEXT"),
    }

    # the flow is recorded: fraud's job read/wrote the table
    job = await client.get(
        f"/api/v1/namespaces/{FRAUD_JOB[0]}/jobs/{FRAUD_JOB[1]}", headers=fraud_engineer.headers
    )
    assert job.status_code == 200, job.text
    assert {"namespace": CARDS_DB, "name": CARDS} in job.json()[direction]

    # the conflict: a finding for payments' steward (both products in evidence), none for fraud's
    (finding,) = await conflicts(client, payments_steward)
    assert finding["status"] == "open"
    assert finding["product"] == "payments"
    assert finding["evidence"]["products"] == ["fraud", "payments"]
    assert finding["evidence"]["chosen"] == "payments"
    fraud_claims = [c for c in finding["evidence"]["claims"] if c["sentBy"] == "fraud"]
    assert [(c["owner"], c["product"], c["accepted"]) for c in fraud_claims] == [
        ("team:fraud", "fraud", False)
    ]
    async with engine.connect() as conn:
        logged = await conn.scalar(
            text("SELECT id FROM event_log WHERE emitter_product = 'fraud' AND job_name = :j"),
            {"j": FRAUD_JOB[1]},
        )
    assert fraud_claims[0]["eventLogId"] == logged
    assert await conflicts(client, fraud_steward) == []

    # audit-logged, naming the key that sent it
    (audited,) = await audit_rows(engine, "ownership.conflict")
    assert audited["actor"] == fraud_pipeline.key_id
    assert audited["subject"] == f"dataset:{CARDS_DB}/{CARDS}"
    assert audited["details"]["sent_by"] == "fraud"
    assert audited["details"]["claimed_products"] == ["fraud"]
    assert audited["details"]["product"] == "payments"

    # `catalog rebuild` comes out identical, and the product is still payments
    async with engine.connect() as conn:
        live = await projection_fingerprint(conn)
    await rebuild_projection(engine, Policies.load(), batch_size=1)
    async with engine.connect() as conn:
        assert await projection_fingerprint(conn) == live
    assert (await gql(client, payments_engineer, PRODUCT, CARDS_DB, CARDS))["data"]["dataset"]["product"] == (
        "payments"
    )


async def test_an_ownership_facet_places_an_unplaced_dataset_only_from_that_products_key(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    merchant_pipeline = await make_key(engine, "pipeline", "merchant")
    fraud_pipeline = await make_key(engine, "pipeline", "fraud")
    merchant_engineer = await make_key(engine, "engineer", "merchant")
    merchant_steward = await make_key(engine, "steward", "merchant")
    fraud_engineer = await make_key(engine, "engineer", "fraud")

    # fraud claims the export for merchant: a key may not speak for another product, nothing is placed
    await post(
        client,
        fraud_pipeline,
        run_event(
            when=at(1),
            job=("airflow-fraud", "fraud_dag.peek"),
            inputs=[dataset(SHARED, EXPORT, ownership=ownership("team:merchant"))],
        ),
    )
    body = await gql(client, fraud_engineer, PRODUCT, SHARED, EXPORT)
    assert body["data"]["dataset"]["product"] is None, body
    assert body["data"]["dataset"]["owners"] == []  # fraud's facet was no owner's view either
    (refused,) = await audit_rows(engine, "ownership.conflict")
    assert refused["details"]["claimed_products"] == ["merchant"]
    assert refused["details"]["sent_by"] == "fraud"

    # merchant's own key places it
    export = dataset(
        SHARED, EXPORT, schema=schema(("card_id", "BIGINT")), ownership=ownership("team:merchant")
    )
    await post(
        client,
        merchant_pipeline,
        run_event(when=at(2), job=("airflow-merchant", "merchant_dag.export"), outputs=[export]),
    )
    for key in (merchant_engineer, fraud_engineer):
        assert (await gql(client, key, PRODUCT, SHARED, EXPORT))["data"]["dataset"]["product"] == "merchant"
    (placed,) = await audit_rows(engine, "ownership.placed")
    assert placed["actor"] == merchant_pipeline.key_id
    assert placed["details"]["product"] == "merchant"
    denied = await client.get(dataset_url(SHARED, EXPORT), headers=fraud_engineer.headers)
    assert denied.status_code == 403, denied.text
    assert denied.json()["rule"] == INTERNALS

    # fraud's own claim, even backdated before the placement, comes too late: merchant keeps it
    await post(
        client,
        fraud_pipeline,
        run_event(
            when=at(1, hour=1, month=1),
            job=("airflow-fraud", "fraud_dag.take"),
            outputs=[
                dataset(SHARED, EXPORT, schema=schema(("card_id", "TEXT")), ownership=ownership("team:fraud"))
            ],
        ),
    )
    body = await gql(client, merchant_engineer, DATASET, SHARED, EXPORT)
    assert body["data"]["dataset"]["product"] == "merchant", body
    assert [o["name"] for o in body["data"]["dataset"]["owners"]] == ["team:merchant"]
    assert [(f["path"], f["type"]) for f in body["data"]["dataset"]["fields"]] == [("card_id", "BIGINT")]
    denied = await client.get(dataset_url(SHARED, EXPORT), headers=fraud_engineer.headers)
    assert denied.status_code == 403, denied.text
    (finding,) = await conflicts(client, merchant_steward)
    assert finding["evidence"]["products"] == ["fraud", "merchant"]
    assert finding["evidence"]["chosen"] == "merchant"

    async with engine.connect() as conn:
        live = await projection_fingerprint(conn)
    await rebuild_projection(engine, Policies.load(), batch_size=2)
    async with engine.connect() as conn:
        assert await projection_fingerprint(conn) == live


async def test_a_dataset_nobody_owns_takes_anyones_facets_and_the_owner_keeps_column_lineage(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """No product owns it and no claim places it: every emitter's facets are its view. And another
    product's column lineage into an owned dataset adds edges without retiring the owner's."""
    fraud_pipeline = await make_key(engine, "pipeline", "fraud")
    payments_pipeline = await make_key(engine, "pipeline", "payments")
    admin = Key("admin", "admin", None, {})
    scratch = dataset(SHARED, "scratch/notes.csv", schema=schema(("note", "TEXT")))
    await post(
        client,
        fraud_pipeline,
        run_event(when=at(1), job=("airflow-fraud", "fraud_dag.notes"), outputs=[scratch]),
    )
    view = (await client.get(dataset_url(SHARED, "scratch/notes.csv"), headers=admin.headers)).json()
    assert [(f["name"], f["type"]) for f in view["fields"]] == [("note", "TEXT")]

    # payments' job declares where the PAN comes from; fraud then declares an (empty) lineage for it
    raw = dataset(CARDS_DB, "payments.public.raw_cards", schema=schema(("pan", "TEXT")))
    lineage = column_lineage(
        {"pan": [(CARDS_DB, "payments.public.raw_cards", "pan", "DIRECT", "IDENTITY", False)]}
    )
    cards = dataset(CARDS_DB, CARDS, schema=schema(("pan", "TEXT")), columnLineage=lineage)
    await post(
        client, payments_pipeline, run_event(when=at(1), job=PAYMENTS_JOB, inputs=[raw], outputs=[cards])
    )
    await post(
        client,
        fraud_pipeline,
        run_event(
            when=at(3),
            job=FRAUD_JOB,
            outputs=[dataset(CARDS_DB, CARDS, columnLineage=column_lineage({}))],
        ),
    )
    graph = await client.get(
        "/api/v1/column-lineage",
        params={"nodeId": f"datasetField:{CARDS_DB}:{CARDS}:pan", "depth": 1, "withDownstream": "false"},
        headers=admin.headers,
    )
    assert graph.status_code == 200, graph.text
    assert f"datasetField:{CARDS_DB}:payments.public.raw_cards:pan" in {
        n["id"] for n in graph.json()["graph"]
    }


def test_the_product_map_places_by_file_first_then_by_the_first_claim_its_own_product_sent() -> None:
    products = load_product_map(files.DEFAULT_DIR / "products.yaml")
    fraud_claim = Claim("team:fraud", "fraud", 5)
    # products.yaml first: the name pattern (and the namespace) say payments; the claim is a candidate
    placed = products.assign("dataset", CARDS_DB, CARDS, claims=[fraud_claim])
    assert (placed.product, placed.source, placed.conflict) == ("payments", "name", True)
    assert [c.as_json() for c in placed.claims] == [
        {"owner": "team:fraud", "product": "fraud", "sent_by": "fraud", "accepted": False, "event_log_id": 5}
    ]
    # not in the file: only a claim its own product (or a key acting for every product) sent places it,
    # the first in log order, whatever came later
    assert (
        products.assign("dataset", SHARED, EXPORT, claims=[Claim("team:merchant", "fraud", 1)]).product
        is None
    )
    later = products.assign(
        "dataset",
        SHARED,
        EXPORT,
        claims=[
            Claim("team:fraud", "fraud", 9),
            Claim("team:merchant", "merchant", 3),
            Claim("user:ana", "fraud", 1),
        ],
    )
    assert (later.product, later.source, later.conflict) == ("merchant", "ownership", True)
    assert (
        products.assign("dataset", SHARED, EXPORT, claims=[Claim("product:risk", ANY_EMITTER, 2)]).product
        == "risk"
    )
    # a job: the file first as well (its sender was authorised for every product its facet names)
    job = products.assign("job", "airflow-fraud", "fraud_dag.score", ["team:payments"])
    assert (job.product, job.conflict) == ("fraud", True)


@pytest.mark.parametrize("order", ["owner first", "reader first"])
async def test_a_readers_plaintext_transport_is_its_own_finding_though_it_changes_no_facet(
    client: httpx.AsyncClient, engine: AsyncEngine, order: str
) -> None:
    """Another product's dataSource never becomes the dataset's (above), yet the transport its job used is
    judged per flow: fraud's plaintext read of payments' table is flagged for fraud's job, payments' own TLS
    load is not, in either arrival order."""
    payments_pipeline = await make_key(engine, "pipeline", "payments")
    fraud_pipeline = await make_key(engine, "pipeline", "fraud")
    owner = run_event(when=at(1), job=PAYMENTS_JOB, outputs=[owners_cards()])
    reader = run_event(when=at(2), job=FRAUD_JOB, inputs=[claimed_cards()])
    sends = [(payments_pipeline, owner), (fraud_pipeline, reader)]
    for key, event in sends if order == "owner first" else reversed(sends):
        await post(client, key, event)

    response = await client.get("/api/v1/findings", params={"rule": "unencrypted-transfer", "status": "open"})
    assert response.status_code == 200, response.text
    flagged = [
        (f["subject"]["job"]["name"], f["subject"]["name"], f["subject"]["direction"], f["product"])
        for f in response.json()["findings"]
    ]
    assert flagged == [(FRAUD_JOB[1], CARDS, "input", "payments")]
    payments_view = await client.get(dataset_url(CARDS_DB, CARDS))
    assert payments_view.json()["facets"]["dataSource"]["uri"] == TLS_URI
