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
from tests.policy.test_graphql_authz import gql
from tests.policy.test_rest_leaks import FRAUD_TLS, SCORES, TRANSACTIONS
from tests.policy.test_rest_leaks import load as load_scores

CUSTOMERS = "fraud.customers"
ENRICHED = "payments.tx_enriched"
ENRICHED_COLUMN = (PAYMENTS_DB, ENRICHED, "cpf_copy")
SCORES_COLUMN = (FRAUD_DB, SCORES, "cpf")


def column(reference: dict[str, Any]) -> tuple[str, str, str | None]:
    """A structured column reference of a finding's evidence: (namespace, dataset, field or None)."""
    return (reference["namespace"], reference["dataset"], reference["field"])


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
    full = {column(f["evidence"]): f for f in await pii_findings(client, auditor)}
    assert set(full) == {ENRICHED_COLUMN, SCORES_COLUMN}, full
    enriched_finding = full[ENRICHED_COLUMN]
    assert enriched_finding["product"] == "fraud"
    assert full[SCORES_COLUMN]["product"] == "payments"

    # fraud's own finding names payments' column: shown as the dataset only
    (seen,) = await pii_findings(client, fraud)
    assert seen["id"] == enriched_finding["id"]
    assert column(seen["evidence"]) == (PAYMENTS_DB, ENRICHED, None)
    assert column(seen["evidence"]["source"]) == (FRAUD_DB, CUSTOMERS, "cpf")  # its own column
    assert seen["subject"]["field"] is None
    assert seen["subjectDisplay"].endswith(f"writes dataset {ENRICHED} in {PAYMENTS_DB}")
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
    assert column(theirs["evidence"]) == (FRAUD_DB, SCORES, None)
    assert column(theirs["evidence"]["source"]) == (PAYMENTS_DB, TRANSACTIONS, "cpf")
    assert theirs["subject"]["field"] is None
    assert f"column cpf of dataset {SCORES}" not in await every_view(client, payments, theirs["id"])

    # fraud's per-dataset list of fraud.scores holds payments' finding about it: fraud's column shows,
    # payments' source column only as its dataset
    scores = await client.get(
        f"/api/v1/findings/datasets/{quote(FRAUD_DB, safe='')}/{quote(SCORES, safe='')}",
        headers=fraud.headers,
    )
    assert scores.status_code == 200, scores.text
    (about_scores,) = [f for f in scores.json()["findings"] if f["rule"] == "pii-unmasked"]
    assert column(about_scores["evidence"]) == SCORES_COLUMN
    assert column(about_scores["evidence"]["source"]) == (PAYMENTS_DB, TRANSACTIONS, None)

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
    assert column(seen["evidence"]) == ENRICHED_COLUMN
    assert seen["subject"]["field"] == "cpf_copy"
    one = await client.get(f"/api/v1/findings/{seen['id']}", headers=fraud.headers)
    assert column(one.json()["evidence"]) == ENRICHED_COLUMN
    # payments' view of its own finding did not change
    (theirs,) = await pii_findings(client, payments)
    assert column(theirs["evidence"]) == (FRAUD_DB, SCORES, None)


# -- propagation paths: the same rule for the columns a classification came by --------------------------

LEDGER_HOP = f"{PAYMENTS_DB}/payments.ledger#document_number"
TRANSACTIONS_HOP = f"{PAYMENTS_DB}/{TRANSACTIONS}#cpf"
SCORES_CLASSIFICATIONS = """query($ns: String!, $n: String!) {
  dataset(namespace: $ns, name: $n) { field(path: "cpf") { classifications { tag path } } }
  piiInventory(first: 100) { nodes { dataset field classification { path } } }
  piiFlow(namespace: $ns, dataset: $n, field: "cpf") { classifications { path } }
}"""


async def propagation_paths(client: httpx.AsyncClient, key: Key) -> dict[str, list[list[str]]]:
    """fraud.scores cpf's propagation paths in every read that carries them, REST and GraphQL."""
    where = {"namespace": FRAUD_DB, "dataset": SCORES}
    found: dict[str, list[list[str]]] = {}
    for name, path, params in (
        ("classifications", "/api/v1/classifications", where),
        ("inventory", "/api/v1/pii/inventory", {}),
        ("flow", "/api/v1/pii/flow", {**where, "field": "cpf"}),
    ):
        response = await client.get(path, params=params, headers=key.headers)
        assert response.status_code == 200, (path, response.text)
        body = response.json()
        if name == "classifications":
            rows = body["classifications"]
        elif name == "inventory":
            rows = [r for r in body["fields"] if r["dataset"] == SCORES]
        else:
            rows = body["origin"]["classifications"]
        found[name] = sorted(r["path"] for r in rows if r.get("path"))
    seen = await gql(client, key, SCORES_CLASSIFICATIONS, {"ns": FRAUD_DB, "n": SCORES})
    assert "errors" not in seen, seen
    data = seen["data"]
    found["graphql field"] = sorted(
        c["path"] for c in data["dataset"]["field"]["classifications"] if c["path"]
    )
    found["graphql inventory"] = sorted(
        n["classification"]["path"]
        for n in data["piiInventory"]["nodes"]
        if n["dataset"] == SCORES and n["classification"]["path"]
    )
    found["graphql flow"] = sorted(c["path"] for c in data["piiFlow"]["classifications"] if c["path"])
    return found


async def test_a_propagation_path_names_another_products_columns_only_when_readable(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await load_scores(client)
    fraud = await make_key(engine, "engineer", "fraud")
    auditor = await make_key(engine, "auditor")
    payments_steward = await make_key(engine, "steward", "payments")
    own_hop = f"{FRAUD_DB}/{SCORES}#cpf"

    full = [LEDGER_HOP, TRANSACTIONS_HOP, own_hop]
    for where, paths in (await propagation_paths(client, auditor)).items():
        assert paths == [full], where

    # no grant: payments' columns show as their datasets, fraud's own column as itself
    by_dataset = [f"{PAYMENTS_DB}/payments.ledger", f"{PAYMENTS_DB}/{TRANSACTIONS}", own_hop]
    for where, paths in (await propagation_paths(client, fraud)).items():
        assert paths == [by_dataset], where

    # a masked-columns-only grant on payments.transactions: its cpf holds unmasked PII, still hidden
    masked = await client.post(
        "/api/v1/grants", json=grant_body(masked_only=True), headers=payments_steward.headers
    )
    assert masked.status_code == 201, masked.text
    for where, paths in (await propagation_paths(client, fraud)).items():
        assert paths == [by_dataset], where

    # a full grant: transactions' cpf shows; the ledger, not granted, still by dataset
    revoked = await client.delete(f"/api/v1/grants/{masked.json()['id']}", headers=payments_steward.headers)
    assert revoked.status_code == 200, revoked.text
    granted = await client.post("/api/v1/grants", json=grant_body(), headers=payments_steward.headers)
    assert granted.status_code == 201, granted.text
    for where, paths in (await propagation_paths(client, fraud)).items():
        assert paths == [[f"{PAYMENTS_DB}/payments.ledger", TRANSACTIONS_HOP, own_hop]], where
