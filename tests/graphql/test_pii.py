"""PII classifications in GraphQL: a CPF from a payments OLTP table through CDC to BigQuery, masked in one
branch and not in another — classifications on fields (with the path of propagated ones), the PII
inventory (product, tier, asOf, pages), the flow hop by hop with its masking point, authorisation as
internals, and a constant number of statements for a page of datasets with their fields' classifications."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import event

from catalog.config import Settings
from tests.classification.test_scenarios import (
    BQ,
    CUSTOMERS,
    DAILY,
    KAFKA,
    MASKED,
    ORDERS,
    PG,
    RAW,
    SEGMENTS,
    TOPIC,
    payments_pipeline,
)
from tests.factories import at, column_lineage, dataset, run_event, schema
from tests.graphql.conftest import app_client, data_of, gql, ingest
from tests.keys import make_key

CLASSES = "classifications { tag source category confidence status depth path rule }"
FIELDS = f"""query($ns: String!, $n: String!) {{
  dataset(namespace: $ns, name: $n) {{ name hasPii fields {{ path {CLASSES} }} }}
}}"""


def by_path(data: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {f["path"]: f["classifications"] for f in data["dataset"]["fields"]}


async def test_fields_carry_their_classifications_with_source_confidence_and_path(
    client: httpx.AsyncClient,
) -> None:
    await ingest(client, payments_pipeline())

    source = await data_of(client, FIELDS, {"ns": PG, "n": CUSTOMERS})
    assert source["dataset"]["hasPii"] is True
    fields = by_path(source)
    [cpf] = fields["cpf"]
    assert (cpf["tag"], cpf["source"], cpf["status"], cpf["depth"], cpf["path"]) == (
        "PII.CPF",
        "DETECTED",
        "PII",
        0,
        None,
    )
    assert 0 < cpf["confidence"] <= 1
    assert cpf["category"]
    assert cpf["rule"]
    # the hard negatives of the same table carry nothing
    assert fields["cpf_hash"] == fields["email_verified"] == fields["phone_count"] == fields["id"] == []

    raw = by_path(await data_of(client, FIELDS, {"ns": BQ, "n": RAW}))
    [document] = raw["document"]
    assert (document["source"], document["status"], document["depth"]) == ("PROPAGATED", "PII", 1)
    assert document["path"] == [f"{KAFKA}/{TOPIC}#cpf", f"{BQ}/{RAW}#document"]

    masked = await data_of(client, FIELDS, {"ns": BQ, "n": SEGMENTS})
    assert masked["dataset"]["hasPii"] is False  # a masked derivative is not PII
    [key] = by_path(masked)["customer_key"]
    assert (key["status"], key["depth"]) == ("MASKED", 2)
    assert key["path"] == [
        f"{KAFKA}/{TOPIC}#cpf",
        f"{BQ}/{MASKED}#customer_key",
        f"{BQ}/{SEGMENTS}#customer_key",
    ]

    daily = await data_of(client, FIELDS, {"ns": BQ, "n": DAILY})
    assert daily["dataset"]["hasPii"] is False  # an aggregation does not carry the value
    assert by_path(daily) == {"customers": []}

    # A field reached on its own (one field by path) answers the same.
    one = await data_of(
        client,
        f'query {{ dataset(namespace: "{BQ}", name: "{RAW}") {{ field(path: "document") {{ {CLASSES} }} }} }}',
    )
    assert one["dataset"]["field"]["classifications"] == [document]


INVENTORY = """query($product: String, $tier: String, $asOf: DateTime, $first: Int! = 100, $after: String) {
  piiInventory(product: $product, tier: $tier, asOf: $asOf, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    nodes { namespace dataset field product tier classification { tag source status path } }
  }
}"""


async def inventory(client: httpx.AsyncClient, **variables: Any) -> dict[str, Any]:
    data: dict[str, Any] = (await data_of(client, INVENTORY, variables))["piiInventory"]
    return data


def located(page: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(n["namespace"], n["dataset"], n["field"]) for n in page["nodes"]]


async def test_pii_inventory_by_product_tier_and_as_of_in_pages(client: httpx.AsyncClient) -> None:
    await ingest(client, payments_pipeline())
    everything = await inventory(client)
    assert everything["totalCount"] == 3
    assert sorted(located(everything)) == sorted(
        [(PG, CUSTOMERS, "cpf"), (KAFKA, TOPIC, "cpf"), (BQ, RAW, "document")]
    )
    tiers = {(n["dataset"], n["product"], n["tier"]) for n in everything["nodes"]}
    assert tiers == {
        (CUSTOMERS, "payments", "oltp"),
        (TOPIC, "payments", "stream"),
        (RAW, "payments", "analytics"),
    }
    assert located(await inventory(client, tier="analytics")) == [(BQ, RAW, "document")]
    assert located(await inventory(client, tier="oltp")) == [(PG, CUSTOMERS, "cpf")]
    assert (await inventory(client, product="payments"))["totalCount"] == 3
    assert (await inventory(client, product="payments", tier="stream"))["totalCount"] == 1
    assert (await inventory(client, product="fraud"))["nodes"] == []

    # asOf: nothing had been seen before the pipeline's first event (event time).
    assert (await inventory(client, asOf="2026-02-01T00:00:00Z"))["totalCount"] == 0
    assert (await inventory(client, asOf="2026-03-02T00:00:00Z"))["totalCount"] == 3
    # A steward's add counts from when it was made (wall clock): not in an inventory as of March.
    decided = await client.post(
        "/api/v1/classifications/decisions",
        json={"namespace": BQ, "dataset": ORDERS, "field": "amount", "tag": "PII.NAME", "action": "add"},
    )
    assert decided.status_code == 201, decided.text
    assert (await inventory(client))["totalCount"] == 4
    assert (await inventory(client, asOf="2026-03-02T00:00:00Z"))["totalCount"] == 3

    # Pages: the cursor continues where the previous page ended.
    first = await inventory(client, first=3)
    assert first["pageInfo"]["hasNextPage"] is True
    rest = await inventory(client, first=3, after=first["pageInfo"]["endCursor"])
    assert rest["pageInfo"] == {"hasNextPage": False, "endCursor": rest["pageInfo"]["endCursor"]}
    assert located(first) + located(rest) == located(await inventory(client))
    bad = await gql(client, INVENTORY, {"after": "not-a-cursor"})
    assert bad["data"]["piiInventory"] is None
    assert "cursor" in bad["errors"][0]["message"]


FLOW = """query($ns: String!, $n: String!, $f: String!, $depth: Int! = 10) {
  piiFlow(namespace: $ns, dataset: $n, field: $f, depth: $depth) {
    origin { namespace dataset field }
    classifications { tag source }
    omittedHops
    hops {
      depth effect maskingPoint
      from { dataset field }
      to { namespace dataset field }
      job { namespace name }
      transformation { type subtype masking }
      targetClassifications { tag status depth path }
    }
  }
}"""


async def test_pii_flow_hop_by_hop_with_the_masking_point_and_influences(client: httpx.AsyncClient) -> None:
    await ingest(client, payments_pipeline())
    flow = (await data_of(client, FLOW, {"ns": PG, "n": CUSTOMERS, "f": "cpf"}))["piiFlow"]
    assert flow["origin"] == {"namespace": PG, "dataset": CUSTOMERS, "field": "cpf"}
    assert flow["classifications"] == [{"tag": "PII.CPF", "source": "DETECTED"}]
    assert flow["omittedHops"] == 0
    hops = {(h["to"]["dataset"], h["to"]["field"]): h for h in flow["hops"]}
    assert set(hops) == {
        (TOPIC, "cpf"),
        (RAW, "document"),
        (MASKED, "customer_key"),
        (SEGMENTS, "customer_key"),
        (DAILY, "customers"),
        (ORDERS, "amount"),
    }
    topic = hops[(TOPIC, "cpf")]
    assert (topic["depth"], topic["effect"], topic["maskingPoint"]) == (1, "CARRIES", False)
    jobs = [h["job"] for h in flow["hops"] if h["to"]["dataset"] == TOPIC and h["to"]["field"] == "cpf"]
    assert {"namespace": "debezium", "name": "payments-cdc"} in jobs
    assert topic["transformation"] == {"type": "DIRECT", "subtype": "IDENTITY", "masking": False}
    masking = hops[(MASKED, "customer_key")]
    assert (masking["depth"], masking["effect"], masking["maskingPoint"]) == (2, "MASKED", True)
    assert masking["from"] == {"dataset": TOPIC, "field": "cpf"}
    assert [c["status"] for c in masking["targetClassifications"]] == ["MASKED"]
    # past the masking point the value still flows, as a masked derivative
    assert hops[(SEGMENTS, "customer_key")]["depth"] == 3
    assert hops[(SEGMENTS, "customer_key")]["effect"] == "CARRIES"
    assert hops[(RAW, "document")]["targetClassifications"][0]["path"] == [
        f"{KAFKA}/{TOPIC}#cpf",
        f"{BQ}/{RAW}#document",
    ]
    assert hops[(DAILY, "customers")]["effect"] == "AGGREGATED"
    influenced = hops[(ORDERS, "amount")]
    assert influenced["effect"] == "INFLUENCES"  # a join key: "influenced by", not carried
    assert influenced["transformation"]["type"] == "INDIRECT"
    assert influenced["targetClassifications"] == []
    # hops are breadth-first
    assert [h["depth"] for h in flow["hops"]] == sorted(h["depth"] for h in flow["hops"])

    near = (await data_of(client, FLOW, {"ns": PG, "n": CUSTOMERS, "f": "cpf", "depth": 1}))["piiFlow"]
    # one hop per job whose events declare the edge (the topic's facet also comes with its readers)
    assert {(h["to"]["dataset"], h["depth"]) for h in near["hops"]} == {(TOPIC, 1)}
    missing = await data_of(client, FLOW, {"ns": PG, "n": CUSTOMERS, "f": "nope"})
    assert missing["piiFlow"] is None
    too_deep = await gql(client, FLOW, {"ns": PG, "n": CUSTOMERS, "f": "cpf", "depth": 10_000})
    assert too_deep["data"]["piiFlow"] is None
    assert "depth" in too_deep["errors"][0]["message"]


async def test_classifications_are_internals_of_the_owning_product(
    settings: Settings, database_url: str
) -> None:
    async with app_client(settings, database_url) as (app, http):
        await ingest(http, payments_pipeline())
        fraud = await make_key(app.state.engine, "engineer", "fraud")
        payments = await make_key(app.state.engine, "engineer", "payments")

        async def as_key(headers: dict[str, str], query: str, variables: dict[str, Any]) -> dict[str, Any]:
            response = await http.post(
                "/graphql", json={"query": query, "variables": variables}, headers=headers
            )
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body

        # Own product: everything answers.
        own = await as_key(payments.headers, FIELDS, {"ns": PG, "n": CUSTOMERS})
        assert "errors" not in own, own
        assert by_path(own["data"])["cpf"][0]["tag"] == "PII.CPF"
        assert (await as_key(payments.headers, INVENTORY, {"product": "payments"}))["data"]["piiInventory"][
            "totalCount"
        ] == 3

        # Another product: the fields, hasPii and the flow are denied with the rule; the inventory of
        # the product is denied, and without a product its fields are left out.
        other = await as_key(fraud.headers, FIELDS, {"ns": PG, "n": CUSTOMERS})
        assert other["data"]["dataset"]["name"] == CUSTOMERS
        assert other["data"]["dataset"]["hasPii"] is None
        assert other["data"]["dataset"]["fields"] is None
        assert {e["extensions"]["code"] for e in other["errors"]} == {"FORBIDDEN"}
        flow = await as_key(fraud.headers, FLOW, {"ns": PG, "n": CUSTOMERS, "f": "cpf"})
        assert flow["data"]["piiFlow"] is None
        assert flow["errors"][0]["extensions"]["rule"] == "other-products-internals-need-a-grant"
        denied = await as_key(fraud.headers, INVENTORY, {"product": "payments"})
        assert denied["data"]["piiInventory"] is None
        assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        hidden = await as_key(fraud.headers, INVENTORY, {})
        assert "errors" not in hidden, hidden
        assert hidden["data"]["piiInventory"] == {
            "totalCount": 0,
            "pageInfo": {"hasNextPage": False, "endCursor": None},
            "nodes": [],
        }


# -- statement count -------------------------------------------------------------------------------------

SOURCE = "payments.public.people"
PAGE = f"""query($first: Int!) {{
  datasets(namespace: "{BQ}", first: $first) {{
    nodes {{ name hasPii fields {{ path {CLASSES} }} }}
  }}
}}"""


def pii_datasets_events(count: int) -> list[dict[str, Any]]:
    """`count` BigQuery tables, each with a detected CPF column and a column that holds the OLTP CPF
    only by lineage (a propagated classification with a path)."""
    source = dataset(PG, SOURCE, schema=schema("cpf", "id"))
    events = []
    for i in range(count):
        out = dataset(
            BQ,
            f"wide.pii_{i:04d}",
            schema=schema("customer_cpf", "document", "id"),
            columnLineage=column_lineage({"document": [(PG, SOURCE, "cpf", "DIRECT", "IDENTITY", False)]}),
        )
        events.append(
            run_event(
                when=at(4), job=("airflow-payments", f"pii_dag.load_{i:04d}"), inputs=[source], outputs=[out]
            )
        )
    return events


TRANSACTION = {"", "BEGIN", "COMMIT", "ROLLBACK"}  # SQLAlchemy's own transaction control


@pytest.fixture
def raw_statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Statements sent straight to asyncpg (the classification reads), which SQLAlchemy's listener
    does not see."""
    seen: list[str] = []
    for name in ("fetch", "fetchrow", "fetchval", "execute"):
        original = getattr(asyncpg.Connection, name)

        def counting(self: Any, query: str, *args: Any, _original: Any = original, **kw: Any) -> Any:
            seen.append(query)
            return _original(self, query, *args, **kw)

        monkeypatch.setattr(asyncpg.Connection, name, counting)
    return seen


