"""What users do in the web UI, end to end in Chromium against the real service: an engineer's search →
dataset → lineage → expand → column level → PII flow; a steward's waive and un-waive; an auditor's export
with its verification; and the product boundary (another product's engineer sees no columns)."""

from __future__ import annotations

from urllib.parse import quote

from tests.ui.conftest import DemoCatalog, UiPage
from tests.ui.demo import CUSTOMERS


def test_search_dataset_lineage_expand_columns_pii_flow(ui: UiPage, demo: DemoCatalog) -> None:
    page = ui.page
    ui.sign_in(demo.keys["engineer@payments"])
    page.keyboard.press("/")  # the search box, from anywhere
    page.keyboard.type("customers")
    page.keyboard.press("Enter")
    page.get_by_role("link", name="payments.customers").click()
    page.get_by_role("heading", name="payments.customers").wait_for()
    assert page.locator("#field-cpf").get_by_text("PII.CPF").is_visible()

    page.locator("#main").get_by_role("link", name="Lineage", exact=True).click()
    nodes = page.locator(".react-flow__node")
    page.locator(".react-flow__node", has_text="payments_dag.enrich").wait_for()
    page.get_by_label("Direction").select_option("DOWNSTREAM")
    page.get_by_label("Depth").fill("1")
    page.wait_for_url("**depth=1**")
    page.wait_for_function("() => document.querySelectorAll('.react-flow__node').length === 3")
    assert page.locator(".react-flow__node", has_text="fraud_dag.score").count() == 0

    # expanding the enriched table brings in its readers (fraud's and ledger's jobs)
    page.locator(".react-flow__node", has_text="cw.payments.tx_enriched").click()
    page.locator(".react-flow__node", has_text="fraud_dag.score").wait_for()
    assert nodes.count() > 3
    assert "expand=" in page.url

    page.get_by_role("radio", name="Columns").click()
    page.locator(".lfield", has_text="email_hash").first.wait_for()
    assert "level=column" in page.url
    # hovering a column highlights its path: the PII source column upstream lights up
    page.wait_for_timeout(800)  # the column-level layout has been fitted to the view
    page.locator(".react-flow__node", has_text="cw.payments.tx_enriched").locator(
        ".lfield", has_text="cpf"
    ).hover()
    page.locator(".react-flow__node", has_text="payments.customers").locator(
        ".lfield.is-hl", has_text="cpf"
    ).wait_for()
    ui.screenshot("journey-columns")

    # the URL keeps the view: reloading it shows the same level and expansion
    page.reload()
    page.locator(".lfield", has_text="email_hash").first.wait_for()
    page.locator(".react-flow__node", has_text="fraud_dag.score").wait_for()

    ns, name = CUSTOMERS
    ui.goto(f"/datasets/{quote(ns, safe='')}/{name}")
    page.locator("#field-cpf").get_by_role("link", name="PII flow →").click()
    page.get_by_role("heading", name="Where cpf goes").wait_for()
    page.get_by_role("cell", name="cw.payments.tx_enriched.cpf").wait_for()
    # the hop into fraud's table is another product's internals: counted, not shown
    assert "1 hop hidden" in page.get_by_role("note").inner_text()
    assert page.get_by_role("cell", name="cw.fraud.scores.cpf").count() == 0
    ui.screenshot("journey-pii-flow")
    assert ui.errors == []


def test_steward_waives_and_unwaives_a_finding(ui: UiPage, demo: DemoCatalog) -> None:
    page = ui.page
    ui.sign_in(demo.keys["steward@payments"])
    ui.goto("/findings?rule=pii-unmasked")
    row = page.locator("tr.sev-row", has_text="writes column cpf of dataset cw.payments.tx_enriched")
    row.get_by_role("button", name="Waive…").click()
    page.get_by_label("Reason").fill("Tokenised before release; tracked in DPO-42")
    page.get_by_label("Expires").fill("2030-01-31")
    page.get_by_role("button", name="Waive", exact=True).click()
    row.wait_for(state="detached")  # no longer open

    ui.goto("/findings?rule=pii-unmasked&status=waived")
    waived = page.locator("tr.sev-row", has_text="writes column cpf of dataset cw.payments.tx_enriched")
    waived.get_by_text("Tokenised before release").wait_for()
    assert "2030-01-31" in waived.inner_text()
    ui.screenshot("journey-waived")

    waived.get_by_role("button", name="Un-waive…").click()
    page.get_by_role("button", name="Lift waiver").click()
    page.get_by_text("No findings.").wait_for()
    assert ui.errors == []


def test_engineer_is_shown_its_role_and_no_steward_actions(ui: UiPage, demo: DemoCatalog) -> None:
    """The header says the key's role and product (GET /api/v1/me); waiving and granting are a steward's,
    so an engineer is not offered them (the API refuses them anyway: tests/policy/test_matrix.py)."""
    page = ui.page
    ui.sign_in(demo.keys["engineer@payments"])
    ui.goto("/findings?rule=pii-unmasked")
    page.locator("tr.sev-row").first.wait_for()
    assert page.get_by_label("Role and product").inner_text() == "engineer · payments"
    assert page.get_by_role("button", name="Waive…").count() == 0
    assert page.get_by_role("button", name="Un-waive…").count() == 0
    ui.goto("/grants")
    page.get_by_role("heading", name="Grants", exact=True).wait_for()
    page.wait_for_load_state("networkidle")
    assert page.get_by_role("button", name="Revoke").count() == 0
    assert page.get_by_role("button", name="New grant…").count() == 0
    assert ui.errors == []


