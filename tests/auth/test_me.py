"""`GET /api/v1/me`: the calling key as the service knows it (id, name, role, product), never its token."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.keys import make_key


@pytest.mark.parametrize(
    ("role", "product"),
    [("pipeline", "payments"), ("engineer", "payments"), ("steward", "fraud"), ("auditor", None)],
)
async def test_me_says_the_keys_role_and_product_and_never_its_token(
    client: httpx.AsyncClient, engine: AsyncEngine, role: str, product: str | None
) -> None:
    key = await make_key(engine, role, product)
    response = await client.get("/api/v1/me", headers=key.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "keyId": key.key_id,
        "keyName": f"{role}-{product or 'all'}",
        "role": role,
        "product": product,
    }
    token = key.headers["Authorization"].removeprefix("Bearer ")
    assert token not in response.text


async def test_me_needs_a_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/me", headers={"Authorization": ""})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
