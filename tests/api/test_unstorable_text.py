"""NUL and invalid UTF-8 in any path segment, query parameter, JSON body field or GraphQL variable/literal:
a 400 problem+json naming the parameter, never a 500 (PostgreSQL text cannot hold them)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.factories import dataset, run_event, schema
from tests.findings.helpers import PAYMENTS_DB, findings, ingest, source

BAD = [("%00", "must not contain NUL"), ("%FF", "must be valid UTF-8"), ("%C3", "must be valid UTF-8")]


def assert_names(response: httpx.Response, parameter: str, reason: str) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"] == "/problems/invalid-parameter"
    assert problem["pointer"] == parameter, problem
    assert parameter in problem["detail"]
    assert reason in problem["detail"]


@pytest.mark.parametrize(("bad", "reason"), BAD)
@pytest.mark.parametrize(
    ("method", "path", "parameter"),
    [
        ("GET", "/api/v1/namespaces/a{bad}b", "namespace"),
        ("GET", "/api/v1/namespaces/ns/datasets/a{bad}", "dataset"),
        ("GET", "/api/v1/namespaces/ns/datasets/x.y/versions", None),  # control: no bad text
        ("GET", "/api/v1/namespaces/ns/datasets/a{bad}/versions", "dataset"),
        ("GET", "/api/v1/namespaces/ns/datasets/x/versions/a{bad}", "version"),
        ("GET", "/api/v1/namespaces/n{bad}/jobs", "namespace"),
        ("GET", "/api/v1/namespaces/ns/jobs/j{bad}", "job"),
        ("GET", "/api/v1/namespaces/ns/jobs/j{bad}/runs", "job"),
        ("GET", "/api/v1/jobs/runs/r{bad}", "run_id"),
        ("GET", "/api/v1/findings/datasets/ns{bad}/t", "namespace"),
        ("GET", "/api/v1/findings/jobs/ns/j{bad}", "job"),
        ("PUT", "/api/v1/tags/t{bad}", "tag"),
        ("POST", "/api/v1/namespaces/ns/datasets/d{bad}/tags/t", "dataset"),
        ("DELETE", "/api/v1/namespaces/ns/datasets/d/fields/f{bad}/tags/t", "field"),
        ("GET", "/api/v1/no/such/ro{bad}ute", "path segment 5"),  # no route: still a 400, by position
        ("GET", "/api/v1/search?q=a{bad}", "q"),
        ("GET", "/api/v1/search?q=ok&filter=DATASET&sort=N{bad}", "sort"),
        ("GET", "/api/v1/lineage?nodeId=dataset:ns:a{bad}", "nodeId"),
        ("GET", "/api/v1/column-lineage?nodeId=datasetField:ns:a:f{bad}", "nodeId"),
        ("GET", "/api/v1/findings?product=p{bad}", "product"),
        ("GET", "/api/v1/tags?limit=1{bad}", "limit"),
        ("GET", "/api/v1/classifications?namespace=ns&dataset=d{bad}", "dataset"),
        ("GET", "/api/v1/events/lineage?before=x{bad}", "before"),
        ("GET", "/api/v1/namespaces?x{bad}=1", "x\\x00"),
    ],
)
async def test_path_segments_and_query_parameters(
    client: httpx.AsyncClient, method: str, path: str, parameter: str | None, bad: str, reason: str
) -> None:
    response = await client.request(
        method, path.format(bad=bad), json={} if method in {"PUT", "POST"} else None
    )
    if parameter is None:
        assert response.status_code in {200, 404}
        return
    if parameter == "x\\x00":  # the name itself is the bad text; it is shown escaped
        parameter = {"%00": "x\\x00", "%FF": "x\\xff", "%C3": "x\\xc3"}[bad]
    assert_names(response, parameter, reason)


async def test_the_check_comes_before_authentication(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/namespaces/a%00", headers={"Authorization": "Bearer nope"})
    assert_names(response, "namespace", "NUL")


async def test_percent_encoded_percent_is_not_a_nul(client: httpx.AsyncClient) -> None:
    # `%2500` is the three characters "%00" in a name, not a NUL.
    response = await client.get("/api/v1/namespaces/a%2500b")
    assert response.status_code == 404
    assert response.json()["detail"] == "namespace 'a%00b' not found"


@pytest.mark.parametrize(("text", "reason"), [("a\u0000b", "NUL"), ("a\ud800b", "lone surrogate")])
async def test_graphql_variables_and_literals(client: httpx.AsyncClient, text: str, reason: str) -> None:
    # A GraphQL error naming the argument, as for any other bad argument (not "internal error").
    query = "query($ns: String!, $d: String!) { dataset(namespace: $ns, name: $d) { name } }"
    response = await client.post(
        "/graphql",
        content=json.dumps({"query": query, "variables": {"ns": "bigquery", "d": text}}),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200
    answer = response.json()
    assert answer["data"] is None
    [error] = answer["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": "name"}
    assert "$d" in error["message"]
    assert reason in error["message"]

    response = await client.post(
        "/graphql",
        content=json.dumps({"query": query, "variables": {"ns": text, "d": "t"}}),
        headers={"Content-Type": "application/json"},
    )
    assert response.json()["errors"][0]["extensions"]["argument"] == "namespace"

    escaped = json.dumps(text)  # a GraphQL string literal with a \u escape
    literal = f"{{ search(query: {escaped}) {{ name }} }}"
    response = await client.post("/graphql", json={"query": literal})
    [error] = response.json()["errors"]
    if reason == "lone surrogate":  # graphql-core's lexer refuses that escape itself: a syntax error
        assert "Invalid Unicode escape" in error["message"]
        return
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": "query"}
    assert reason in error["message"]


async def test_graphql_body_that_is_not_utf8(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql",
        content=b'{"query": "{ __typename }", "x": "\xff"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["type"] == "/problems/invalid-json"


async def test_json_bodies_name_the_field(client: httpx.AsyncClient) -> None:
    await ingest(
        client,
        run_event(
            job=("airflow-payments", "payments_dag.load"),
            inputs=[
                dataset(
                    PAYMENTS_DB,
                    "payments.transactions",
                    dataSource=source("jdbc:postgresql://payments-db-1.internal:5432/payments"),
                    schema=schema("id"),
                )
            ],
        ),
    )
    [finding] = await findings(client, "unencrypted-transfer")
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", f"/api/v1/findings/{finding['id']}/waive", {"reason": "legacy\u0000driver"}, "reason"),
        ("POST", f"/api/v1/findings/{finding['id']}/unwaive", {"reason": "x\u0000"}, "reason"),
        (
            "POST",
            "/api/v1/grants",
            {
                "grantee_product": "fraud",
                "scope": "dataset",
                "namespace": "bigquery",
                "name": "t\u0000",
                "reason": "needed",
                "grantor_product": "payments",
            },
            "name",
        ),
        (
            "POST",
            "/api/v1/classifications/decisions",
            {"namespace": "bigquery", "dataset": "d", "tag": "PII.CPF", "action": "add", "reason": "r\u0000"},
            "reason",
        ),
        ("PUT", "/api/v1/tags/ok", {"description": "a\u0000"}, "description"),
    ]
    for method, path, body, field in cases:
        response = await client.request(
            method, path, content=json.dumps(body), headers={"Content-Type": "application/json"}
        )
        assert_names(response, field, "NUL")


async def test_ingest_replaces_nul_and_refuses_lone_surrogates(client: httpx.AsyncClient) -> None:
    event = run_event(outputs=[dataset("bigquery", "p.t\u0000x")])
    stored = await client.post("/api/v1/lineage", content=json.dumps(event))
    assert stored.status_code == 201
    assert (await client.get("/api/v1/namespaces/bigquery/datasets/p.t%EF%BF%BDx")).status_code == 200
    event = run_event(outputs=[dataset("bigquery", "p.t\ud800x")])
    refused = await client.post("/api/v1/lineage", content=json.dumps(event))
    assert refused.status_code == 400
