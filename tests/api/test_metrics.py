"""/metrics over a real socket: who may read it, and counters that move by exactly what was done —
HTTP requests by route template and status, events accepted / duplicate / rejected, authorisation
denials, open findings by rule and severity (from the database), the connection pool."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.config import Settings
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.factories import dataset, run_event, schema
from tests.findings.helpers import PAYMENTS_DB, source
from tests.keys import make_key

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
METRICS_TOKEN = "scraper-" + uuid.uuid4().hex


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"metrics_token": SecretStr(METRICS_TOKEN), "metrics_cache_seconds": 0})


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: LiveServer, headers: dict[str, str] = ADMIN) -> Samples:
    answer = httpx.get(f"{server.url}/metrics", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def plaintext_read(job: str) -> dict[str, Any]:
    """A run reading a payments table over plaintext JDBC: an unencrypted-transfer finding."""
    read = dataset(
        PAYMENTS_DB, f"payments.{job}", dataSource=source("jdbc:postgresql://db:5432/p"), schema=schema("id")
    )
    return run_event(job=("airflow-payments", job), inputs=[read])


def test_a_scrape_after_ingest_shows_exact_counts(live_server: LiveServer, service_database_url: str) -> None:
    server = live_server
    before = scrape(server)
    post = f"{server.url}/api/v1/lineage"
    first, second, third = plaintext_read("a"), plaintext_read("b"), plaintext_read("c")
    for event in (first, second, third, first):  # the last one is a retry: a duplicate
        assert httpx.post(post, json=event, headers=ADMIN, timeout=10).status_code == 201
    bad = run_event()
    bad["run"]["runId"] = "not-a-uuid"
    assert httpx.post(post, json=bad, headers=ADMIN, timeout=10).status_code in (400, 422)
    batch = [plaintext_read("d"), second, {"eventType": "COMPLETE"}]  # new, duplicate, invalid
    answer = httpx.post(f"{post}/batch", content=orjson.dumps(batch), headers=ADMIN, timeout=10)
    assert answer.status_code == 200, answer.text

    namespace = f"{server.url}/api/v1/namespaces/{quote(PAYMENTS_DB, safe='')}"
    assert httpx.get(namespace, headers=ADMIN, timeout=10).status_code == 200

    after = scrape(server)
    # a name with `/` and `:` sent URL-encoded is still counted under its route template
    ns_labels = {"handler": "/api/v1/namespaces/{namespace}", "method": "GET", "status": "200"}
    assert moved(before, after, "http_requests_total", **ns_labels) == 1
    assert moved(before, after, "catalog_ingest_events_total", outcome="accepted") == 4
    assert moved(before, after, "catalog_ingest_events_total", outcome="duplicate") == 2
    assert moved(before, after, "catalog_ingest_events_total", outcome="rejected") == 2
    # HTTP: by route template and exact status
    single = {"handler": "/api/v1/lineage", "method": "POST"}
    assert moved(before, after, "http_requests_total", **single, status="201") == 4
    assert (
        moved(before, after, "http_requests_total", **single, status=str(400))
        + moved(before, after, "http_requests_total", **single, status="422")
        == 1
    )
    batch_labels = {"handler": "/api/v1/lineage/batch", "method": "POST", "status": "200"}
    assert moved(before, after, "http_requests_total", **batch_labels) == 1
    assert moved(before, after, "http_request_duration_seconds_count", **single, status="201") == 4
    # the first scrape itself was counted under its template
    assert value(after, "http_requests_total", handler="/metrics", method="GET", status="200") >= 1
    # The projector runs on a thread here: its process's metrics are the `process_*` ones, no others.
    assert not [name for name, _ in after if name.startswith("catalog_projector_process")]

    # open findings: exactly the database's counts
    expected = open_findings(service_database_url)
    assert expected, "the plaintext reads should have opened findings"
    exported = {
        (dict(labels)["rule"], dict(labels)["severity"]): v
        for (name, labels), v in after.items()
        if name == "catalog_findings_open"
    }
    assert exported == expected


def open_findings(url: str) -> dict[tuple[str, str], float]:
    import asyncio

    from catalog.db.engine import create_engine

    async def go() -> dict[tuple[str, str], float]:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text(
                        "SELECT rule, severity, count(*) AS n FROM findings "
                        "WHERE status = 'open' GROUP BY rule, severity"
                    )
                )
                return {(r.rule, r.severity): float(r.n) for r in rows}
        finally:
            await engine.dispose()

    return asyncio.run(go())


async def test_denials_are_counted_by_rule(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    engineer = await make_key(engine, "engineer", "payments")
    before = await ascrape(client)
    assert (await client.get("/api/v1/exports", headers=engineer.headers)).status_code == 403
    assert (await client.get("/api/v1/exports", headers=engineer.headers)).status_code == 403
    assert (await client.get("/metrics", headers=engineer.headers)).status_code == 403
    after = await ascrape(client)
    labels = {"object": "export", "action": "read", "rule": "default-deny"}
    assert moved(before, after, "catalog_authorization_denials_total", **labels) == 2
    labels = {"object": "metrics", "action": "read", "rule": "default-deny"}
    assert moved(before, after, "catalog_authorization_denials_total", **labels) == 1
    forbidden = {"handler": "/api/v1/exports", "method": "GET", "status": "403"}
    assert moved(before, after, "http_requests_total", **forbidden) == 2


async def ascrape(client: httpx.AsyncClient) -> Samples:
    answer = await client.get("/metrics")
    assert answer.status_code == 200, answer.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


async def test_who_may_read_metrics(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    anonymous = await client.get("/metrics", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"].startswith("application/problem+json")
    auditor = await make_key(engine, "auditor")
    assert (await client.get("/metrics", headers=auditor.headers)).status_code == 200
    for role, product in (("pipeline", "payments"), ("engineer", "payments"), ("steward", "payments")):
        key = await make_key(engine, role, product)
        denied = await client.get("/metrics", headers=key.headers)
        assert denied.status_code == 403, (role, denied.text)
    # the scraper's token reads /metrics and nothing else
    scraper = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    assert (await client.get("/metrics", headers=scraper)).status_code == 200
    elsewhere = await client.get("/api/v1/namespaces", headers=scraper)
    assert elsewhere.status_code == 403
    assert elsewhere.json()["rule"] == "default-deny"


async def test_pool_gauges_describe_the_engine(client: httpx.AsyncClient, settings: Settings) -> None:
    samples = await ascrape(client)
    assert value(samples, "catalog_db_pool_size") == settings.pool_size
    assert value(samples, "catalog_db_pool_checked_out") >= 0
    assert ("catalog_db_pool_idle", frozenset()) in samples
    assert ("process_resident_memory_bytes", frozenset()) in samples


async def test_open_findings_are_counted_at_most_once_per_cache_period(
    settings: Settings, service_database_url: str
) -> None:
    """Scrapes within CATALOG_METRICS_CACHE_SECONDS reuse one count: a scrape storm costs the database
    one aggregate query, and requests never pay for it."""
    from catalog.app import create_app

    app = create_app(settings.model_copy(update={"metrics_cache_seconds": 3600}), service_database_url)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://catalog", headers=ADMIN
        ) as http,
    ):
        first = await ascrape(http)
        opened = await http.post("/api/v1/lineage", json=plaintext_read("cached"))
        assert opened.status_code == 201
        assert (await http.get("/api/v1/findings")).json()["findings"], "a finding should be open now"
        again = await ascrape(http)
    families = [k for k in again if k[0] == "catalog_findings_open"]
    assert [k for k in first if k[0] == "catalog_findings_open"] == families == []
