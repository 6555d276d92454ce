"""The design's governance rules, each firing and not firing, driven through the real ingest API
(`POST /api/v1/lineage/batch`) and read back through the findings REST API; the findings lifecycle
(resolve on a later event, waive by a steward) and secret redaction before storage."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.factories import at, column_lineage, dataset, run_event, schema
from tests.findings.helpers import (
    FRAUD_DB,
    PAYMENTS_DB,
    PAYMENTS_KAFKA,
    findings,
    ingest,
    job_type,
    source,
)
from tests.keys import make_key

BQ = "bigquery"
PAYMENTS_JOB = ("airflow-payments", "payments_dag.load")
FRAUD_JOB = ("airflow-fraud", "fraud_dag.score")
LOOKER_JOB = ("looker", "payments.revenue_dashboard")
PG_TLS = "postgres://payments-db-1.internal:5432/payments?sslmode=verify-full"
JDBC_PLAIN = "jdbc:postgresql://payments-db-1.internal:5432/payments"


def about(rows: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """Findings whose subject names the dataset (or column's dataset, or job) `name`."""
    out = []
    for row in rows:
        subject = row["subject"]
        if name in {subject.get("name"), (subject.get("job") or {}).get("name")}:
            out.append(row)
    return out


def read_with(uri: str, name: str, *fields: str, namespace: str = PAYMENTS_DB) -> dict[str, Any]:
    return dataset(namespace, name, dataSource=source(uri), schema=schema(*(fields or ("id",))))


# -- unencrypted transfer ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("namespace", "uri", "fires"),
    [
        (PAYMENTS_DB, PG_TLS, False),
        (PAYMENTS_DB, "postgres://payments-db-1.internal:5432/payments?sslmode=prefer", True),
        (PAYMENTS_DB, "postgres://payments-db-1.internal:5432/payments", True),
        (PAYMENTS_DB, JDBC_PLAIN, True),
        (PAYMENTS_DB, JDBC_PLAIN + "?ssl=true", False),
        (PAYMENTS_KAFKA, "kafka://payments-kafka.internal:9093?security.protocol=PLAINTEXT", True),
        (PAYMENTS_KAFKA, "kafka://payments-kafka.internal:9093?security.protocol=SASL_SSL", False),
        ("http://partner.example.com", "http://partner.example.com/api", True),
        ("https://partner.example.com", "https://partner.example.com/api", False),
        ("redis://cache.internal:6379", "redis://cache.internal:6379", True),
        ("rediss://cache.internal:6380", "rediss://cache.internal:6380", False),
    ],
)
async def test_unencrypted_transfer(client: httpx.AsyncClient, namespace: str, uri: str, fires: bool) -> None:
    run = run_event(job=PAYMENTS_JOB, inputs=[read_with(uri, "payments.transactions", namespace=namespace)])
    await ingest(client, run)
    fired = about(await findings(client, "unencrypted-transfer"), "payments.transactions")
    if not fires:
        assert fired == []
        return
    assert len(fired) == 1, fired
    finding = fired[0]
    assert finding["status"] == "open"
    assert finding["severity"] == "high"
    assert finding["evidence"]["uri"] == uri
    assert finding["evidence"]["runId"] == run["run"]["runId"]
    assert finding["evidence"]["reason"]


async def test_unencrypted_transfer_resolves_when_the_job_moves_to_tls(client: httpx.AsyncClient) -> None:
    """open → resolved when a later event shows the job connecting with sslmode=verify-full; an older
    event arriving late does not reopen it."""
    plain = read_with(JDBC_PLAIN, "payments.transactions")
    await ingest(client, run_event(job=PAYMENTS_JOB, when=at(1), inputs=[plain]))
    [opened] = await findings(client, "unencrypted-transfer")
    assert opened["status"] == "open"

    fixed = read_with(PG_TLS, "payments.transactions")
    await ingest(client, run_event(job=PAYMENTS_JOB, when=at(2), inputs=[fixed]))
    [resolved] = await findings(client, "unencrypted-transfer")
    assert resolved["id"] == opened["id"]
    assert resolved["status"] == "resolved"

    await ingest(client, run_event(job=PAYMENTS_JOB, when=at(1, 12), inputs=[plain]))
    [still] = await findings(client, "unencrypted-transfer")
    assert still["status"] == "resolved"


