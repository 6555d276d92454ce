"""Every answer carries X-Request-ID: the client's own, or one the service makes (32 hex digits, never the
same twice, not even across service processes)."""

from __future__ import annotations

import re

import httpx

from catalog.app import create_app
from catalog.config import Settings


async def _ids(settings: Settings, database_url: str, sent: str | None = None, count: int = 3) -> list[str]:
    app = create_app(settings, database_url)
    headers = {"X-Request-ID": sent} if sent is not None else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://catalog") as http:
        return [(await http.get("/health", headers=headers)).headers["x-request-id"] for _ in range(count)]


async def test_a_request_id_is_made_for_a_request_without_one(settings: Settings, database_url: str) -> None:
    first = await _ids(settings, database_url)
    second = await _ids(settings, database_url)  # another process would build its own app like this
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in first + second)
    assert len(set(first + second)) == 6
    assert first[0][:16] != second[0][:16]  # each app draws its own prefix


async def test_the_clients_request_id_is_echoed(settings: Settings, database_url: str) -> None:
    assert await _ids(settings, database_url, sent="trace-42", count=1) == ["trace-42"]
