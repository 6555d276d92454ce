"""Body size limits over a real socket: a declared Content-Length over the limit is refused with 413 before
the body is read; a chunked body is refused as soon as it passes the limit; the limits are settings."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from catalog.config import MiB, Settings
from tests.conftest import ADMIN_TOKEN, LiveServer

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}


def _headers_only(url: str, path: str, length: int, timeout: float = 5) -> tuple[int, bytes]:
    """Send a request line and headers announcing `length` body bytes, and no body: the answer must
    come without the server waiting for (or reading) any of it."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(
            (
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
            ).encode()
        )
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)  # times out (the test fails) if the server waits for the body
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize(
    ("path", "limit"),
    [
        ("/graphql", 1 * MiB),
        ("/api/v1/grants", 1 * MiB),
        ("/api/v1/lineage", 8 * MiB),
        ("/api/v1/lineage/batch", 64 * MiB),
    ],
)
def test_declared_length_over_the_limit_is_refused_before_reading(
    live_server: LiveServer, path: str, limit: int
) -> None:
    status, body = _headers_only(live_server.url, path, 256 * MiB)
    assert status == 413
    problem = json.loads(body)
    assert problem["type"] == "/problems/too-large"
    assert str(limit) in problem["detail"]
    # At the limit itself nothing is refused for its size (the server then waits for the body: a timeout).
    with pytest.raises(TimeoutError):
        _headers_only(live_server.url, path, limit, timeout=0.5)


async def _chunks(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    sent = 0
    yield b'{"query": "{ __typename }", "variables": {"pad": "'
    while sent < total:
        yield b"x" * size
        sent += size
        await asyncio.sleep(0)
    yield b'"}}'


async def test_chunked_graphql_body_is_cut_off_at_the_limit(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, headers=AUTH, timeout=10) as http:
        # No Content-Length (a generator is sent chunked): counted while it streams in.
        big = await http.post("/graphql", content=_chunks(2 * MiB))
        assert big.status_code == 413
        assert big.headers["content-type"].startswith("application/problem+json")
        assert big.json()["type"] == "/problems/too-large"
        small = await http.post("/graphql", content=_chunks(64 * 1024))
        assert small.status_code == 200, small.text
        assert small.json() == {"data": {"__typename": "Query"}}
        # Any other JSON body (here a grant) has its own limit, chunked or not.
        grant = await http.post("/api/v1/grants", content=_chunks(2 * MiB))
        assert grant.status_code == 413


@pytest.fixture
def small_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("CATALOG_GRAPHQL_MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("CATALOG_MAX_JSON_BODY_BYTES", "4096")
    return Settings(home=tmp_path / "home", admin_token=ADMIN_TOKEN, log_format="console")


async def test_limits_are_settings(small_limits: Settings, database_url: str) -> None:
    from catalog.app import create_app

    assert (small_limits.graphql_max_body_bytes, small_limits.max_json_body_bytes) == (2048, 4096)
    app = create_app(small_limits, database_url)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c", headers=AUTH) as http,
    ):
        query = {"query": "{ __typename }", "variables": {"pad": "x" * 3000}}
        refused = await http.post("/graphql", json=query)
        assert refused.status_code == 413
        assert "2048" in refused.json()["detail"]
        query["variables"] = {"pad": "x" * 1000}
        assert (await http.post("/graphql", json=query)).status_code == 200
        waiver = await http.post("/api/v1/findings/1/waive", json={"reason": "x" * 5000})
        assert waiver.status_code == 413