async def test_unencrypted_transfer_is_more_severe_when_the_dataset_holds_pii(
    client: httpx.AsyncClient,
) -> None:
    customers = read_with(JDBC_PLAIN, "payments.customers", "id", "cpf")
    await ingest(client, run_event(job=PAYMENTS_JOB, inputs=[customers]))
    [finding] = await findings(client, "unencrypted-transfer")
    assert finding["severity"] == "critical"
    assert finding["evidence"]["pii"] is True


# -- unlineaged transfer -------------------------------------------------------------------------------


async def test_unlineaged_transfer_written_with_no_input(client: httpx.AsyncClient) -> None:
    orphan = dataset(BQ, "proj.payments.orphan", schema=schema("id"))
    await ingest(client, run_event(job=PAYMENTS_JOB, outputs=[orphan]))
    [finding] = about(await findings(client, "unlineaged-transfer"), "proj.payments.orphan")
    assert finding["status"] == "open"
    assert "read nothing" in finding["evidence"]["reason"]
    assert finding["product"] == "payments"


async def test_unlineaged_transfer_does_not_fire_for_a_dataset_made_from_inputs(
    client: httpx.AsyncClient,
) -> None:
    copy = dataset(BQ, "proj.payments.transactions", schema=schema("id"))
    tx = read_with(PG_TLS, "payments.transactions")
    await ingest(client, run_event(job=PAYMENTS_JOB, inputs=[tx], outputs=[copy]))
    assert about(await findings(client, "unlineaged-transfer"), "proj.payments.transactions") == []


async def test_unlineaged_analytics_dataset_that_no_job_produces(client: httpx.AsyncClient) -> None:
    """A BigQuery table read by a job but produced by none: data with no lineage to where it came from."""
    stray = dataset(BQ, "proj.payments.manual_upload", schema=schema("id"))
    out = dataset(BQ, "proj.payments.report", schema=schema("id"))
    await ingest(client, run_event(job=PAYMENTS_JOB, inputs=[stray], outputs=[out]))
    [finding] = about(await findings(client, "unlineaged-transfer"), "proj.payments.manual_upload")
    assert "no job produces" in finding["evidence"]["reason"]
    # its consumer's output does have lineage (to the stray table)
    assert about(await findings(client, "unlineaged-transfer"), "proj.payments.report") == []


async def test_unlineaged_transfer_resolves_when_an_input_appears(client: httpx.AsyncClient) -> None:
    orphan = dataset(BQ, "proj.payments.orphan", schema=schema("id"))
    await ingest(client, run_event(job=PAYMENTS_JOB, when=at(1), outputs=[orphan]))
    tx = read_with(PG_TLS, "payments.transactions")
    await ingest(client, run_event(job=PAYMENTS_JOB, when=at(2), inputs=[tx], outputs=[orphan]))
    [finding] = about(await findings(client, "unlineaged-transfer"), "proj.payments.orphan")
    assert finding["status"] == "resolved"


# -- unlineaged transfer, column level (its own registry entry: `unlineaged_pii_column`) ----------------


def copy_of_customers(*explained: str) -> dict[str, Any]:
    """payments' BigQuery copy of its customers (id, cpf), column lineage explaining `explained`."""
    edges = {f: [(PAYMENTS_DB, "payments.customers", f, "DIRECT", "IDENTITY", False)] for f in explained}
    return dataset(
        BQ, "proj.payments.customers", schema=schema("id", "cpf"), columnLineage=column_lineage(edges)
    )