async def test_a_page_with_classifications_costs_a_constant_number_of_statements(
    settings: Settings, database_url: str, raw_statements: list[str]
) -> None:
    quiet = settings.model_copy(update={"grants_poll_seconds": 3600.0})  # see test_statement_count.py
    async with app_client(quiet, database_url) as (app, http):
        await ingest(http, pii_datasets_events(100))
        await data_of(http, PAGE, {"first": 1})  # warm up

        statements: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        counts: dict[int, tuple[int, int]] = {}
        event.listen(app.state.engine.sync_engine, "before_cursor_execute", count)
        try:
            for first in (10, 100):
                statements.clear()
                raw_statements.clear()
                nodes = (await data_of(http, PAGE, {"first": first}))["datasets"]["nodes"]
                assert len(nodes) == first
                assert all(n["hasPii"] for n in nodes)
                fields = {f["path"]: f["classifications"] for f in nodes[-1]["fields"]}
                assert [(c["source"], c["depth"]) for c in fields["customer_cpf"]] == [("DETECTED", 0)]
                assert fields["document"][0]["path"] == [
                    f"{PG}/{SOURCE}#cpf",
                    f"{BQ}/{nodes[-1]['name']}#document",
                ]
                assert fields["id"] == []
                queries = [q for q in raw_statements if q.strip(" ;").split(" ")[0] not in TRANSACTION]
                counts[first] = (len(statements), len(queries))
        finally:
            event.remove(app.state.engine.sync_engine, "before_cursor_execute", count)

    print(f"(SQLAlchemy, asyncpg) statements per page: {counts}")
    assert counts[10] == counts[100], counts
    # SQLAlchemy: SET LOCAL, the page, the fields. asyncpg: the classifications and their paths.
    assert counts[100] == (3, 2), counts
