"""Every page of the web UI loads from the service alone with no console error, passes axe-core's WCAG 2
A/AA rules with no serious or critical violation, and leaves a screenshot in tests/artifacts/."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.ui.conftest import DemoCatalog, UiPage
from tests.ui.demo import CUSTOMERS, ENRICHED

PG, CUSTOMERS_NAME = CUSTOMERS
ENRICHED_ID = quote(f"dataset:{ENRICHED[0]}:{ENRICHED[1]}")

# (screenshot name, path, text the loaded page shows)
PAGES = [
    ("search", "/search?q=payments", "cw.payments.tx_enriched"),
    ("dataset", f"/datasets/{quote(PG, safe='')}/{CUSTOMERS_NAME}", "PII.CPF"),
    ("job", "/jobs/airflow-payments/payments_dag.enrich", "division by zero in SHA256 shim"),
    ("lineage", f"/lineage?node={ENRICHED_ID}&depth=2", "fraud_dag.score"),
    ("lineage-columns", f"/lineage?node={ENRICHED_ID}&depth=2&level=column", "email_hash"),
    ("pii-flow", f"/pii-flow?ns={quote(PG, safe='')}&dataset={CUSTOMERS_NAME}&field=cpf", "Hop by hop"),
    ("products", "/products", "Flows between products"),
    ("findings", "/findings", "PII copied unmasked"),
    ("grants", "/grants", "No grants."),
    ("export", "/export", "Build and verify"),
]


@pytest.mark.parametrize("role", ["admin"])
def test_every_page_loads_clean_and_accessible(ui: UiPage, demo: DemoCatalog, role: str) -> None:
    ui.sign_in(demo.keys[role])
    problems: dict[str, list[str]] = {}
    for name, path, text in PAGES:
        ui.goto(path)
        ui.page.get_by_text(text).first.wait_for(timeout=15_000)
        ui.page.wait_for_load_state("networkidle")
        shot = ui.screenshot(name)
        assert shot.stat().st_size > 10_000, name
        violations = ui.axe_violations()
        if violations or ui.errors:
            problems[name] = violations + ui.errors
        ui.errors.clear()
    assert problems == {}

    # the lineage explorer draws ledger's plaintext FTP upload as an unencrypted transfer
    ui.goto(f"/lineage?node={ENRICHED_ID}&depth=2")
    clear = ui.page.locator(".react-flow__edge.is-clear")
    clear.first.wait_for()
    assert clear.count() == 1
    assert ui.foreign == [], f"the UI fetched from outside the service: {ui.foreign}"


def test_sign_in_page_is_accessible_and_refuses_a_wrong_key(ui: UiPage) -> None:
    ui.page.goto(f"{ui.base}/ui/")
    ui.page.wait_for_selector("#api-key")
    ui.screenshot("sign-in")
    assert ui.axe_violations() == []
    ui.page.fill("#api-key", "cat_0000_not-a-key")
    ui.page.click("button[type=submit]")
    ui.page.get_by_text("The service refused this key").wait_for(timeout=10_000)
    assert ui.page.evaluate("() => sessionStorage.length") == 0  # a refused key is not kept
    ui.errors[:] = [e for e in ui.errors if "401" not in e]  # the refused check itself
    assert ui.errors == []


def test_api_docs_render_offline(ui: UiPage) -> None:
    """Swagger UI and Redoc run from the service's own files: nothing is fetched from elsewhere."""
    ui.page.goto(f"{ui.base}/docs")
    ui.page.locator(".swagger-ui .info .title").wait_for(timeout=20_000)
    ui.page.get_by_text("/api/v1/lineage").first.wait_for()
    ui.screenshot("docs")
    ui.page.goto(f"{ui.base}/redoc")
    ui.page.locator(".api-content").wait_for(timeout=20_000)
    ui.page.get_by_text("Lineage & governance catalog").first.wait_for()
    ui.screenshot("redoc")
    assert ui.foreign == [], f"the docs fetched from outside the service: {ui.foreign}"
    assert ui.errors == []