async def test_a_pii_column_no_column_lineage_explains_is_its_own_finding(client: httpx.AsyncClient) -> None:
    customers = read_with(PG_TLS, "payments.customers", "id", "cpf")
    await ingest(
        client, run_event(job=PAYMENTS_JOB, when=at(1), inputs=[customers], outputs=[copy_of_customers("id")])
    )
    [finding] = about(await findings(client, "unlineaged-transfer"), "proj.payments.customers")
    assert finding["subject"] == {
        "kind": "field",
        "namespace": BQ,
        "name": "proj.payments.customers",
        "field": "cpf",
    }
    assert (finding["status"], finding["severity"], finding["product"]) == ("open", "high", "payments")
    assert finding["evidence"]["tags"] == ["PII.CPF"]
    assert finding["evidence"]["pii"] is True
    assert finding["evidence"]["producingJobs"] == [{"namespace": PAYMENTS_JOB[0], "name": PAYMENTS_JOB[1]}]

    # the job's newer lineage explains the column: resolved (the copy is now pii-unmasked's to judge)
    await ingest(
        client,
        run_event(job=PAYMENTS_JOB, when=at(2), inputs=[customers], outputs=[copy_of_customers("id", "cpf")]),
    )
    [resolved] = about(await findings(client, "unlineaged-transfer"), "proj.payments.customers")
    assert (resolved["id"], resolved["status"]) == (finding["id"], "resolved")


async def test_a_dataset_written_from_nothing_is_one_finding_not_one_per_pii_column(
    client: httpx.AsyncClient,
) -> None:
    orphan = dataset(BQ, "proj.payments.people", schema=schema("id", "cpf", "email"))
    await ingest(client, run_event(job=PAYMENTS_JOB, outputs=[orphan]))
    [finding] = about(await findings(client, "unlineaged-transfer"), "proj.payments.people")
    assert finding["subject"]["kind"] == "dataset"


# -- cross-product access ------------------------------------------------------------------------------


async def test_cross_product_read_without_a_grant(client: httpx.AsyncClient) -> None:
    tx = read_with(PG_TLS, "payments.transactions")
    await ingest(client, run_event(job=FRAUD_JOB, inputs=[tx]))
    [finding] = await findings(client, "cross-product-access")
    assert finding["status"] == "open"
    assert finding["severity"] == "high"
    evidence = finding["evidence"]
    assert evidence["job"] == {"namespace": FRAUD_JOB[0], "name": FRAUD_JOB[1]}
    assert (evidence["namespace"], evidence["dataset"]) == (PAYMENTS_DB, "payments.transactions")
    assert (evidence["jobProduct"], evidence["datasetProduct"]) == ("fraud", "payments")
    assert evidence["direction"] == "input"
    assert finding["subject"] == {
        "kind": "flow",
        "namespace": PAYMENTS_DB,
        "name": "payments.transactions",
        "job": {"namespace": FRAUD_JOB[0], "name": FRAUD_JOB[1]},
        "direction": "input",
    }
    assert finding["subjectDisplay"] == (
        f"job {FRAUD_JOB[1]} in {FRAUD_JOB[0]} reads dataset payments.transactions in {PAYMENTS_DB}"
    )


async def test_reading_own_product_is_not_cross_product(client: httpx.AsyncClient) -> None:
    tx = read_with(PG_TLS, "payments.transactions")
    await ingest(client, run_event(job=PAYMENTS_JOB, inputs=[tx]))
    assert await findings(client, "cross-product-access") == []


