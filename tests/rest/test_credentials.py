"""Every REST route but /health and /ready needs an API key."""

from __future__ import annotations

from urllib.parse import quote

import httpx

from tests.lineage.conftest import PG

CUSTOMERS = f"dataset:{PG}:payments.public.customers"


def enc(name: str) -> str:
    return quote(name, safe="")


async def test_every_route_needs_a_credential(client: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", f"/api/v1/lineage?nodeId={enc(CUSTOMERS)}"),
        ("GET", "/api/v1/search?q=x"),
        ("GET", "/api/v1/tags"),
        ("PUT", "/api/v1/tags/x"),
        ("POST", f"/api/v1/namespaces/{enc(PG)}/datasets/x/tags/y"),
        ("DELETE", f"/api/v1/namespaces/{enc(PG)}/datasets/x/fields/f/tags/y"),
        # routes whose product is the key's own: one dependency authenticates and authorises
        ("POST", "/api/v1/lineage"),
        ("POST", "/api/v1/lineage/batch"),
        ("GET", "/api/v1/ingest/status"),
    ]:
        response = await client.request(method, path, headers={"Authorization": ""})
        assert response.status_code == 401, path
