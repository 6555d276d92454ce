"""Errors come back as typed exceptions carrying the problem+json fields; 503 and 429 are retried after
the server's Retry-After. The flaky front is a tiny real HTTP server that answers 503 (or 429) a given
number of times, then forwards to the real service."""

from __future__ import annotations

import datetime as dt
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from catalog_client import (
    AsyncCatalogClient,
    BadRequest,
    CatalogClient,
    ConfigurationError,
    NotFound,
    RateLimited,
    RetryPolicy,
    ServerError,
    ServiceUnavailable,
    TransportError,
    Unauthenticated,
)
from catalog_client._protocol import retry_after
from catalog_client.models import GrantIn
from catalog_client.pipelines import Emitter, output_dataset
from tests.conftest import ADMIN_TOKEN, LiveServer, free_port
from tests.factories import dataset, run_event


@dataclass
class Flaky:
    url: str
    failures: int  # answers to fail before forwarding
    status: int = 503
    retry_after: str | None = "1"
    drop: bool = False  # fail by closing the connection after reading the request, with no answer
    seen: list[float] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.seen.clear()
        self.methods.clear()


@pytest.fixture
def flaky(live_server: LiveServer) -> Iterator[Flaky]:
    port = free_port()
    state = Flaky(f"http://127.0.0.1:{port}", failures=1)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request_body = self.rfile.read(length) if length else b""
            state.seen.append(time.monotonic())
            state.methods.append(self.command)
            if len(state.seen) <= state.failures:
                if state.drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                body = (
                    b'{"type":"/problems/database-unavailable","title":"The database is unavailable; retry later","status":%d}'
                    % state.status
                )
                self.send_response(state.status)
                self.send_header("Content-Type", "application/problem+json")
                if state.retry_after is not None:
                    self.send_header("Retry-After", state.retry_after)
            else:
                # Longer than the service's bounded wait for projection (10 s, the suite ingests with
                # wait=projected): httpx's 5 s default made a slow projection look like a lost answer.
                upstream = httpx.request(
                    self.command,
                    live_server.url + self.path,
                    timeout=30,
                    content=request_body,
                    headers={
                        k: v
                        for k, v in self.headers.items()
                        if k.lower() in {"authorization", "content-type"}
                    },
                )
                body = upstream.content
                self.send_response(upstream.status_code)
                self.send_header("Content-Type", upstream.headers.get("content-type", "application/json"))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_problem_json_becomes_a_typed_exception(catalog: CatalogClient, live_server: LiveServer) -> None:
    with pytest.raises(NotFound) as missing:
        catalog.dataset("postgres://nowhere:5432", "public.nothing")
    err = missing.value
    assert (err.status, err.type, err.slug, err.title) == (
        404,
        "/problems/not-found",
        "not-found",
        "Not found",
    )
    assert err.detail == "dataset 'public.nothing' in namespace 'postgres://nowhere:5432' not found"
    assert err.request_id

    with pytest.raises(BadRequest) as bad:
        catalog.lineage("dataset:x:y", depth=99)
    assert (bad.value.status, bad.value.pointer) == (400, "depth")
    assert "less than or equal to 20" in str(bad.value.detail)

    with CatalogClient(live_server.url, "wrong") as stranger, pytest.raises(Unauthenticated) as denied:
        list(stranger.namespaces())
    assert denied.value.status == 401


def test_503_is_retried_after_retry_after(flaky: Flaky) -> None:
    with CatalogClient(flaky.url, ADMIN_TOKEN) as client:
        started = time.monotonic()
        assert list(client.namespaces()) == []
    assert len(flaky.seen) == 2
    assert flaky.seen[1] - started >= 0.95  # waited the second the server asked for


async def test_async_429_is_retried_then_given_up(flaky: Flaky, catalog: CatalogClient) -> None:
    catalog.ingest(run_event(outputs=[dataset("bigquery", "p.t")]))
    flaky.status, flaky.retry_after, flaky.failures = 429, "0", 2
    async with AsyncCatalogClient(flaky.url, ADMIN_TOKEN, retry=RetryPolicy(retries=2)) as client:
        assert [n.name async for n in client.namespaces()] == ["airflow-payments", "bigquery"]
    assert len(flaky.seen) == 3

    flaky.seen.clear()
    flaky.failures = 5
    async with AsyncCatalogClient(flaky.url, ADMIN_TOKEN, retry=RetryPolicy(retries=1)) as client:
        with pytest.raises(RateLimited) as limited:
            await client.namespace("bigquery")
    assert len(flaky.seen) == 2
    assert (limited.value.status, limited.value.retry_after) == (429, 0.0)


