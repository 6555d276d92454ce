"""GraphiQL in a real headless Chromium: the page loads from the service alone (no internet), and a
lineage query typed into it runs and shows its answer. The screenshot is kept in tests/artifacts/."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import orjson
import pytest

from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.graphql.conftest import BQ, payments_events

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SCREENSHOT = ARTIFACTS / "graphiql-lineage.png"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

LINEAGE_QUERY = """query Upstream {
  lineage(node: {kind: DATASET, namespace: "bigquery", name: "reports.daily"}, direction: UPSTREAM) {
    root
    nodes { id kind }
    edges { origin destination }
  }
}"""


def no_browser(reason: str) -> None:
    """Skip where no browser is installed; CI installs one (.ci/run), so there it is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} — CI must run the GraphiQL browser test")
    pytest.skip(reason)


def test_graphiql_runs_a_lineage_query_in_chromium(live_server: LiveServer) -> None:
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        no_browser(f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` to run this test")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        no_browser("the `playwright` package is not installed (pip install -e '.[dev]')")

    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    loaded = httpx.post(
        f"{live_server.url}/api/v1/lineage/batch", content=orjson.dumps(payments_events()), headers=headers
    )
    assert loaded.status_code in (200, 204), loaded.text

    # The key travels in GraphiQL's headers editor (prefilled through the link), as a user would set it.
    url = f"{live_server.url}/graphql?q={quote(LINEAGE_QUERY)}&headers={quote(json.dumps(headers))}"
    server_host = urlsplit(live_server.url).netloc
    foreign: list[str] = []
    page_errors: list[str] = []

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})

            def on_request(request: Any) -> None:
                if urlsplit(request.url).netloc not in (server_host, ""):
                    foreign.append(request.url)

            page.on("request", on_request)
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.goto(url, wait_until="load")
            run = page.locator(".graphiql-execute-button")
            run.wait_for(state="visible", timeout=20_000)
            run.click()
            response = page.locator(".graphiql-response")
            # The answer shows the upstream walk: the source table in PostgreSQL, two jobs away.
            response.get_by_text("dataset:postgres://payments-db:5432:public.payments").first.wait_for(
                timeout=20_000
            )
            text = response.inner_text()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()

    assert f'"root": "dataset:{BQ}:reports.daily"' in text
    assert "job:airflow-payments:payments_dag.load" in text
    assert '"errors"' not in text
    assert foreign == [], f"the page fetched from outside the service: {foreign}"
    assert page_errors == []
    assert SCREENSHOT.stat().st_size > 10_000


def test_graphiql_first_visit_says_where_the_key_goes(live_server: LiveServer) -> None:
    """A first visit (no key yet) shows what to do — not a 401 error — and sends no request that would be
    refused; a key the service refuses gets the same hint, with the service's reason."""
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        no_browser(f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` to run this test")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        no_browser("the `playwright` package is not installed (pip install -e '.[dev]')")

    posts: list[str | None] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on(
                "request",
                lambda r: posts.append(r.headers.get("authorization")) if r.method == "POST" else None,
            )
            page.goto(f"{live_server.url}/graphql", wait_until="load")
            response = page.locator(".graphiql-response")
            response.get_by_text("Put your API key in the Headers tab").first.wait_for(timeout=20_000)
            first_visit = response.inner_text()

            wrong = quote(json.dumps({"Authorization": "Bearer cat_0000_not-a-key"}))
            page.goto(f"{live_server.url}/graphql?headers={wrong}", wait_until="load")
            response.get_by_text("was refused").first.wait_for(timeout=20_000)
            refused = response.inner_text()
        finally:
            browser.close()

    assert "401" not in first_visit
    assert "unauthenticated" not in first_visit.lower()
    assert posts, "the refused key should have been sent"
    assert set(posts) == {"Bearer cat_0000_not-a-key"}, posts  # nothing was sent without a key
    assert "unknown, revoked or expired" in refused
    assert "Headers tab" in refused
