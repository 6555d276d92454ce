"""The write dependency: one transaction per write, a lost connection answers 503 and commits nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from catalog.tags import service as tags_service


async def test_a_write_whose_connection_dies_answers_503_and_commits_nothing(
    client: httpx.AsyncClient, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    upsert = tags_service.upsert_tag

    async def write_then_lose_the_connection(conn: AsyncConnection, **kwargs: Any) -> Any:
        # The real write, then the backend is killed (as a failover would) before the commit.
        written = await upsert(conn, **kwargs)
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with engine.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await conn.execute(text("SELECT 1"))
        return written

    monkeypatch.setattr(tags_service, "upsert_tag", write_then_lose_the_connection)
    lost = await client.put("/api/v1/tags/PII", json={"description": "personal data"})
    assert lost.status_code == 503, lost.text
    assert lost.headers["retry-after"]
    assert lost.headers["content-type"].startswith("application/problem+json")
    monkeypatch.undo()
    assert (await client.get("/api/v1/tags")).json()["tags"] == []  # rolled back with the connection
    again = await client.put("/api/v1/tags/PII", json={"description": "personal data"})
    assert again.status_code == 200, again.text
    assert (await client.get("/api/v1/tags")).json()["tags"] == [
        {"name": "PII", "description": "personal data"}
    ]