async def test_a_grant_resolves_cross_product_access_and_a_revoke_reopens_it(
    client: httpx.AsyncClient,
) -> None:
    tx = read_with(PG_TLS, "payments.transactions")
    await ingest(client, run_event(job=FRAUD_JOB, inputs=[tx]))
    granted = await client.post(
        "/api/v1/grants",
        json={
            "grantor_product": "payments",
            "grantee_product": "fraud",
            "scope": "dataset",
            "namespace": PAYMENTS_DB,
            "name": "payments.transactions",
            "reason": "fraud scoring reads settled transactions (RISK-114)",
            "expires_at": (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).isoformat(),
        },
    )
    assert granted.status_code == 201, granted.text
    [finding] = await findings(client, "cross-product-access")
    assert finding["status"] == "resolved"

    # a grant covers reads only: the same job writing into payments' database is still a crossing
    await ingest(
        client, run_event(job=FRAUD_JOB, inputs=[tx], outputs=[read_with(PG_TLS, "payments.scores")])
    )
    crossings = await findings(client, "cross-product-access", status="open")
    assert [f["evidence"]["direction"] for f in crossings] == ["output"]

    revoked = await client.delete(f"/api/v1/grants/{granted.json()['id']}")
    assert revoked.status_code == 200, revoked.text
    reopened = about(await findings(client, "cross-product-access", status="open"), "payments.transactions")
    assert [f["id"] for f in reopened] == [finding["id"]]


# -- shared database -----------------------------------------------------------------------------------


async def test_shared_database(client: httpx.AsyncClient) -> None:
    ours = read_with(PG_TLS, "payments.transactions")
    theirs = read_with(PG_TLS, "merchant.accounts")
    await ingest(client, run_event(job=PAYMENTS_JOB, inputs=[ours, theirs]))
    # one finding per product with datasets in the database: each product's steward sees its own part
    rows = sorted(await findings(client, "shared-database"), key=lambda f: f["product"])
    assert [f["product"] for f in rows] == ["merchant", "payments"]
    for row, datasets in zip(rows, (["merchant.accounts"], ["payments.transactions"]), strict=True):
        assert row["subject"] == {"kind": "namespace", "namespace": PAYMENTS_DB, "name": None}
        assert row["evidence"]["products"] == ["merchant", "payments"]
        assert row["evidence"]["datasets"] == datasets
        assert row["subjectDisplay"] == f"database {PAYMENTS_DB}"


async def test_one_products_database_is_not_shared(client: httpx.AsyncClient) -> None:
    a = read_with(PG_TLS, "payments.transactions")
    b = read_with(PG_TLS, "payments.refunds")
    c = dataset(FRAUD_DB, "fraud.scores", schema=schema("id"))
    await ingest(client, run_event(job=PAYMENTS_JOB, inputs=[a, b, c]))
    assert await findings(client, "shared-database") == []


# -- analytics on OLTP ---------------------------------------------------------------------------------


async def test_bi_tool_reading_the_cdc_copy_does_not_fire(client: httpx.AsyncClient) -> None:
    cdc_copy = dataset(BQ, "proj.payments.transactions_cdc", schema=schema("id"))
    await ingest(
        client,
        run_event(job=LOOKER_JOB, inputs=[cdc_copy], job_facets={"jobType": job_type("LOOKER")}),
    )
    assert await findings(client, "analytics-on-oltp") == []


async def test_bi_tool_reading_the_oltp_database_fires(client: httpx.AsyncClient) -> None:
    oltp = read_with(PG_TLS, "payments.transactions")
    await ingest(client, run_event(job=LOOKER_JOB, inputs=[oltp], job_facets={"jobType": job_type("LOOKER")}))
    [finding] = await findings(client, "analytics-on-oltp")
    assert finding["status"] == "open"
    assert finding["evidence"]["namespace"] == PAYMENTS_DB
    assert finding["evidence"]["datasets"] == ["payments.transactions"]
    assert finding["evidence"]["job"] == {"namespace": LOOKER_JOB[0], "name": LOOKER_JOB[1]}


async def test_an_etl_job_reading_oltp_is_not_analytics(client: httpx.AsyncClient) -> None:
    oltp = read_with(PG_TLS, "payments.transactions")
    await ingest(
        client, run_event(job=PAYMENTS_JOB, inputs=[oltp], job_facets={"jobType": job_type("SPARK")})
    )
    assert await findings(client, "analytics-on-oltp") == []