def test_auditor_exports_a_verified_bundle_and_an_engineer_may_not(ui: UiPage, demo: DemoCatalog) -> None:
    page = ui.page
    ui.sign_in(demo.keys["auditor"])
    ui.goto("/export")
    page.get_by_role("button", name="Build and verify").click()
    verdict = page.locator(".verdict")
    verdict.wait_for(timeout=30_000)
    text = verdict.inner_text()
    assert "Verified" in text, text
    assert "signature" in text, text
    with page.expect_download() as download:
        page.get_by_role("link", name="Download").click()
    assert download.value.suggested_filename.startswith("catalog-export-")
    ui.screenshot("journey-export")
    assert ui.errors == []

    other = UiPage(page.context.browser, demo.url)
    try:
        other.sign_in(demo.keys["engineer@payments"])
        other.goto("/export")
        other.page.get_by_role("button", name="Build and verify").click()
        other.page.get_by_text("Hidden by policy").wait_for()
        assert "auditors and admins" in other.page.get_by_role("alert").inner_text()
    finally:
        other.close()


def test_another_products_engineer_sees_no_columns(ui: UiPage, demo: DemoCatalog) -> None:
    page = ui.page
    ui.sign_in(demo.keys["engineer@fraud"])
    ns, name = CUSTOMERS
    ui.goto(f"/datasets/{quote(ns, safe='')}/{name}")
    page.get_by_role("heading", name=name).wait_for()
    schema = page.locator("section.card", has=page.get_by_role("heading", name="Schema", exact=True))
    schema.get_by_text("Hidden by policy").wait_for()
    body = page.locator("main").inner_text()
    for column in ("cpf", "email", "full_name", "created_at"):
        assert column not in body, column
    ui.screenshot("boundary-dataset")

    # in fraud's own lineage, payments' datasets are there by name only, their columns withheld
    ui.goto("/lineage?node=" + quote("dataset:bigquery:cw.fraud.scores") + "&level=column&direction=upstream")
    node = page.locator(".react-flow__node", has_text="cw.payments.tx_enriched")
    node.wait_for()
    assert "name only" in node.inner_text()
    assert node.locator(".lfield").count() == 0
    own = page.locator(".react-flow__node", has_text="cw.fraud.scores")
    assert own.locator(".lfield").count() == 3  # its own columns are there
    ui.screenshot("boundary-lineage")

    # and payments' graph itself is refused with the rule that says why
    ui.goto(f"/lineage?node={quote(f'dataset:{ns}:{name}')}")
    page.get_by_text("Hidden by policy").wait_for()
    assert "need" in page.get_by_role("alert").inner_text()
    ui.errors[:] = [e for e in ui.errors if "403" not in e]
    assert ui.errors == []


def test_steward_grants_masked_read_and_the_other_product_then_sees_masked_columns(
    ui: UiPage, demo: DemoCatalog
) -> None:
    page = ui.page
    ui.sign_in(demo.keys["steward@payments"])
    ui.goto("/grants")
    page.get_by_role("button", name="New grant…").click()
    page.get_by_label("To product", exact=True).select_option("fraud")
    page.get_by_label("Namespace", exact=True).fill("bigquery")
    page.get_by_label("Dataset", exact=True).fill("cw.payments.tx_enriched")
    page.get_by_label("Reason").fill("fraud scoring reads enriched transactions")
    page.get_by_label("masked columns only").check()
    page.get_by_role("button", name="Grant", exact=True).click()
    row = page.locator("tr", has_text="fraud scoring reads enriched transactions")
    row.wait_for()
    assert "masked only" in row.inner_text()
    ui.screenshot("journey-grant")
    assert ui.errors == []

    other = UiPage(page.context.browser, demo.url)
    try:
        other.sign_in(demo.keys["engineer@fraud"])
        other.goto("/datasets/bigquery/cw.payments.tx_enriched")
        schema = other.page.locator("table.schema")
        schema.wait_for()
        text = schema.inner_text()
        assert "amount" in text  # granted: the columns are readable now
        cpf = other.page.locator("#field-cpf")
        assert "masked" in cpf.inner_text()  # the PII column by name only
        assert "STRING" not in cpf.inner_text()
        other.screenshot("journey-granted-masked")
        assert other.errors == []
    finally:
        other.close()


def test_search_filters_are_applied_by_the_server(ui: UiPage, demo: DemoCatalog) -> None:
    """The tier filter goes to GraphQL's `search` (not a filter over the first page in the browser)."""
    page = ui.page
    ui.sign_in(demo.keys["admin"])
    with page.expect_request(
        lambda r: r.url.endswith("/graphql") and '"tier":"analytics"' in (r.post_data or "")
    ):
        ui.goto("/search?q=payments&tier=analytics")
    results = page.get_by_role("list", name="Results")
    results.get_by_text("cw.payments.tx_enriched").first.wait_for()
    page.wait_for_load_state("networkidle")
    assert results.get_by_text("payments.customers", exact=True).count() == 0
    assert ui.errors == []
