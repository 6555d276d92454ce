"""What keeps /graphql safe to expose: keys as for REST, and limits on depth, aliases, tokens, page size
and time, each answered with a GraphQL error that says what to change."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.config import Settings
from catalog.metadata import queries
from tests.graphql.conftest import app_client, gql

NAMESPACES = "{ namespaces { nodes { name } } }"


def messages(body: dict[str, Any]) -> list[str]:
    return [e["message"] for e in body.get("errors", [])]


# -- authentication -------------------------------------------------------------------------------------


async def test_a_query_without_a_key_is_401_problem_json(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": NAMESPACES}, headers={"Authorization": ""})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["type"] == "/problems/unauthenticated"


async def test_a_query_with_an_unknown_key_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql", json={"query": NAMESPACES}, headers={"Authorization": "Bearer cat_nope_nope"}
    )
    assert response.status_code == 401
    assert response.json()["detail"] == "the API key is unknown, revoked or expired"


async def test_graphiql_page_is_served_without_a_key_and_without_a_cdn(client: httpx.AsyncClient) -> None:
    page = await client.get("/graphql", headers={"Authorization": "", "Accept": "text/html"})
    assert page.status_code == 200
    assert "/graphql/static/graphiql.min.js" in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets, page.text
    assert all(a.startswith("/graphql/static/") for a in assets), assets  # nothing from a CDN
    for asset in (
        "graphiql.min.js",
        "graphiql.min.css",
        "react.production.min.js",
        "react-dom.production.min.js",
    ):
        served = await client.get(f"/graphql/static/{asset}", headers={"Authorization": ""})
        assert served.status_code == 200, asset
        assert len(served.content) > 1000


async def test_queries_over_get_are_refused(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/graphql", params={"query": NAMESPACES}, headers={"Accept": "application/json"}
    )
    assert response.status_code in (400, 404, 405)
    assert "data" not in response.text


# -- limits ---------------------------------------------------------------------------------------------


async def test_depth_limit(client: httpx.AsyncClient) -> None:
    # dataset -> fields -> dataset -> fields ... is valid GraphQL, and could fan out without bound.
    nested = "id"
    for _ in range(7):
        nested = f"fields {{ dataset {{ {nested} }} }}"
    body = await gql(client, f'{{ dataset(namespace: "a", name: "b") {{ {nested} }} }}')
    assert body.get("data") is None
    assert messages(body) == ["'anonymous' exceeds maximum operation depth of 12"]


async def test_alias_limit(client: httpx.AsyncClient) -> None:
    query = "{ " + " ".join(f"a{i}: namespaces {{ nodes {{ name }} }}" for i in range(31)) + " }"
    body = await gql(client, query)
    assert messages(body) == ["31 aliases found. Allowed: 30"]


async def test_token_limit(client: httpx.AsyncClient) -> None:
    body = await gql(client, "{ " + "__typename " * 4001 + "}")
    assert messages(body) == ["Syntax Error: Document contains more than 4000 tokens. Parsing aborted."]


async def test_page_size_limit(client: httpx.AsyncClient) -> None:
    body = await gql(client, "{ datasets(first: 101) { nodes { name } } }")
    assert messages(body) == ["`first` must be between 1 and 100; got 101"]
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    body = await gql(client, '{ job(namespace: "a", name: "b") { runs(first: 0) { nodes { id } } } }')
    assert body["data"] == {"job": None}  # no job: the runs argument is never reached
    body = await gql(client, "{ namespaces(first: 1000) { nodes { name } } }")
    assert messages(body) == ["`first` must be between 1 and 100; got 1000"]


async def test_limits_come_from_settings(settings: Settings, database_url: str) -> None:
    tight = settings.model_copy(update={"graphql_max_page_size": 5, "graphql_max_depth": 2})
    async with app_client(tight, database_url) as (_, http):
        assert messages(await gql(http, "{ datasets(first: 6) { nodes { name } } }")) == [
            "`first` must be between 1 and 5; got 6"
        ]
        deep = await gql(http, "{ datasets { nodes { fields { path } } } }")
        assert messages(deep) == ["'anonymous' exceeds maximum operation depth of 2"]


async def test_a_query_running_past_its_time_limit_is_stopped(
    settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def slow_page(conn: AsyncConnection, **kwargs: Any) -> list[queries.NamespaceRow]:
        await asyncio.sleep(30)  # work that is not one slow statement: only the query deadline stops it
        return []

    monkeypatch.setattr(queries, "namespaces_page", slow_page)
    quick = settings.model_copy(update={"graphql_timeout_seconds": 0.3})
    async with app_client(quick, database_url) as (_, http):
        started = asyncio.get_running_loop().time()
        body = await gql(http, NAMESPACES)
        assert asyncio.get_running_loop().time() - started < 5
    assert body["data"] is None
    assert messages(body) == [
        "the query exceeded its time limit of 0.3 s; ask for less (smaller pages, less depth)"
    ]
    assert body["errors"][0]["extensions"]["code"] == "TIMEOUT"


async def test_a_slow_statement_is_cancelled_by_postgresql(
    settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def slow_statement(conn: AsyncConnection, **kwargs: Any) -> list[queries.NamespaceRow]:
        await conn.execute(text("SELECT pg_sleep(30)"))
        return []

    monkeypatch.setattr(queries, "namespaces_page", slow_statement)
    # A generous query deadline, so what stops the statement is the server's statement_timeout (90% of it).
    quick = settings.model_copy(update={"graphql_timeout_seconds": 1.0})
    async with app_client(quick, database_url) as (app, http):
        body = await gql(http, NAMESPACES)
        assert messages(body) == [
            "the query exceeded its time limit of 1 s; ask for less (smaller pages, less depth)"
        ]
        assert body["errors"][0]["extensions"]["code"] == "TIMEOUT"
        # The cancelled statement left no connection checked out or broken: the next query works.
        monkeypatch.undo()
        assert "errors" not in await gql(http, NAMESPACES)
        assert app.state.engine.pool.checkedout() == 0


async def test_unexpected_errors_are_masked(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(conn: AsyncConnection, **kwargs: Any) -> list[queries.NamespaceRow]:
        raise RuntimeError("password=hunter2 in some internal message")

    monkeypatch.setattr(queries, "namespaces_page", broken)
    body = await gql(client, NAMESPACES)
    assert messages(body) == ["internal error; quote the X-Request-ID response header"]
    assert "hunter2" not in str(body)


def test_domain_packages_do_not_import_strawberry() -> None:
    root = Path(__file__).resolve().parents[2] / "catalog"
    for domain in ("metadata", "lineage"):
        for source in (root / domain).rglob("*.py"):
            assert "strawberry" not in source.read_text(), source