def test_503_without_retry_after_backs_off_then_raises(flaky: Flaky) -> None:
    flaky.failures, flaky.retry_after = 10, None
    policy = RetryPolicy(retries=2, backoff=0.05)
    with (
        CatalogClient(flaky.url, ADMIN_TOKEN, retry=policy) as client,
        pytest.raises(ServiceUnavailable) as down,
    ):
        client.namespace("x")
    assert down.value.slug == "database-unavailable"
    gaps = [b - a for a, b in zip(flaky.seen, flaky.seen[1:], strict=False)]
    assert len(gaps) == 2
    assert gaps[0] >= 0.05
    assert gaps[1] >= 0.1  # exponential


def test_unreachable_and_unconfigured(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    policy = RetryPolicy(retries=1, backoff=0.01)
    with CatalogClient(url, retry=policy, timeout=2) as client, pytest.raises(TransportError):
        client.namespace("x")
    for var in ("CATALOG_URL", "OPENLINEAGE_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigurationError):
        CatalogClient()
    monkeypatch.setenv("OPENLINEAGE_URL", "http://fallback:5000")
    monkeypatch.setenv("CATALOG_URL", "http://primary:5000/")
    monkeypatch.setenv("OPENLINEAGE_API_KEY", "ol-key")
    with CatalogClient() as configured:
        assert configured.url == "http://primary:5000"
        assert configured.headers["Authorization"] == "Bearer ol-key"


def test_retry_after_as_an_http_date_is_honoured() -> None:
    now = dt.datetime(2026, 12, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert retry_after({"retry-after": "Tue, 01 Dec 2026 12:00:03 GMT"}, now) == 3.0
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({"retry-after": "soon"}) is None
    policy = RetryPolicy(retries=2, max_delay=5)
    assert policy.delay(0, 503, {"retry-after": "60"}) == 5  # capped
    assert policy.delay(0, 500, {"retry-after": "1"}) is None  # only 429 and 503
    assert policy.delay(2, 503, {"retry-after": "1"}) is None  # retries used up


FAST = RetryPolicy(retries=2, backoff=0.01)
GRANT = GrantIn(
    grantee_product="fraud",
    scope="dataset",
    namespace="bigquery",
    name="p.t",
    reason="fraud models need it",
    grantor_product="payments",
)


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_errors_are_retried_for_idempotent_calls_only(
    flaky: Flaky, catalog: CatalogClient, status: int
) -> None:
    flaky.status, flaky.retry_after = status, None
    with CatalogClient(flaky.url, ADMIN_TOKEN, retry=FAST) as client:
        assert list(client.namespaces()) == []  # GET: retried
        assert flaky.methods == ["GET", "GET"]

        flaky.reset()
        event = run_event(outputs=[dataset("bigquery", "p.t")])
        assert client.ingest(event).status == "created"  # POST of an event: the service dedupes it
        assert flaky.methods == ["POST", "POST"]

        flaky.reset()
        with pytest.raises(ServerError) as failed:  # POST that creates: not retried, it may have acted
            client.create_grant(GRANT)
        assert failed.value.status == status
        assert flaky.methods == ["POST"]


def test_lost_connections_are_retried_for_idempotent_calls_only(flaky: Flaky, catalog: CatalogClient) -> None:
    flaky.drop = True
    event = run_event(outputs=[dataset("bigquery", "p.t")])
    with CatalogClient(flaky.url, ADMIN_TOKEN, retry=FAST) as client:
        assert client.ingest(event).status == "created"
        assert flaky.methods == ["POST", "POST"]
        flaky.reset()
        assert client.namespace("bigquery").name == "bigquery"
        assert flaky.methods == ["GET", "GET"]
        flaky.reset()
        with pytest.raises(TransportError):
            client.create_grant(GRANT)
        assert flaky.methods == ["POST"]
    # The event was sent twice (the first answer was lost on purpose) and is stored once.
    assert catalog.ingest(event).status == "duplicate"


async def test_async_client_retries_a_lost_ingest(flaky: Flaky, catalog: CatalogClient) -> None:
    flaky.drop, flaky.failures = True, 2
    event = run_event(outputs=[dataset("bigquery", "p.t")])
    async with AsyncCatalogClient(flaky.url, ADMIN_TOKEN, retry=FAST) as client:
        assert (await client.ingest(event)).status == "created"
    assert flaky.methods == ["POST", "POST", "POST"]


@pytest.mark.parametrize(("status", "drop"), [(502, False), (503, False), (504, False), (None, True)])
def test_emitter_retries_gateway_errors_503_and_lost_connections(
    flaky: Flaky, catalog: CatalogClient, status: int | None, drop: bool
) -> None:
    flaky.failures, flaky.status, flaky.retry_after, flaky.drop = 2, status or 503, "0", drop
    emitter = Emitter(flaky.url, ADMIN_TOKEN, namespace="notebooks", retry={"backoff_factor": 0.01})
    with emitter.run("nightly") as run:
        run.add_output(output_dataset("bigquery", "p.out"))
    # START: failed twice, then forwarded; COMPLETE: forwarded at once.
    assert flaky.methods == ["POST"] * 4
    assert [j.name for j in catalog.jobs("notebooks")] == ["nightly"]
