"""The bundle's HTML report as a person sees it: rendered in headless Chromium (Debian's, never a
downloaded build), screenshot kept in tests/artifacts/, and the picture of the flows checked for
legibility — every dataset drawn, no two boxes overlapping, labels at a readable size."""

from __future__ import annotations

import asyncio
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.audit.signing import kek_from_settings
from catalog.config import Settings
from catalog.export.bundle import ExportRequest, write_bundle
from tests.export.helpers import load
from tests.export.scenario import fintech_events

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SCREENSHOT = ARTIFACTS / "export-report.png"
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


def no_browser(reason: str) -> None:
    """Skip where no browser is installed; CI installs one (.ci/run), so there it is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} — CI must run the report browser test")
    pytest.skip(reason)


def _missing_browser() -> str | None:
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        return f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` to run this test"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the `playwright` package is not installed (pip install -e '.[dev]')"
    return None


def _render(report: Path) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(report.as_uri())
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            facts: dict[str, Any] = page.evaluate(
                """() => {
                  const svg = document.querySelector('.figure svg');
                  const boxes = [...svg.querySelectorAll('g > rect')].map(r => r.getBoundingClientRect());
                  const labels = [...svg.querySelectorAll('g > text')];
                  return {
                    boxes: boxes.map(b => [b.x, b.y, b.width, b.height]),
                    fontSizes: labels.map(t => parseFloat(getComputedStyle(t).fontSize)),
                    labelOverflow: labels.filter(t => {
                      const box = t.parentNode.querySelector('rect').getBoundingClientRect();
                      const tb = t.getBoundingClientRect();
                      return tb.right > box.right + 0.5;
                    }).length,
                    edges: svg.querySelectorAll('path[marker-end]').length,
                    title: document.title,
                  };
                }"""
            )
            return facts
        finally:
            browser.close()


async def test_the_report_renders_a_legible_flow_picture(
    client: httpx.AsyncClient, engine: AsyncEngine, settings: Settings, tmp_path: Path
) -> None:
    missing = _missing_browser()
    if missing:
        no_browser(missing)

    await load(client, fintech_events())
    bundle = tmp_path / "bundle.zip"
    await write_bundle(engine, bundle, ExportRequest(), kek_from_settings(settings))
    report = tmp_path / "report.html"
    with zipfile.ZipFile(bundle) as zf:
        report.write_bytes(zf.read("report.html"))

    facts = await asyncio.to_thread(_render, report)  # sync Playwright must not run on the event loop

    assert SCREENSHOT.stat().st_size > 10_000
    assert facts["title"].startswith("Compliance export")
    boxes = facts["boxes"]
    assert len(boxes) >= 30, "a few dozen datasets are drawn"
    assert facts["edges"] >= 30
    for i, (x1, y1, w1, h1) in enumerate(boxes):
        for x2, y2, w2, h2 in boxes[i + 1 :]:
            apart = x1 + w1 <= x2 or x2 + w2 <= x1 or y1 + h1 <= y2 or y2 + h2 <= y1
            assert apart, "two dataset boxes overlap"
    assert min(facts["fontSizes"]) >= 10
    assert facts["labelOverflow"] == 0, "a label runs out of its box"
