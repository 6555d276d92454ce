"""Findings apply the lineage reads' per-dataset rule (catalog/api/rest/governance.py `finding_as_seen`):
a finding a product's engineer may read names another product's column only when that dataset's
internals are readable to them (a grant; through a masked-columns-only grant, not a column it
redacts) — otherwise the column shows as its dataset, as a column-lineage graph shows it. In the list,
a finding, the per-dataset and per-job lists, and a waiver's answer alike.

The world: fraud.customers' `cpf` (fraud) is copied unmasked by fraud's job into payments'
payments.tx_enriched `cpf_copy` — a pii-unmasked finding of fraud's that names payments' column — and
payments.transactions' `cpf` is copied unmasked by fraud's scoring into fraud.scores `cpf`, a finding of
payments' that names fraud's column.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.factories import column_lineage, dataset, run_event, schema
from tests.findings.helpers import FRAUD_DB, PAYMENTS_DB, ingest, source
from tests.keys import Key, make_key
from tests.policy.test_grants import TLS, grant_body
from tests.policy.test_rest_leaks import FRAUD_TLS, SCORES, TRANSACTIONS
from tests.policy.test_rest_leaks import load as load_scores

CUSTOMERS = "fraud.customers"
ENRICHED = "payments.tx_enriched"
ENRICHED_COLUMN = f"{PAYMENTS_DB}/{ENRICHED}#cpf_copy"
SCORES_COLUMN = f"{FRAUD_DB}/{SCORES}#cpf"


async def load(client: httpx.AsyncClient) -> None:
    await load_scores(client)
    customers = dataset(FRAUD_DB, CUSTOMERS, dataSource=source(FRAUD_TLS), schema=schema("id", "cpf"))
    enriched = dataset(
        PAYMENTS_DB,
        ENRICHED,
        dataSource=source(TLS),
        schema=schema("id", "cpf_copy"),
        columnLineage=column_lineage(
            {"cpf_copy": [(FRAUD_DB, CUSTOMERS, "cpf", "DIRECT", "IDENTITY", False)]}
        ),
    )
    await ingest(
        client, run_event(job=("airflow-fraud", "fraud_dag.enrich"), inputs=[customers], outputs=[enriched])
    )


async def pii_findings(client: httpx.AsyncClient, key: Key) -> list[dict[str, Any]]:
    listed = await client.get("/api/v1/findings", params={"rule": "pii-unmasked"}, headers=key.headers)
    assert listed.status_code == 200, listed.text
    rows: list[dict[str, Any]] = listed.json()["findings"]
    return rows


async def every_view(client: httpx.AsyncClient, key: Key, finding_id: int) -> str:
    """The text of every read that carries the finding: the list, the finding."""
    texts = []
    for path in ("/api/v1/findings", f"/api/v1/findings/{finding_id}"):
        response = await client.get(path, headers=key.headers)
        assert response.status_code == 200, (path, response.text)
        texts.append(response.text)
    return "\n".join(texts)


async def test_a_finding_names_another_products_column_only_when_its_internals_are_readable(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await load(client)
    fraud = await make_key(engine, "engineer", "fraud")
    fraud_steward = await make_key(engine, "steward", "fraud")
    payments = await make_key(engine, "engineer", "payments")
    payments_steward = await make_key(engine, "steward", "payments")
    auditor = await make_key(engine, "auditor")

    # the auditor sees both findings in full
    full = {f["evidence"]["column"]: f for f in await pii_findings(client, auditor)}
    assert set(full) == {ENRICHED_COLUMN, SCORES_COLUMN}, full
    enriched_finding = full[ENRICHED_COLUMN]
    assert enriched_finding["product"] == "fraud"
    assert full[SCORES_COLUMN]["product"] == "payments"

    # fraud's own finding names payments' column: shown as the dataset only
    (seen,) = await pii_findings(client, fraud)
    assert seen["id"] == enriched_finding["id"]
    assert seen["evidence"]["column"] == f"{PAYMENTS_DB}/{ENRICHED}"
    assert seen["evidence"]["from"] == f"{FRAUD_DB}/{CUSTOMERS}#cpf"  # its own column
    views = await every_view(client, fraud, seen["id"])
    assert "cpf_copy" not in views
    # so does a waiver's answer
    waived = await client.post(
        f"/api/v1/findings/{seen['id']}/waive",
        json={"reason": "moving it out (FRD-9)"},
        headers=fraud_steward.headers,
    )
    assert waived.status_code == 200, waived.text
    assert "cpf_copy" not in waived.text
    assert waived.json()["status"] == "waived"

    # and payments' finding names fraud's column to payments the same way
    (theirs,) = await pii_findings(client, payments)
    assert theirs["evidence"]["column"] == f"{FRAUD_DB}/{SCORES}"
    assert theirs["evidence"]["from"] == f"{PAYMENTS_DB}/{TRANSACTIONS}#cpf"
    assert SCORES_COLUMN not in await every_view(client, payments, theirs["id"])

    # fraud's per-dataset list of fraud.scores holds payments' finding about it: fraud's column shows,
    # payments' source column only as its dataset
    scores = await client.get(
        f"/api/v1/findings/datasets/{quote(FRAUD_DB, safe='')}/{quote(SCORES, safe='')}",
        headers=fraud.headers,
    )
    assert scores.status_code == 200, scores.text
    (about_scores,) = [f for f in scores.json()["findings"] if f["rule"] == "pii-unmasked"]
    assert about_scores["evidence"]["column"] == SCORES_COLUMN
    assert about_scores["evidence"]["from"] == f"{PAYMENTS_DB}/{TRANSACTIONS}"

    # a masked-columns-only grant: cpf_copy holds unmasked PII, so it stays hidden
    body = grant_body(name=ENRICHED, masked_only=True)
    masked = await client.post("/api/v1/grants", json=body, headers=payments_steward.headers)
    assert masked.status_code == 201, masked.text
    assert "cpf_copy" not in await every_view(client, fraud, seen["id"])

    # a full grant on payments.tx_enriched: fraud reads its columns, and the finding names it
    revoked = await client.delete(f"/api/v1/grants/{masked.json()['id']}", headers=payments_steward.headers)
    assert revoked.status_code == 200, revoked.text
    granted = await client.post(
        "/api/v1/grants", json=grant_body(name=ENRICHED), headers=payments_steward.headers
    )
    assert granted.status_code == 201, granted.text
    (seen,) = await pii_findings(client, fraud)
    assert seen["evidence"]["column"] == ENRICHED_COLUMN
    one = await client.get(f"/api/v1/findings/{seen['id']}", headers=fraud.headers)
    assert one.json()["evidence"]["column"] == ENRICHED_COLUMN
    # payments' view of its own finding did not change
    (theirs,) = await pii_findings(client, payments)
    assert theirs["evidence"]["column"] == f"{FRAUD_DB}/{SCORES}"
