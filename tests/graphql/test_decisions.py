"""Stewards' decisions through GraphQL mutations: the same use cases as REST, errors as GraphQL errors."""

from __future__ import annotations

from typing import Any

import httpx

from tests.classification.test_decision_input import NAME, NS, seed

DECIDE = """
mutation($field: String, $tag: String!, $action: DecisionAction!, $ns: String!, $ds: String!) {
  decideClassification(namespace: $ns, dataset: $ds, field: $field, tag: $tag, action: $action,
                       reason: "steward review") {
    id namespace dataset field tag action reason author decidedAt retiredAt
  }
}
"""
RETIRE = "mutation($id: Int!) { retireClassificationDecision(decisionId: $id) { id retiredAt retiredBy } }"
FIELD_TAGS = """
query($ns: String!, $ds: String!) {
  dataset(namespace: $ns, name: $ds) { field(path: "cpf") { classifications { tag source } } }
}
"""


async def gql(client: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def cpf_sources(client: httpx.AsyncClient) -> list[str]:
    body = await gql(client, FIELD_TAGS, ns=NS, ds=NAME)
    return [c["source"] for c in body["data"]["dataset"]["field"]["classifications"] if c["tag"] == "PII.CPF"]


async def test_a_reject_and_its_withdrawal_through_mutations(client: httpx.AsyncClient) -> None:
    await seed(client)
    assert await cpf_sources(client) == ["DETECTED"]
    made = await gql(client, DECIDE, ns=NS, ds=NAME, field="cpf", tag="pii.cpf", action="REJECT")
    decision = made["data"]["decideClassification"]
    assert "errors" not in made
    assert (decision["field"], decision["tag"], decision["action"]) == ("cpf", "PII.CPF", "REJECT")
    assert decision["author"] == "bootstrap admin (admin-token)"
    assert decision["retiredAt"] is None
    assert await cpf_sources(client) == []  # the reject suppresses the detection
    # REST sees the same decision, and it is in the audit log
    listed = (await client.get("/api/v1/classifications/decisions", params={"namespace": NS})).json()
    assert [d["id"] for d in listed["decisions"]] == [decision["id"]]
    retired = await gql(client, RETIRE, id=decision["id"])
    assert retired["data"]["retireClassificationDecision"]["retiredAt"] is not None
    assert await cpf_sources(client) == ["DETECTED"]
    again = await gql(client, RETIRE, id=decision["id"])
    assert again["data"]["retireClassificationDecision"] is None
    assert again["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_bad_input_is_a_graphql_error_naming_the_argument(client: httpx.AsyncClient) -> None:
    await seed(client)
    not_pii = await gql(client, DECIDE, ns=NS, ds=NAME, field="cpf", tag="environment", action="ADD")
    [error] = not_pii["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": "tag"}
    assert not_pii["data"]["decideClassification"] is None
    missing = await gql(client, DECIDE, ns=NS, ds=NAME, field="nope", tag="PII.CPF", action="ADD")
    assert missing["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    nul = await gql(client, DECIDE, ns=NS, ds=NAME, field="c\u0000pf", tag="PII.CPF", action="ADD")
    assert nul["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": "field"}
    ok = await gql(client, DECIDE, ns=NS, ds=NAME, field="cpf", tag="PII.CPF", action="ADD")
    assert "errors" not in ok
    listed = (await client.get("/api/v1/classifications/decisions", params={"namespace": NS})).json()
    assert len(listed["decisions"]) == 1  # the refused ones left nothing behind
