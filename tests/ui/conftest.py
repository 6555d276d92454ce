"""The web UI in Debian's Chromium against the real service (`live_server`), loaded with the demo catalog
of tests/ui/demo.py; keys of each role made as `catalog keys create` makes them."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from catalog.db.engine import create_engine
from tests.conftest import ADMIN_TOKEN, LiveServer, PgServer
from tests.keys import make_key
from tests.ui.demo import demo_events

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
AXE = Path(__file__).with_name("vendor") / "axe.min.js"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]


def no_browser(reason: str) -> None:
    """Skip where no browser is installed; CI installs one (.ci/run), so there it is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} — CI must run the web UI browser tests")
    pytest.skip(reason)


def chromium_path() -> str:
    found = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not found:
        no_browser(f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` to run this test")
    return str(found)


@pytest.fixture(scope="session")
def browser(pg_server: PgServer) -> Iterator[Any]:
    """One Chromium for the session, started after the database server: Playwright's sync API keeps an
    event loop in this thread, where the migrations' asyncio.run could no longer run."""
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        no_browser("the `playwright` package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class DemoCatalog:
    url: str
    keys: dict[str, str]  # "engineer@payments", "steward@payments", "engineer@fraud", "auditor", "admin"


@pytest.fixture
def demo(live_server: LiveServer, database_url: str) -> DemoCatalog:
    loaded = httpx.post(
        f"{live_server.url}/api/v1/lineage/batch",
        content=orjson.dumps(demo_events()),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
    )
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["summary"]["failed"] == 0, loaded.text

    async def keys() -> dict[str, str]:
        engine = create_engine(database_url, pool_size=1)
        try:
            made = {}
            for role, product in [
                ("engineer", "payments"),
                ("steward", "payments"),
                ("engineer", "fraud"),
                ("auditor", None),
            ]:
                key = await make_key(engine, role, product)
                made[f"{role}@{product}" if product else role] = key.headers["Authorization"].split(" ", 1)[1]
            return made
        finally:
            await engine.dispose()

    # Playwright's sync API keeps an event loop in this thread: the keys are made on another one.
    with ThreadPoolExecutor(1) as pool:
        made = pool.submit(asyncio.run, keys()).result()
    made["admin"] = ADMIN_TOKEN
    return DemoCatalog(live_server.url, made)


class UiPage:
    """A browser tab on the UI that records console errors, page errors and requests leaving the service."""

    def __init__(self, browser: Any, base: str) -> None:
        self.base = base
        self.context = browser.new_context(viewport={"width": 1440, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.foreign: list[str] = []
        host = urlsplit(base).netloc
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on(
            "request",
            lambda r: self.foreign.append(r.url) if urlsplit(r.url).netloc not in (host, "") else None,
        )

    def sign_in(self, key: str) -> None:
        self.page.goto(f"{self.base}/ui/")
        self.page.fill("#api-key", key)
        self.page.click("button[type=submit]")
        self.page.wait_for_selector(".topbar")

    def goto(self, path: str) -> None:
        self.page.goto(f"{self.base}/ui{path}")

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"ui-{name}.png"
        self.page.screenshot(path=str(path))
        return path

    def axe_violations(self) -> list[str]:
        """Serious and critical WCAG 2 A/AA violations axe-core finds on the page as it is now."""
        self.page.add_script_tag(path=str(AXE))
        result = self.page.evaluate(
            "async () => { const r = await axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']});"
            " return {passes: r.passes.length, violations: r.violations"
            ".filter(v => ['serious', 'critical'].includes(v.impact))"
            ".map(v => v.id + ': ' + v.help + ' — ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', '))}; }"
        )
        assert result["passes"] > 5, "axe-core checked nothing: is the page empty?"
        return list(result["violations"])

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def ui(browser: Any, demo: DemoCatalog) -> Iterator[UiPage]:
    tab = UiPage(browser, demo.url)
    try:
        yield tab
    finally:
        tab.close()