async def test_analytics_on_oltp_resolves_when_the_dashboard_moves_to_the_cdc_copy(
    client: httpx.AsyncClient,
) -> None:
    facets = {"jobType": job_type("LOOKER")}
    oltp = read_with(PG_TLS, "payments.transactions")
    cdc_copy = dataset(BQ, "proj.payments.transactions_cdc", schema=schema("id"))
    await ingest(client, run_event(job=LOOKER_JOB, when=at(1), inputs=[oltp], job_facets=facets))
    await ingest(client, run_event(job=LOOKER_JOB, when=at(2), inputs=[cdc_copy], job_facets=facets))
    [finding] = await findings(client, "analytics-on-oltp")
    assert finding["status"] == "resolved"


# -- PII leaving its boundary unmasked -----------------------------------------------------------------


def pii_copy(target_ns: str, target: str, *, masking: bool) -> dict[str, Any]:
    customers = read_with(PG_TLS, "payments.customers", "id", "cpf")
    target_field = "cpf_masked" if masking else "cpf"
    out = dataset(
        target_ns,
        target,
        schema=schema("id", target_field),
        columnLineage=column_lineage(
            {
                "id": [(PAYMENTS_DB, "payments.customers", "id", "DIRECT", "IDENTITY", False)],
                target_field: [
                    (PAYMENTS_DB, "payments.customers", "cpf", "DIRECT", "TRANSFORMATION", masking)
                ],
            }
        ),
    )
    return run_event(job=PAYMENTS_JOB, inputs=[customers], outputs=[out])


async def test_pii_copied_unmasked_into_analytics(client: httpx.AsyncClient) -> None:
    await ingest(client, pii_copy(BQ, "proj.payments.customers", masking=False))
    [finding] = await findings(client, "pii-unmasked")
    assert finding["status"] == "open"
    assert finding["severity"] == "critical"
    evidence = finding["evidence"]
    assert (evidence["namespace"], evidence["dataset"], evidence["field"]) == (
        BQ,
        "proj.payments.customers",
        "cpf",
    )
    assert evidence["source"] == {"namespace": PAYMENTS_DB, "dataset": "payments.customers", "field": "cpf"}
    assert evidence["job"] == {"namespace": PAYMENTS_JOB[0], "name": PAYMENTS_JOB[1]}
    assert evidence["tag"] == "PII.CPF"
    assert finding["product"] == "payments"
    assert finding["subject"]["field"] == "cpf"


async def test_pii_copied_unmasked_into_another_product(client: httpx.AsyncClient) -> None:
    await ingest(client, pii_copy(FRAUD_DB, "fraud.customers", masking=False))
    [finding] = await findings(client, "pii-unmasked")
    assert (finding["evidence"]["namespace"], finding["evidence"]["dataset"]) == (FRAUD_DB, "fraud.customers")
    assert "product fraud" in finding["evidence"]["reason"]


async def test_pii_masked_on_the_way_out_does_not_fire(client: httpx.AsyncClient) -> None:
    await ingest(client, pii_copy(BQ, "proj.payments.customers", masking=True))
    assert await findings(client, "pii-unmasked") == []


async def test_pii_copied_within_its_product_oltp_does_not_fire(client: httpx.AsyncClient) -> None:
    await ingest(client, pii_copy(PAYMENTS_DB, "payments.customers_archive", masking=False))
    assert await findings(client, "pii-unmasked") == []


# -- credentials in metadata ---------------------------------------------------------------------------


