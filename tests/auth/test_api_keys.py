"""API keys: every endpoint but /health needs one; keys are stored hashed and can be revoked."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.app import create_app
from catalog.auth.service import create_key, revoke_key, split_token
from catalog.config import Settings
from tests.conftest import ADMIN_TOKEN


async def test_health_needs_no_credential(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.json()["database"] == "ok"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/namespaces"),
        ("GET", "/api/v1/namespaces/x/datasets"),
        ("GET", "/api/v1/events/lineage"),
        ("POST", "/api/v1/lineage"),
        ("POST", "/api/v1/lineage/batch"),
    ],
)
async def test_endpoints_refuse_missing_and_wrong_keys(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    for headers in (
        {"Authorization": ""},
        {"Authorization": "Bearer cat_nope_nope"},
        {"Authorization": "Basic x"},
    ):
        response = await client.request(method, path, headers=headers, content=b"{}")
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["www-authenticate"].startswith("Bearer")


def iter_routes(routes: list[Any]) -> Iterator[Any]:
    """Every route, descending into included routers (FastAPI keeps them as nested router entries)."""
    for route in routes:
        nested = getattr(route, "original_router", None)
        if nested is not None:
            yield from iter_routes(nested.routes)
        else:
            yield route


def dependency_names(dependant: Any) -> Iterator[str]:
    """The names of every dependency of a route, however deep (`Requires` depends on the principal, or,
    for the routes whose product is the key's own, is one dependency that calls it: `authenticates`)."""
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield getattr(sub.call, "__name__", type(sub.call).__name__)
            if (calls := getattr(sub.call, "authenticates", None)) is not None:
                yield calls.__name__
        yield from dependency_names(sub)


def test_every_route_but_health_and_docs_requires_a_key(settings: Settings) -> None:
    """A new route without the authentication dependency fails here."""
    app = create_app(settings, "postgresql://unused@/x")
    # /health (liveness) and /ready (readiness) are for orchestrators and load balancers: no credential
    # "/" and "/ui" redirect to the web UI's static files (no data; the UI calls the API with a key)
    open_paths = {
        "/health",
        "/ready",
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/",
        "/ui",
    }
    checked = 0
    for route in iter_routes(app.routes):
        path = getattr(route, "path", "")
        # GraphQL authenticates inside its own router (tests/graphql covers it); static assets are public.
        if path in open_paths or path.startswith("/graphql"):
            continue
        if type(getattr(route, "app", None)).__name__ in ("StaticFiles", "_UiFiles"):
            continue  # static files (the web UI, vendored docs assets): public, no data
        assert isinstance(route, APIRoute), f"{path}: an unexpected kind of route; does it check credentials?"
        names = set(dependency_names(route.dependant))
        assert "require_principal" in names, f"{path} does not require a credential"
        checked += 1
    assert checked >= 10


async def test_created_key_works_is_stored_hashed_and_revocation_bites(
    settings: Settings, database_url: str, engine: AsyncEngine
) -> None:
    async with engine.begin() as conn:
        created = await create_key(conn, name="payments-engineer", role="engineer", product="payments")
    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT row(api_keys.*)::text FROM api_keys"))).scalar_one()
    parts = split_token(created.token)  # the secret may itself contain "_": split as the service does
    assert parts is not None
    secret = parts[1]
    assert len(secret) >= 40
    assert secret not in stored
    assert created.token not in stored

    app = create_app(settings.model_copy(update={"auth_cache_seconds": 0.0}), database_url)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://c") as http,
    ):
        headers = {"Authorization": f"Bearer {created.token}"}
        assert (await http.get("/api/v1/namespaces", headers=headers)).status_code == 200
        async with engine.begin() as conn:
            assert await revoke_key(conn, key_id=created.key_id)
        assert (await http.get("/api/v1/namespaces", headers=headers)).status_code == 401


async def test_tokens_never_reach_the_logs(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await client.get("/api/v1/namespaces")
    await client.get("/api/v1/namespaces", headers={"Authorization": "Bearer cat_abc_secretvalue123"})
    assert ADMIN_TOKEN not in caplog.text
    assert "secretvalue123" not in caplog.text
