"""A fintech's week of lineage, judged end to end: several products, Debezium CDC into Kafka, BigQuery
loads, a partner endpoint over http://, a JDBC reader, a shared legacy database, a BI dashboard on OLTP, a
granted cross-product read and a leaked password. Every subject that must be flagged is open, none that
must not be is flagged, every finding belongs to a product and says what it is about in words — whatever
the order the events arrive in, and the same after a full `catalog scan`."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.db.engine import raw_transaction
from catalog.findings.service import scan
from catalog.policies_in_force import Policies
from tests.factories import at, column_lineage, dataset, run_event, schema
from tests.findings.helpers import ingest, job_type, source

PAY = "postgres://payments-db-1.internal:5432"
MER = "postgres://merchant-db-1.internal:5432"
LEGACY = "postgres://legacy-db.internal:5432"  # a database no product owns, holding two products' tables
PAY_KAFKA = "kafka://payments-kafka.internal:9093"
BQ = "bigquery"
PARTNER = "http://partner-api.example.com"  # an endpoint in no product

PAY_TLS = "postgres://payments-db-1.internal:5432/payments?sslmode=verify-full"
PAY_PLAIN = "postgres://payments-db-1.internal:5432/payments?sslmode=disable"
PAY_JDBC = "jdbc:postgresql://payments-db-1.internal:5432/payments"
MER_TLS = "postgres://merchant-db-1.internal:5432/merchant?sslmode=require"
LEGACY_TLS = "postgres://legacy-db.internal:5432/legacy?sslmode=require"
KAFKA_TLS = "kafka://payments-kafka.internal:9093?security.protocol=SASL_SSL"

LEGACY_EXPORT = ("airflow-payments", "payments_legacy.export_transactions")
RECON = ("airflow-payments", "payments_recon.daily")
FRAUD_JDBC = ("spark-fraud", "fraud_features.pull_transactions")
FRAUD_GRANTED = ("spark-fraud", "fraud_features.chargebacks")
CDC = ("debezium", "payments.cdc_customers")
BQ_CUSTOMERS = ("airflow-payments", "payments_bq.load_customers")
BQ_EMAILS = ("airflow-payments", "payments_bq.load_emails")
PARTNER_UPLOAD = ("airflow-merchant", "merchant_partner.upload_settlements")
MERCHANT_BQ = ("airflow-merchant", "merchant_bq.customer_list")
DASHBOARD = ("looker", "merchant.revenue_dashboard")
BI_ON_COPY = ("looker", "payments.customers_dashboard")
REFUNDS_PAY = ("airflow-payments", "payments_refunds.sync")
REFUNDS_MER = ("airflow-merchant", "merchant_refunds.sync")
NOTEBOOK = ("notebooks", "adhoc_pull")


def ds(namespace: str, name: str, uri: str | None, *fields: str, **facets: Any) -> dict[str, Any]:
    if uri is not None:
        facets["dataSource"] = source(uri)
    return dataset(namespace, name, schema=schema(*(fields or ("id",))), **facets)


def identity(namespace: str, name: str, *fields: str, masked: tuple[str, ...] = ()) -> dict[str, Any]:
    return column_lineage(
        {
            f: [
                (
                    namespace,
                    name,
                    f,
                    "DIRECT",
                    "TRANSFORMATION" if f in masked else "IDENTITY",
                    f in masked,
                )
            ]
            for f in fields
        }
    )


def week() -> list[dict[str, Any]]:
    tx = "payments.public.transactions"
    customers = "payments.public.customers"
    topic = "payments.cdc.customers"
    looker = {"jobType": job_type("LOOKER")}
    return [
        # a legacy job reads transactions in plain text; later another job reads them over TLS
        run_event(when=at(1), job=LEGACY_EXPORT, inputs=[ds(PAY, tx, PAY_PLAIN, "id", "amount")]),
        run_event(when=at(2), job=RECON, inputs=[ds(PAY, tx, PAY_TLS, "id", "amount")]),
        # fraud reads payments' transactions through a JDBC URL with no TLS, and no grant
        run_event(when=at(2, 3), job=FRAUD_JDBC, inputs=[ds(PAY, tx, PAY_JDBC, "id", "amount")]),
        # fraud reads chargebacks under a grant, over TLS
        run_event(when=at(2, 4), job=FRAUD_GRANTED, inputs=[ds(PAY, "payments.public.chargebacks", PAY_TLS)]),
        # Debezium: customers into Kafka, column lineage and TLS both ends
        run_event(
            when=at(3),
            job=CDC,
            inputs=[ds(PAY, customers, PAY_TLS, "id", "cpf", "email")],
            outputs=[
                ds(
                    PAY_KAFKA,
                    topic,
                    KAFKA_TLS,
                    "id",
                    "cpf",
                    "email",
                    columnLineage=identity(PAY, customers, "id", "cpf", "email"),
                )
            ],
        ),
        # BigQuery loads from the topic: one masks the CPF, one copies e-mails unmasked
        run_event(
            when=at(4),
            job=BQ_CUSTOMERS,
            inputs=[ds(PAY_KAFKA, topic, KAFKA_TLS, "id", "cpf", "email")],
            outputs=[
                ds(
                    BQ,
                    "proj.payments.customers",
                    None,
                    "id",
                    "cpf_hash",
                    columnLineage=column_lineage(
                        {
                            "id": [(PAY_KAFKA, topic, "id", "DIRECT", "IDENTITY", False)],
                            "cpf_hash": [(PAY_KAFKA, topic, "cpf", "DIRECT", "TRANSFORMATION", True)],
                        }
                    ),
                )
            ],
        ),
        run_event(
            when=at(4, 1),
            job=BQ_EMAILS,
            inputs=[ds(PAY_KAFKA, topic, KAFKA_TLS, "id", "cpf", "email")],
            outputs=[
                ds(
                    BQ,
                    "proj.payments.emails",
                    None,
                    "id",
                    "email",
                    columnLineage=identity(PAY_KAFKA, topic, "id", "email"),
                )
            ],
        ),
        # merchant uploads settlements to a partner over plain http
        run_event(
            when=at(5),
            job=PARTNER_UPLOAD,
            inputs=[ds(MER, "merchant.public.settlements", MER_TLS, "id", "amount")],
            outputs=[
                ds(
                    PARTNER,
                    "uploads/settlements/daily",
                    f"{PARTNER}/upload",
                    "id",
                    "amount",
                    columnLineage=identity(MER, "merchant.public.settlements", "id", "amount"),
                )
            ],
        ),
        # merchant copies customers to BigQuery; its column lineage explains `id` but not the CPF
        run_event(
            when=at(5, 2),
            job=MERCHANT_BQ,
            inputs=[ds(MER, "merchant.public.customers", MER_TLS, "id", "cpf")],
            outputs=[
                ds(
                    BQ,
                    "proj.merchant.customer_list",
                    None,
                    "id",
                    "cpf",
                    columnLineage=identity(MER, "merchant.public.customers", "id"),
                )
            ],
        ),
        # a dashboard straight on merchant's OLTP; another on the BigQuery copy
        run_event(
            when=at(6),
            job=DASHBOARD,
            inputs=[ds(MER, "merchant.public.orders", MER_TLS, "id", "amount")],
            job_facets=looker,
        ),
        run_event(
            when=at(6, 1),
            job=BI_ON_COPY,
            inputs=[ds(BQ, "proj.payments.customers", None, "id", "cpf_hash")],
            job_facets=looker,
        ),
        # the legacy database holds tables of payments and of merchant
        run_event(
            when=at(7),
            job=REFUNDS_PAY,
            inputs=[ds(LEGACY, "payments.public.refunds", LEGACY_TLS)],
            outputs=[
                ds(
                    PAY,
                    "payments.public.refunds",
                    PAY_TLS,
                    columnLineage=identity(LEGACY, "payments.public.refunds", "id"),
                )
            ],
        ),
        run_event(
            when=at(7, 1),
            job=REFUNDS_MER,
            inputs=[ds(LEGACY, "merchant.public.refund_requests", LEGACY_TLS)],
            outputs=[
                ds(
                    MER,
                    "merchant.public.refund_requests",
                    MER_TLS,
                    columnLineage=identity(LEGACY, "merchant.public.refund_requests", "id"),
                )
            ],
        ),
        # a notebook (no product) pulls customers with the password in the URI
        run_event(
            when=at(8),
            job=NOTEBOOK,
            inputs=[
                ds(
                    PAY,
                    customers,
                    "postgres://analyst:S3cr3t-pw@payments-db-1.internal:5432/payments?sslmode=require",
                    "id",
                    "cpf",
                    "email",
                )
            ],
        ),
    ]


def flow(job: tuple[str, str], namespace: str, name: str, direction: str, field: str | None = None) -> str:
    verb = "reads" if direction == "input" else "writes"
    what = f"dataset {name} in {namespace}"
    if field is not None:
        what = f"column {field} of {what}"
    return f"job {job[1]} in {job[0]} {verb} {what}"


TX = "payments.public.transactions"
MUST_FLAG = {
    ("unencrypted-transfer", flow(LEGACY_EXPORT, PAY, TX, "input")),
    ("unencrypted-transfer", flow(FRAUD_JDBC, PAY, TX, "input")),
    ("cross-product-access", flow(FRAUD_JDBC, PAY, TX, "input")),
    ("unencrypted-transfer", flow(PARTNER_UPLOAD, PARTNER, "uploads/settlements/daily", "output")),
    ("pii-unmasked", flow(BQ_EMAILS, BQ, "proj.payments.emails", "output", "email")),
    ("unlineaged-transfer", f"column cpf of dataset proj.merchant.customer_list in {BQ}"),
    ("analytics-on-oltp", f"job {DASHBOARD[1]} in {DASHBOARD[0]} reads database {MER}"),
    ("shared-database", f"database {LEGACY}"),
    ("credentials-in-metadata", f"job {NOTEBOOK[1]} in {NOTEBOOK[0]}"),
}
MUST_NOT_FLAG = [
    # (rule or None for any rule, a piece of the subject's display)
    (None, f"job {RECON[1]} "),
    (None, f"job {CDC[1]} "),
    (None, f"job {BQ_CUSTOMERS[1]} "),
    (None, f"job {FRAUD_GRANTED[1]} "),
    (None, f"job {BI_ON_COPY[1]} "),
    (None, "proj.payments.customers"),
    (None, f"dataset {'payments.cdc.customers'}"),
    ("unlineaged-transfer", "column id of"),
    ("pii-unmasked", "proj.merchant.customer_list"),
]


async def everything(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/findings", params={"limit": 1000})
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["findings"]
    return rows


async def grant_chargebacks(client: httpx.AsyncClient) -> None:
    granted = await client.post(
        "/api/v1/grants",
        json={
            "grantor_product": "payments",
            "grantee_product": "fraud",
            "scope": "dataset",
            "namespace": PAY,
            "name": "payments.public.chargebacks",
            "reason": "fraud features read chargebacks (RISK-7)",
            "expires_at": (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).isoformat(),
        },
    )
    assert granted.status_code == 201, granted.text


def judged(rows: list[dict[str, Any]]) -> set[tuple[str, str, str, str | None, str]]:
    return {(r["rule"], r["subjectKey"], r["status"], r["product"], r["severity"]) for r in rows}


@pytest.mark.parametrize("order", ["event-time order", "reversed", "interleaved"])
async def test_the_week_is_judged_the_same_whatever_the_arrival_order(
    client: httpx.AsyncClient, engine: AsyncEngine, order: str
) -> None:
    await grant_chargebacks(client)
    events = week()
    if order == "reversed":
        events.reverse()
    elif order == "interleaved":
        events = events[1::2] + events[0::2]
    for event in events:  # one request each: arrival order is the list's order
        await ingest(client, event)
    rows = await everything(client)

    open_ = {(r["rule"], r["subjectDisplay"]) for r in rows if r["status"] == "open"}
    assert open_ >= MUST_FLAG, sorted(MUST_FLAG - open_)
    # (events arriving out of order may open a finding that a later-arriving, earlier event settles —
    # a BI read of a table before the load that produced it — so this is about what stays flagged)
    for rule, piece in MUST_NOT_FLAG:
        wrong = [
            r
            for r in rows
            if r["status"] != "resolved" and piece in r["subjectDisplay"] and rule in (None, r["rule"])
        ]
        assert wrong == [], wrong
    # nothing beyond what must be flagged
    assert open_ == MUST_FLAG, sorted(open_ - MUST_FLAG)

    # every finding belongs to a product (whose steward sees it) and reads without looking anything up
    for row in rows:
        assert row["product"], row
        assert row["subjectDisplay"], row
        assert row["subject"]["kind"] == row["subjectKind"]
        assert "S3cr3t-pw" not in str(row)

    by = {(r["rule"], r["subjectDisplay"]): r for r in rows}
    partner = by[
        ("unencrypted-transfer", flow(PARTNER_UPLOAD, PARTNER, "uploads/settlements/daily", "output"))
    ]
    assert partner["product"] == "merchant"  # the endpoint is in no product: the job's product
    assert partner["evidence"]["uri"] == f"{PARTNER}/upload"
    assert partner["subject"] == {
        "kind": "flow",
        "namespace": PARTNER,
        "name": "uploads/settlements/daily",  # a name with '/' stays whole
        "job": {"namespace": PARTNER_UPLOAD[0], "name": PARTNER_UPLOAD[1]},
        "direction": "output",
    }
    legacy = by[("unencrypted-transfer", flow(LEGACY_EXPORT, PAY, TX, "input"))]
    assert (legacy["product"], legacy["severity"]) == ("payments", "high")
    assert legacy["evidence"]["reason"] == "sslmode=disable"
    jdbc = by[("unencrypted-transfer", flow(FRAUD_JDBC, PAY, TX, "input"))]
    assert jdbc["evidence"]["uri"] == PAY_JDBC
    shared = [r for r in rows if r["rule"] == "shared-database"]
    assert sorted(r["product"] for r in shared) == ["merchant", "payments"]
    pii = by[("pii-unmasked", flow(BQ_EMAILS, BQ, "proj.payments.emails", "output", "email"))]
    assert (pii["severity"], pii["product"]) == ("critical", "payments")
    assert pii["evidence"]["source"] == {
        "namespace": PAY_KAFKA,
        "dataset": "payments.cdc.customers",
        "field": "email",
    }
    column = by[("unlineaged-transfer", f"column cpf of dataset proj.merchant.customer_list in {BQ}")]
    assert (column["severity"], column["product"]) == ("high", "merchant")  # PII raises it
    assert column["evidence"]["producingJobs"] == [{"namespace": MERCHANT_BQ[0], "name": MERCHANT_BQ[1]}]
    notebook = by[("credentials-in-metadata", f"job {NOTEBOOK[1]} in {NOTEBOOK[0]}")]
    assert notebook["product"] == "payments"  # the job is in no product; the dataset it named is
    assert (notebook["evidence"]["namespace"], notebook["evidence"]["dataset"]) == (
        PAY,
        "payments.public.customers",
    )

    # a full rescan judges the catalog the same way
    before = judged(rows)
    async with raw_transaction(engine) as raw:
        await scan(raw, Policies.load())
    assert judged(await everything(client)) == before


async def test_each_job_resolves_only_its_own_transfer(client: httpx.AsyncClient) -> None:
    """The legacy job's plaintext read stays open while other jobs read the table over TLS, and resolves
    once the legacy job itself moves to TLS; the JDBC reader's resolves when it stops reading the table."""
    await grant_chargebacks(client)
    for event in week():
        await ingest(client, event)
    await ingest(client, run_event(when=at(9), job=RECON, inputs=[ds(PAY, TX, PAY_TLS, "id")]))
    rows = {(r["rule"], r["subjectDisplay"]): r for r in await everything(client)}
    assert rows[("unencrypted-transfer", flow(LEGACY_EXPORT, PAY, TX, "input"))]["status"] == "open"

    await ingest(client, run_event(when=at(10), job=LEGACY_EXPORT, inputs=[ds(PAY, TX, PAY_TLS, "id")]))
    other = ds(PAY, "payments.public.payouts", PAY_TLS)
    await ingest(client, run_event(when=at(10), job=FRAUD_JDBC, inputs=[other]))
    rows = {(r["rule"], r["subjectDisplay"]): r for r in await everything(client)}
    assert rows[("unencrypted-transfer", flow(LEGACY_EXPORT, PAY, TX, "input"))]["status"] == "resolved"
    assert rows[("unencrypted-transfer", flow(FRAUD_JDBC, PAY, TX, "input"))]["status"] == "resolved"
    assert (
        rows[("unencrypted-transfer", flow(PARTNER_UPLOAD, PARTNER, "uploads/settlements/daily", "output"))][
            "status"
        ]
        == "open"
    )