async def test_credentials_are_redacted_before_storage_and_reported(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    leaky = dataset(
        PAYMENTS_DB,
        "payments.transactions",
        dataSource=source("postgres://etl:Hunter2-pw@payments-db-1.internal:5432/payments?sslmode=require"),
        schema=schema("id"),
    )
    env = {
        "_producer": "https://github.com/example/tests",
        "_schemaURL": "https://example.com/EnvironmentVariablesRunFacet.json",
        "environmentVariables": [
            {"name": "PAYMENTS_DB_PASSWORD", "value": "Sup3rS3cret-env"},
            {"name": "TZ", "value": "UTC"},
        ],
    }
    run = run_event(job=PAYMENTS_JOB, inputs=[leaky], run_facets={"environmentVariables": env})
    await ingest(client, run)

    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT payload::text FROM event_log"))).scalars().all()
    assert len(stored) == 1
    assert "Hunter2-pw" not in stored[0]
    assert "Sup3rS3cret-env" not in stored[0]
    assert "payments-db-1.internal" in stored[0]  # only the secrets went
    assert "UTC" in stored[0]

    rows = await findings(client, "credentials-in-metadata")
    pointers = sorted(r["evidence"]["pointer"] for r in rows)
    assert len(pointers) == 2, rows
    assert any("dataSource" in p for p in pointers), pointers
    assert any("environmentVariables" in p for p in pointers), pointers
    for row in rows:
        assert row["severity"] == "critical"
        assert row["status"] == "open"
        assert row["product"] == "payments"
        assert row["evidence"]["runId"] == run["run"]["runId"]
        assert "Hunter2-pw" not in str(row)
        assert "Sup3rS3cret-env" not in str(row)
    # the redacted URI is what the evidence of any other rule shows as well
    for row in await findings(client, "unencrypted-transfer"):
        assert "Hunter2-pw" not in row["evidence"]["uri"]


async def test_metadata_without_credentials_is_not_reported(client: httpx.AsyncClient) -> None:
    clean = read_with("postgres://payments-db-1.internal:5432/payments?sslmode=require", "payments.x")
    await ingest(client, run_event(job=PAYMENTS_JOB, inputs=[clean]))
    assert await findings(client, "credentials-in-metadata") == []


# -- waivers -------------------------------------------------------------------------------------------


async def test_a_steward_waives_a_finding_with_reason_and_expiry(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await ingest(client, run_event(job=PAYMENTS_JOB, inputs=[read_with(JDBC_PLAIN, "payments.transactions")]))
    [finding] = await findings(client, "unencrypted-transfer")
    steward = await make_key(engine, "steward", "payments")
    other_steward = await make_key(engine, "steward", "fraud")
    engineer = await make_key(engine, "engineer", "payments")
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=14)
    body = {"reason": "legacy JDBC driver; migration in PAY-991", "until": until.isoformat()}
    url = f"/api/v1/findings/{finding['id']}/waive"

    for key, rule in (
        (other_steward, "steward-waives-only-own-product"),
        (engineer, "default-deny"),
    ):
        denied = await client.post(url, json=body, headers=key.headers)
        assert denied.status_code == 403, denied.text
        assert denied.headers["content-type"].startswith("application/problem+json")
        assert denied.json()["rule"] == rule

    no_reason = await client.post(url, json={"reason": ""}, headers=steward.headers)
    assert no_reason.status_code in (400, 422), no_reason.text

    waived = await client.post(url, json=body, headers=steward.headers)
    assert waived.status_code == 200, waived.text
    assert waived.json()["status"] == "waived"
    [listed] = await findings(client, "unencrypted-transfer", status="waived")
    assert listed["waivedBy"] == steward.key_id
    assert listed["waiverReason"] == body["reason"]
    assert dt.datetime.fromisoformat(listed["waivedUntil"]) == until

    # firing again leaves the waiver in place
    await ingest(
        client,
        run_event(job=PAYMENTS_JOB, when=at(5), inputs=[read_with(JDBC_PLAIN, "payments.transactions")]),
    )
    [still] = await findings(client, "unencrypted-transfer")
    assert still["status"] == "waived"

    async with engine.connect() as conn:
        changes = (
            await conn.execute(text("SELECT action, actor, reason FROM finding_changes ORDER BY id"))
        ).all()
    assert [tuple(c) for c in changes] == [("waive", steward.key_id, body["reason"])]

    # a waiver past its expiry counts as open again
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE findings SET waived_until = now() - interval '1 minute'"))
    [lapsed] = await findings(client, "unencrypted-transfer")
    assert lapsed["status"] == "open"


async def test_a_steward_lifts_a_waiver(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    await ingest(client, run_event(job=PAYMENTS_JOB, inputs=[read_with(JDBC_PLAIN, "payments.transactions")]))
    [finding] = await findings(client, "unencrypted-transfer")
    steward = await make_key(engine, "steward", "payments")
    waived = await client.post(
        f"/api/v1/findings/{finding['id']}/waive", json={"reason": "accepted risk"}, headers=steward.headers
    )
    assert waived.status_code == 200, waived.text
    lifted = await client.post(
        f"/api/v1/findings/{finding['id']}/unwaive", json={"reason": "no longer"}, headers=steward.headers
    )
    assert lifted.status_code == 200, lifted.text
    assert lifted.json()["status"] == "open"
    assert lifted.json()["waiverReason"] is None


# -- the read side: per dataset / job, summary ---------------------------------------------------------


async def test_findings_per_dataset_job_and_summary(client: httpx.AsyncClient) -> None:
    tx = read_with(JDBC_PLAIN, "payments.transactions")
    await ingest(client, run_event(job=FRAUD_JOB, inputs=[tx]))
    per_dataset = await client.get(
        f"/api/v1/findings/datasets/{quote(PAYMENTS_DB, safe='')}/payments.transactions"
    )
    assert per_dataset.status_code == 200, per_dataset.text
    assert {f["rule"] for f in per_dataset.json()["findings"]} == {
        "unencrypted-transfer",
        "cross-product-access",
    }
    per_job = await client.get(f"/api/v1/findings/jobs/{FRAUD_JOB[0]}/{FRAUD_JOB[1]}")
    assert per_job.status_code == 200, per_job.text
    # both are flows of the job: it reads another product's table, and over plaintext
    assert {f["rule"] for f in per_job.json()["findings"]} == {"cross-product-access", "unencrypted-transfer"}

    summary = await client.get("/api/v1/findings/summary", params={"product": "payments"})
    assert summary.status_code == 200, summary.text
    [payments] = summary.json()["products"]
    assert payments["openByRule"] == {"cross-product-access": 1, "unencrypted-transfer": 1}
    assert payments["openBySeverity"] == {"high": 2}


# -- per flow: each job's transfer is its own ---------------------------------------------------------

LEGACY_JOB = ("airflow-payments", "payments_legacy.export")
PG_PLAIN = "postgres://payments-db-1.internal:5432/payments?sslmode=disable"


@pytest.mark.parametrize("plain_uri", [PG_PLAIN, JDBC_PLAIN])
@pytest.mark.parametrize("plain_first", [True, False])
async def test_another_jobs_tls_read_does_not_resolve_a_plaintext_one(
    client: httpx.AsyncClient, plain_uri: str, plain_first: bool
) -> None:
    """A legacy job reads transactions in plain text (day 1); another reads them with verify-full (day 2).
    Whichever arrives first, the legacy job's transfer is open and the other job has none."""
    plain = run_event(
        when=at(1), job=LEGACY_JOB, inputs=[read_with(plain_uri, "payments.public.transactions")]
    )
    tls = run_event(when=at(2), job=PAYMENTS_JOB, inputs=[read_with(PG_TLS, "payments.public.transactions")])
    for event in (plain, tls) if plain_first else (tls, plain):
        await ingest(client, event)
    [finding] = await findings(client, "unencrypted-transfer")
    assert finding["status"] == "open"
    assert finding["subject"]["job"] == {"namespace": LEGACY_JOB[0], "name": LEGACY_JOB[1]}
    assert (finding["subject"]["name"], finding["subject"]["direction"]) == (
        "payments.public.transactions",
        "input",
    )
    assert finding["evidence"]["uri"] == plain_uri
    assert finding["evidence"]["runId"] == plain["run"]["runId"]


async def test_a_plaintext_write_to_an_endpoint_in_no_product_belongs_to_the_jobs_product(
    client: httpx.AsyncClient,
) -> None:
    upload = dataset(
        "http://partner.example.com", "uploads/daily", dataSource=source("http://partner.example.com/in")
    )
    await ingest(client, run_event(job=("airflow-merchant", "merchant_partner.upload"), outputs=[upload]))
    rows = await client.get("/api/v1/findings", params={"limit": 1000})
    assert rows.status_code == 200, rows.text
    every = rows.json()["findings"]
    assert {f["rule"] for f in every} >= {"unencrypted-transfer"}
    assert all(f["product"] == "merchant" for f in every), every


# -- unlineaged transfer, column level -----------------------------------------------------------------


def merchant_copy(*lineaged: str) -> dict[str, Any]:
    customers = read_with(PG_TLS, "merchant.customers", "id", "cpf")
    out = dataset(
        BQ,
        "proj.merchant.customers",
        schema=schema("id", "cpf"),
        columnLineage=column_lineage(
            {f: [(PAYMENTS_DB, "merchant.customers", f, "DIRECT", "IDENTITY", False)] for f in lineaged}
        ),
    )
    return run_event(job=("airflow-merchant", "merchant_bq.copy"), inputs=[customers], outputs=[out])


async def test_a_pii_column_no_column_lineage_explains(client: httpx.AsyncClient) -> None:
    await ingest(client, merchant_copy("id"))
    [finding] = about(await findings(client, "unlineaged-transfer"), "proj.merchant.customers")
    assert finding["subject"] == {
        "kind": "field",
        "namespace": BQ,
        "name": "proj.merchant.customers",
        "field": "cpf",
    }
    assert finding["subjectDisplay"] == f"column cpf of dataset proj.merchant.customers in {BQ}"
    assert finding["severity"] == "high"  # unlineaged-transfer's medium, raised: the column is PII
    assert finding["product"] == "merchant"
    assert finding["evidence"]["tags"] == ["PII.CPF"]


async def test_a_pii_column_explained_by_column_lineage_is_not_flagged(client: httpx.AsyncClient) -> None:
    await ingest(client, merchant_copy("id", "cpf"))
    assert about(await findings(client, "unlineaged-transfer"), "proj.merchant.customers") == []


async def test_the_column_finding_resolves_when_lineage_explains_it(client: httpx.AsyncClient) -> None:
    first = merchant_copy("id")
    await ingest(client, first)
    later = merchant_copy("id", "cpf")
    later["eventTime"] = at(2)
    await ingest(client, later)
    [finding] = about(await findings(client, "unlineaged-transfer"), "proj.merchant.customers")
    assert finding["status"] == "resolved"


async def test_pii_unmasked_is_resolved_only_by_the_job_that_copied_it(client: httpx.AsyncClient) -> None:
    """Another job writing the same table masked changes nothing; the copying job masking does."""
    await ingest(client, pii_copy(BQ, "proj.payments.customers", masking=False))
    other = pii_copy(BQ, "proj.payments.customers", masking=True)
    other["job"]["name"] = "payments_dag.masked_load"
    other["eventTime"] = at(2)
    await ingest(client, other)
    [finding] = await findings(client, "pii-unmasked")
    assert finding["status"] == "open"
    assert finding["subject"]["job"] == {"namespace": PAYMENTS_JOB[0], "name": PAYMENTS_JOB[1]}

    fixed = pii_copy(BQ, "proj.payments.customers", masking=True)
    fixed["eventTime"] = at(3)
    await ingest(client, fixed)
    [finding] = await findings(client, "pii-unmasked")
    assert finding["status"] == "resolved"
