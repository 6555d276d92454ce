"""Bad input to a steward's decision is a precise 4xx problem+json naming the field, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.audit import service as audit
from tests.factories import at, dataset, run_event, schema

NS = "postgres://kyc-db:5432"
NAME = "kyc.public.people"


async def seed(client: httpx.AsyncClient) -> None:
    people = dataset(NS, NAME, schema=schema("cpf", "nickname"))
    response = await client.post(
        "/api/v1/lineage/batch",
        content=orjson.dumps([run_event(when=at(1), job=("airflow", "kyc"), outputs=[people])]),
    )
    assert response.status_code in (200, 204), response.text


def decision(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "namespace": NS,
        "dataset": NAME,
        "field": "nickname",
        "tag": "PII.NAME",
        "action": "add",
        "reason": "a person's nickname",
    }
    body.update(changes)
    return body


@pytest.mark.parametrize("member", ["namespace", "dataset", "field", "tag", "reason"])
async def test_a_nul_character_is_a_400_naming_the_field(client: httpx.AsyncClient, member: str) -> None:
    await seed(client)
    response = await client.post(
        "/api/v1/classifications/decisions", json=decision(**{member: f"bad\u0000{member}"})
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["pointer"] == member
    assert "NUL" in problem["detail"]
    # Nothing was recorded, and the connection still serves requests.
    listed = await client.get("/api/v1/classifications/decisions", params={"includeRetired": "true"})
    assert listed.status_code == 200
    assert listed.json()["decisions"] == []


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/classifications", {"namespace": NS, "dataset": "x\u0000"}),
        ("/api/v1/classifications/decisions", {"namespace": "x\u0000"}),
        ("/api/v1/pii/inventory", {"namespace": "x\u0000"}),
        ("/api/v1/pii/flow", {"namespace": NS, "dataset": NAME, "field": "cpf\u0000"}),
    ],
)
async def test_a_nul_character_in_a_query_is_a_400(
    client: httpx.AsyncClient, path: str, params: dict[str, str]
) -> None:
    response = await client.get(path, params=params)
    assert response.status_code == 400, response.text
    assert response.json()["pointer"] in params


async def test_only_pii_and_pci_tags_can_be_decided(client: httpx.AsyncClient) -> None:
    await seed(client)
    response = await client.post("/api/v1/classifications/decisions", json=decision(tag="environment"))
    assert response.status_code == 400, response.text
    assert response.json()["pointer"] == "tag"
    # A tag is stored in its canonical spelling.
    response = await client.post("/api/v1/classifications/decisions", json=decision(tag=" pii.NAME "))
    assert response.status_code == 201, response.text
    assert response.json()["tag"] == "PII.NAME"


async def test_a_wrong_action_or_a_missing_member_is_a_400(client: httpx.AsyncClient) -> None:
    await seed(client)
    response = await client.post("/api/v1/classifications/decisions", json=decision(action="delete"))
    assert response.status_code == 400
    assert response.json()["pointer"] == "action"
    body = decision()
    del body["tag"]
    response = await client.post("/api/v1/classifications/decisions", json=body)
    assert response.status_code == 400
    assert response.json()["pointer"] == "tag"


async def test_decisions_go_to_the_hash_chained_audit_log(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await seed(client)
    made = await client.post("/api/v1/classifications/decisions", json=decision())
    assert made.status_code == 201, made.text
    refused = await client.post("/api/v1/classifications/decisions", json=decision(tag="environment"))
    assert refused.status_code == 400  # nothing recorded, nothing audited
    retired = await client.delete(f"/api/v1/classifications/decisions/{made.json()['id']}")
    assert retired.status_code == 200, retired.text
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT action, actor, subject, details FROM audit_log WHERE action LIKE 'classification.%' ORDER BY seq"
                )
            )
        ).all()
        report = await audit.verify(conn)
    assert [r.action for r in rows] == ["classification.decision.recorded", "classification.decision.retired"]
    assert {r.actor for r in rows} == {made.json()["author"]}
    assert {r.subject for r in rows} == {f"classification:{NS}/{NAME}#nickname:PII.NAME"}
    assert rows[0].details["reason"] == "a person's nickname"
    assert rows[1].details["retiredAt"] is not None
    assert report.ok, report.problem
