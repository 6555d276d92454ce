"""Findings answers speak the API's one convention, camelCase (as Marquez and the rest of the API do), at
every depth — the evidence and subject too — while the stored JSON keeps its own keys (the exports
document those)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.api.casing import camel, camel_keys
from tests.factories import dataset, run_event, schema
from tests.findings.helpers import PAYMENTS_DB, ingest, source
from tests.keys import make_key

JOB = ("airflow-payments", "payments_dag.load")
# Plaintext and with a password: an unencrypted transfer and credentials in metadata, each with evidence
# that names the run and the event time.
URI = "postgres://app:hunter2@payments-db-1.internal:5432/payments?sslmode=disable"


def snake_keys(value: Any, where: str = "") -> list[str]:
    """Every snake_case key (with its path). Keys that are data (a summary's rule names) are not."""
    out = []
    if isinstance(value, dict):
        for key, inner in value.items():
            if "_" in key:
                out.append(f"{where}/{key}")
            out.extend(snake_keys(inner, f"{where}/{key}"))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            out.extend(snake_keys(inner, f"{where}/{i}"))
    return out


def test_camel_converts_snake_case_keys_only() -> None:
    assert camel("first_seen") == "firstSeen"
    assert camel("status_changed_at") == "statusChangedAt"
    assert camel("runId") == "runId"
    assert camel("cross-product-access") == "cross-product-access"
    assert camel("id") == "id"
    assert camel_keys({"a_b": [{"c_d": {"e_f": "g_h"}}]}) == {"aB": [{"cD": {"eF": "g_h"}}]}


async def test_every_findings_answer_is_camel_case(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    table = dataset(PAYMENTS_DB, "payments.transactions", dataSource=source(URI), schema=schema("id"))
    run = run_event(job=JOB, inputs=[table])
    await ingest(client, run)

    listed = await client.get("/api/v1/findings")
    assert listed.status_code == 200, listed.text
    rows = listed.json()["findings"]
    assert {r["rule"] for r in rows} >= {"unencrypted-transfer", "credentials-in-metadata"}
    transfer = next(r for r in rows if r["rule"] == "unencrypted-transfer")
    # The values are those the stored keys held.
    assert transfer["evidence"]["runId"] == run["run"]["runId"]
    assert transfer["evidence"]["eventTime"]
    assert transfer["firstSeen"] <= transfer["lastSeen"]
    assert transfer["subjectKind"]
    assert transfer["subjectDisplay"]

    steward = await make_key(engine, "steward", transfer["product"])
    waived = await client.post(
        f"/api/v1/findings/{transfer['id']}/waive", json={"reason": "accepted risk"}, headers=steward.headers
    )
    unwaived = await client.post(
        f"/api/v1/findings/{transfer['id']}/unwaive", json={"reason": "no longer"}, headers=steward.headers
    )
    answers = {
        "list": listed,
        "one": await client.get(f"/api/v1/findings/{transfer['id']}"),
        "dataset": await client.get(
            f"/api/v1/findings/datasets/{quote(PAYMENTS_DB, safe='')}/payments.transactions"
        ),
        "job": await client.get(f"/api/v1/findings/jobs/{JOB[0]}/{quote(JOB[1], safe='')}"),
        "summary": await client.get("/api/v1/findings/summary"),
        "waive": waived,
        "unwaive": unwaived,
    }
    for name, answer in answers.items():
        assert answer.status_code == 200, (name, answer.text)
        assert snake_keys(answer.json()) == [], name
    assert waived.json()["waivedBy"] == steward.key_id
    assert waived.json()["waiverReason"] == "accepted risk"
    summary = answers["summary"].json()["products"]
    assert any(p["openByRule"].get("credentials-in-metadata") for p in summary)
    assert any(p["openBySeverity"] for p in summary)

    # Stored as before: the conversion is the API's, not the model's.
    async with engine.connect() as conn:
        stored = (
            await conn.execute(text("SELECT evidence FROM findings WHERE id = :id"), {"id": transfer["id"]})
        ).scalar_one()
    assert stored["run_id"] == run["run"]["runId"]
    assert "runId" not in stored
