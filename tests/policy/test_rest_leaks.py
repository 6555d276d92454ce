"""REST's many-product results apply GraphQL's per-dataset rule (catalog/policy/authoriser.py `internals_scope`):
another product's columns, classifications and lineage internals are left out (or shown by the dataset's
name only) unless granted, and a masked-columns-only grant redacts the columns holding unmasked PII.

The world: payments.ledger feeds payments.transactions column by column (`cpf`, detected PII.CPF, from
the ledger's `document_number`; `amount` from its `value`); fraud.scores (fraud) copies `cpf` and
aggregates `amount` into `score`. Each test looks as fraud's and payments' engineers before a grant,
after a full grant on payments.transactions, and after a masked-columns-only one.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.factories import PRODUCER, column_lineage, dataset, run_event, schema
from tests.findings.helpers import FRAUD_DB, PAYMENTS_DB, ingest, source
from tests.keys import Key, make_key
from tests.policy.test_grants import denied_by, grant_body
from tests.policy.test_graphql_authz import gql
from tests.policy.test_masked_grants import load as load_payments

TRANSACTIONS = "payments.transactions"
LEDGER = "payments.ledger"
SCORES = "fraud.scores"
FRAUD_TLS = "postgres://fraud-db-1.internal:5432/fraud?sslmode=verify-full"
INTERNALS = "other-products-internals-need-a-grant"
SQL_FACET = "https://openlineage.io/spec/facets/1-1-0/SQLJobFacet.json"


async def load(client: httpx.AsyncClient) -> None:
    await load_payments(client)
    scores = dataset(
        FRAUD_DB,
        SCORES,
        dataSource=source(FRAUD_TLS),
        schema=schema("id", "cpf", ("score", "NUMERIC")),
        columnLineage=column_lineage(
            {
                "cpf": [(PAYMENTS_DB, TRANSACTIONS, "cpf", "DIRECT", "IDENTITY", False)],
                "score": [(PAYMENTS_DB, TRANSACTIONS, "amount", "DIRECT", "AGGREGATION", False)],
            }
        ),
    )
    await ingest(
        client,
        run_event(
            job=("airflow-fraud", "fraud_dag.score"),
            inputs=[dataset(PAYMENTS_DB, TRANSACTIONS)],
            outputs=[scores],
        ),
    )


class World:
    """The keys, and the grant of payments.transactions to fraud as each test switches it."""

    def __init__(self, client: httpx.AsyncClient, keys: dict[str, Key]) -> None:
        self.client = client
        self.keys = keys
        self.grant: int | None = None

    async def get(self, who: str, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params, headers=self.keys[who].headers)

    async def ok(self, who: str, path: str, **params: Any) -> Any:
        response = await self.get(who, path, **params)
        assert response.status_code == 200, (who, path, response.text)
        return response.json()

    async def set_grant(self, kind: str | None) -> None:
        """None: no grant; "full"; "masked": masked-columns-only."""
        steward = self.keys["payments-steward"].headers
        if self.grant is not None:
            revoked = await self.client.delete(f"/api/v1/grants/{self.grant}", headers=steward)
            assert revoked.status_code == 200, revoked.text
            self.grant = None
        if kind is not None:
            created = await self.client.post(
                "/api/v1/grants", json=grant_body(masked_only=kind == "masked"), headers=steward
            )
            assert created.status_code == 201, created.text
            self.grant = created.json()["id"]


async def world(client: httpx.AsyncClient, engine: AsyncEngine) -> World:
    await load(client)
    keys = {
        "fraud": await make_key(engine, "engineer", "fraud"),
        "payments": await make_key(engine, "engineer", "payments"),
        "auditor": await make_key(engine, "auditor"),
        "pipeline": await make_key(engine, "pipeline", "fraud"),
        "payments-steward": await make_key(engine, "steward", "payments"),
        "fraud-steward": await make_key(engine, "steward", "fraud"),
    }
    return World(client, keys)


def columns(rows: list[dict[str, Any]]) -> set[tuple[str, str | None]]:
    return {(r["dataset"], r["field"]) for r in rows}


# -- 1. the PII inventory ---------------------------------------------------------------------------


INVENTORY = "{ piiInventory(first: 100) { totalCount nodes { dataset field } } }"


async def inventory(w: World, who: str, **params: Any) -> set[tuple[str, str | None]]:
    body = await w.ok(who, "/api/v1/pii/inventory", **params)
    assert body["totalCount"] == len(body["fields"])
    shown = columns(body["fields"])
    # the same decision as GraphQL's piiInventory
    graphql = await gql(w.client, w.keys[who], INVENTORY)
    assert "errors" not in graphql, graphql
    assert columns(graphql["data"]["piiInventory"]["nodes"]) == shown
    assert graphql["data"]["piiInventory"]["totalCount"] == body["totalCount"]
    return shown


async def test_the_pii_inventory_holds_only_fields_the_caller_may_read(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    w = await world(client, engine)
    everything = await inventory(w, "auditor")
    assert {(TRANSACTIONS, "cpf"), (SCORES, "cpf")} <= everything
    payments_fields = {c for c in everything if c[0].startswith("payments.")}
    fraud_fields = {c for c in everything if c[0].startswith("fraud.")}

    assert await inventory(w, "fraud") == fraud_fields
    assert await inventory(w, "payments") == payments_fields
    # naming another product still needs that product's internals
    assert denied_by(await w.get("fraud", "/api/v1/pii/inventory", product="payments"), INTERNALS)
    mine = await w.ok("payments", "/api/v1/pii/inventory")
    assert (await w.ok("payments", "/api/v1/pii/inventory", product="payments")) == mine

    # paging counts what is shown
    page = await w.ok("fraud", "/api/v1/pii/inventory", limit=1, offset=0)
    assert page["totalCount"] == (await w.ok("fraud", "/api/v1/pii/inventory"))["totalCount"]
    assert len(page["fields"]) == 1

    await w.set_grant("full")
    granted = await inventory(w, "fraud")
    assert (TRANSACTIONS, "cpf") in granted
    assert granted == fraud_fields | {c for c in payments_fields if c[0] == TRANSACTIONS}

    # a masked-only grant: transactions' unmasked PII columns are redacted, i.e. left out
    await w.set_grant("masked")
    assert await inventory(w, "fraud") == fraud_fields

    await w.set_grant(None)
    assert await inventory(w, "fraud") == fraud_fields


# -- 2. classification decisions --------------------------------------------------------------------


async def decide(
    w: World, steward: str, namespace: str, name: str, field: str, tag: str, action: str
) -> None:
    response = await w.client.post(
        "/api/v1/classifications/decisions",
        json={"namespace": namespace, "dataset": name, "field": field, "tag": tag, "action": action},
        headers=w.keys[steward].headers,
    )
    assert response.status_code == 201, response.text


async def decisions(w: World, who: str, **params: Any) -> set[tuple[str, str | None]]:
    body = await w.ok(who, "/api/v1/classifications/decisions", **params)
    assert body["totalCount"] == len(body["decisions"])
    return columns(body["decisions"])


async def test_the_decisions_list_holds_only_datasets_the_caller_may_read(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    w = await world(client, engine)
    await decide(w, "payments-steward", PAYMENTS_DB, TRANSACTIONS, "cpf", "PII.CPF", "confirm")
    await decide(w, "payments-steward", PAYMENTS_DB, TRANSACTIONS, "amount", "PII.CPF", "reject")
    await decide(w, "payments-steward", PAYMENTS_DB, LEDGER, "document_number", "PII.CPF", "add")
    await decide(w, "fraud-steward", FRAUD_DB, SCORES, "id", "PII.CPF", "reject")

    payments = {(TRANSACTIONS, "cpf"), (TRANSACTIONS, "amount"), (LEDGER, "document_number")}
    assert await decisions(w, "auditor") == payments | {(SCORES, "id")}
    assert await decisions(w, "payments") == payments
    assert await decisions(w, "fraud") == {(SCORES, "id")}
    # one namespace, or only a dataset name: the same filter
    assert await decisions(w, "fraud", namespace=PAYMENTS_DB) == set()
    assert await decisions(w, "fraud", dataset=TRANSACTIONS) == set()
    # a dataset named in full is judged by the route: 403 without a grant
    named = await w.get(
        "fraud", "/api/v1/classifications/decisions", namespace=PAYMENTS_DB, dataset=TRANSACTIONS
    )
    assert denied_by(named, INTERNALS), named.text

    await w.set_grant("full")
    assert await decisions(w, "fraud") == {(SCORES, "id"), (TRANSACTIONS, "cpf"), (TRANSACTIONS, "amount")}
    assert await decisions(w, "fraud", namespace=PAYMENTS_DB, dataset=TRANSACTIONS) == {
        (TRANSACTIONS, "cpf"),
        (TRANSACTIONS, "amount"),
    }

    # masked-only: the decision on cpf (unmasked PII) is left out, amount's stays
    await w.set_grant("masked")
    assert await decisions(w, "fraud") == {(SCORES, "id"), (TRANSACTIONS, "amount")}
    assert await decisions(w, "fraud", namespace=PAYMENTS_DB, dataset=TRANSACTIONS) == {
        (TRANSACTIONS, "amount")
    }

    await w.set_grant(None)
    assert await decisions(w, "fraud") == {(SCORES, "id")}


# -- 3. column lineage and the lineage graph ----------------------------------------------------------

SCORES_NODE = f"dataset:{FRAUD_DB}:{SCORES}"
TRANSACTIONS_NODE = f"dataset:{PAYMENTS_DB}:{TRANSACTIONS}"
AMOUNT = f"datasetField:{PAYMENTS_DB}:{TRANSACTIONS}:amount"
CPF = f"datasetField:{PAYMENTS_DB}:{TRANSACTIONS}:cpf"
SCORE = f"datasetField:{FRAUD_DB}:{SCORES}:score"
COLUMNS = """query($ns: String!, $n: String!) {
  columnLineage(namespace: $ns, dataset: $n) { nodes { id } edges { origin destination } }
}"""


async def column_graph(w: World, who: str) -> dict[str, dict[str, Any]]:
    body = await w.ok(who, "/api/v1/column-lineage", nodeId=SCORES_NODE)
    graph = {n["id"]: n for n in body["graph"]}
    # the same graph as GraphQL's columnLineage
    graphql = await gql(w.client, w.keys[who], COLUMNS, {"ns": FRAUD_DB, "n": SCORES})
    assert "errors" not in graphql, graphql
    assert {n["id"] for n in graphql["data"]["columnLineage"]["nodes"]} == set(graph)
    edges = {(e["origin"], e["destination"]) for n in graph.values() for e in n["inEdges"]}
    assert {(e["origin"], e["destination"]) for e in graphql["data"]["columnLineage"]["edges"]} == edges
    return graph


def payments_columns(graph: dict[str, dict[str, Any]]) -> set[str]:
    return {i for i, n in graph.items() if n["data"]["namespace"] == PAYMENTS_DB and n["data"]["field"]}


async def test_column_lineage_shows_another_products_columns_only_with_a_grant(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    w = await world(client, engine)
    owner = await column_graph(w, "auditor")
    assert {AMOUNT, CPF, SCORE} <= set(owner)

    before = await column_graph(w, "fraud")
    assert payments_columns(before) == set()
    assert before[TRANSACTIONS_NODE]["type"] == "DATASET"
    # the edge into fraud's own column stays, from payments' dataset
    assert [i["field"] for i in before[SCORE]["data"]["inputFields"]] == [None]
    assert before[SCORE]["inEdges"] == [{"origin": TRANSACTIONS_NODE, "destination": SCORE}]
    # nothing payments' own column lineage declares (ledger → transactions)
    assert before[TRANSACTIONS_NODE]["inEdges"] == []
    text = str(before)
    assert "document_number" not in text
    assert "'amount'" not in text

    await w.set_grant("full")
    granted = await column_graph(w, "fraud")
    assert {AMOUNT, CPF} <= payments_columns(granted)
    assert [i["field"] for i in granted[AMOUNT]["data"]["inputFields"]] == [None]  # ledger: not granted

    await w.set_grant("masked")
    masked = await column_graph(w, "fraud")
    assert AMOUNT in masked
    assert CPF not in masked

    await w.set_grant(None)
    assert payments_columns(await column_graph(w, "fraud")) == set()


async def test_the_lineage_graph_shows_another_products_datasets_by_name_only(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    w = await world(client, engine)

    async def node(who: str, node_id: str) -> dict[str, Any]:
        body = await w.ok(who, "/api/v1/lineage", nodeId=SCORES_NODE)
        return next(n["data"] for n in body["graph"] if n["id"] == node_id)

    full = await node("auditor", TRANSACTIONS_NODE)
    assert {f["name"] for f in full["fields"]} == {"id", "cpf", "amount"}
    assert full["facets"]["schema"]
    assert full["sourceUri"]

    before = await node("fraud", TRANSACTIONS_NODE)
    assert set(before) == set(full)  # the same shape
    assert before["name"] == TRANSACTIONS
    assert before["namespace"] == PAYMENTS_DB
    assert before["fields"] == []
    assert before["facets"] == {}
    assert before["tags"] == []
    assert before["sourceUri"] is None
    assert before["currentVersion"] is None
    assert (await node("fraud", SCORES_NODE))["fields"]  # its own dataset in full

    await w.set_grant("full")
    assert {f["name"] for f in (await node("fraud", TRANSACTIONS_NODE))["fields"]} == {"id", "cpf", "amount"}

    await w.set_grant("masked")
    masked = {f["name"]: f for f in (await node("fraud", TRANSACTIONS_NODE))["fields"]}
    assert masked["cpf"].get("masked") is True
    assert masked["cpf"]["type"] is None
    assert masked["amount"]["type"] == "NUMERIC"

    await w.set_grant(None)
    assert (await node("fraud", TRANSACTIONS_NODE))["fields"] == []


# -- 4. PII flow -------------------------------------------------------------------------------------

FLOW = """query($ns: String!, $n: String!, $f: String!) {
  piiFlow(namespace: $ns, dataset: $n, field: $f) { omittedHops hops { to { dataset field } } }
}"""


async def flow(w: World, who: str, namespace: str, name: str, field: str) -> tuple[set[Any], int]:
    body = await w.ok(who, "/api/v1/pii/flow", namespace=namespace, dataset=name, field=field)
    targets = {(h["to"]["dataset"], h["to"]["field"]) for h in body["hops"]}
    graphql = await gql(w.client, w.keys[who], FLOW, {"ns": namespace, "n": name, "f": field})
    assert "errors" not in graphql, graphql
    seen = graphql["data"]["piiFlow"]
    assert {(h["to"]["dataset"], h["to"]["field"]) for h in seen["hops"]} == targets
    assert seen["omittedHops"] == body["omittedHops"]
    return targets, body["omittedHops"]


async def test_a_pii_flow_leaves_out_hops_into_datasets_the_caller_may_not_read(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    w = await world(client, engine)
    everything, omitted = await flow(w, "auditor", PAYMENTS_DB, LEDGER, "document_number")
    assert everything == {(TRANSACTIONS, "cpf"), (SCORES, "cpf")}
    assert omitted == 0

    # payments' engineer: the hop into fraud.scores is left out and counted
    assert await flow(w, "payments", PAYMENTS_DB, LEDGER, "document_number") == ({(TRANSACTIONS, "cpf")}, 1)

    # fraud's engineer may not ask about payments' column; with a grant on transactions it may, and
    # the hop out of payments.ledger (not granted) stays hidden
    denied = await w.get(
        "fraud", "/api/v1/pii/flow", namespace=PAYMENTS_DB, dataset=TRANSACTIONS, field="cpf"
    )
    assert denied_by(denied, INTERNALS), denied.text
    await w.set_grant("full")
    assert await flow(w, "fraud", PAYMENTS_DB, TRANSACTIONS, "cpf") == ({(SCORES, "cpf")}, 0)
    origin = await w.ok("fraud", "/api/v1/pii/flow", namespace=PAYMENTS_DB, dataset=TRANSACTIONS, field="cpf")
    assert origin["origin"]["classifications"]

    # masked-only: cpf is redacted, its hops (and its classifications) with it
    await w.set_grant("masked")
    assert await flow(w, "fraud", PAYMENTS_DB, TRANSACTIONS, "cpf") == (set(), 1)
    origin = await w.ok("fraud", "/api/v1/pii/flow", namespace=PAYMENTS_DB, dataset=TRANSACTIONS, field="cpf")
    assert origin["origin"]["classifications"] == []
    # amount is no PII: its (aggregating) hop into fraud's own column shows
    assert await flow(w, "fraud", PAYMENTS_DB, TRANSACTIONS, "amount") == ({(SCORES, "score")}, 0)


# -- 5. other lists: search, the raw event log ---------------------------------------------------------


async def test_search_and_the_event_log_leak_no_internals(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    w = await world(client, engine)
    # REST search answers datasets and jobs by name only (discoverable), never fields
    found = await w.ok("fraud", "/api/v1/search", q="payments")
    assert found["results"]
    assert {r["type"] for r in found["results"]} <= {"DATASET", "JOB"}
    assert all(set(r) == {"type", "name", "updatedAt", "namespace", "nodeId"} for r in found["results"])
    assert (await w.ok("fraud", "/api/v1/search", q="document_number"))["results"] == []

    # the raw event log is the next test's


# -- 6. the raw event log ---------------------------------------------------------------------------------

CHECKS = "https://openlineage.io/spec/facets/1-0-0/DataQualityAssertionsDatasetFacet.json"


def events_by_job(body: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    assert body["totalCount"] == len(body["events"])
    out: dict[str, list[dict[str, Any]]] = {}
    for event in body["events"]:
        out.setdefault(event["job"]["name"], []).append(event)
    return out


def entry(event: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [d for d in [*event["inputs"], *event["outputs"]] if d["name"] == name]
    assert len(found) == 1, found
    return found[0]


async def test_the_event_log_lists_readable_jobs_events_with_each_dataset_by_the_per_dataset_rule(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    w = await world(client, engine)
    # fraud's job reads payments.transactions as it sees it: schema with cpf, and checks on cpf
    seen = dataset(PAYMENTS_DB, TRANSACTIONS, schema=schema("id", "cpf", ("amount", "NUMERIC")))
    seen["inputFacets"] = {
        "dataQualityAssertions": {
            "_producer": PRODUCER,
            "_schemaURL": CHECKS,
            "assertions": [
                {"assertion": "not_null", "success": True, "column": "cpf"},
                {"assertion": "positive", "success": True, "column": "amount"},
            ],
        }
    }
    await ingest(client, run_event(job=("airflow-fraud", "fraud_dag.check"), inputs=[seen]))
    events = "/api/v1/events/lineage"

    # auditor: every event as stored
    everything = events_by_job(await w.ok("auditor", events))
    assert set(everything) == {"payments_dag.settle", "fraud_dag.score", "fraud_dag.check"}
    assert "cpf" in str(entry(everything["fraud_dag.check"][0], TRANSACTIONS))
    # a pipeline key reads no catalog
    assert denied_by(await w.get("pipeline", events), "default-deny")

    # payments' engineer: payments' job's events only; fraud's jobs' runs are fraud's internals
    assert set(events_by_job(await w.ok("payments", events))) == {"payments_dag.settle"}

    # fraud's engineer, no grant: fraud's jobs' events; payments' datasets in them by name only
    mine = events_by_job(await w.ok("fraud", events))
    assert set(mine) == {"fraud_dag.score", "fraud_dag.check"}
    assert entry(mine["fraud_dag.check"][0], TRANSACTIONS) == {"namespace": PAYMENTS_DB, "name": TRANSACTIONS}
    assert entry(mine["fraud_dag.score"][0], TRANSACTIONS) == {"namespace": PAYMENTS_DB, "name": TRANSACTIONS}
    assert entry(mine["fraud_dag.score"][0], SCORES)["facets"]["schema"]  # its own dataset in full
    assert "document_number" not in str(mine)

    # masked-columns-only grant: the facets show, cpf only as a masked name
    await w.set_grant("masked")
    masked = entry(events_by_job(await w.ok("fraud", events))["fraud_dag.check"][0], TRANSACTIONS)
    assert {"name": "cpf", "masked": True} in masked["facets"]["schema"]["fields"]
    assert [a["column"] for a in masked["inputFacets"]["dataQualityAssertions"]["assertions"]] == ["amount"]

    # full grant: as sent
    await w.set_grant("full")
    full = entry(events_by_job(await w.ok("fraud", events))["fraud_dag.check"][0], TRANSACTIONS)
    assert full == entry(everything["fraud_dag.check"][0], TRANSACTIONS)


async def test_jobs_and_namespace_pages_show_another_products_internals_only_by_name(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    w = await world(client, engine)
    # a dataset of fraud's in payments' database (its name names the product)
    mirror = dataset(PAYMENTS_DB, "fraud.mirror", schema=schema("id", "cpf"))
    await ingest(client, run_event(job=("airflow-fraud", "fraud_dag.mirror"), outputs=[mirror]))
    sql = {"_producer": PRODUCER, "_schemaURL": SQL_FACET, "query": "SELECT document_number FROM ledger"}
    await ingest(client, run_event(job=("airflow-payments", "payments_dag.settle"), job_facets={"sql": sql}))
    job = f"/api/v1/namespaces/airflow-payments/jobs/{quote('payments_dag.settle', safe='')}"

    own = await w.ok("payments", job)
    assert own["latestRun"] is not None
    assert own["sql"] == sql["query"]
    # another product's job: discoverable (name, inputs, outputs), its facets and runs are internals
    for state in (None, "full"):  # grants name datasets, never jobs
        await w.set_grant(state)
        seen = await w.ok("fraud", job)
        assert set(seen) == set(own)
        assert seen["name"] == own["name"]
        assert seen["outputs"] == own["outputs"]
        assert seen["facets"] == {}
        assert seen["latestRun"] is None
        assert seen["sql"] is None
        assert "document_number" not in str(seen)
        listed = await w.ok("fraud", "/api/v1/namespaces/airflow-payments/jobs")
        assert [j["latestRun"] for j in listed["jobs"]] == [None]
        graph = await w.ok("fraud", "/api/v1/lineage", nodeId=SCORES_NODE)
        nodes = {n["id"]: n["data"] for n in graph["graph"]}
        assert nodes["job:airflow-fraud:fraud_dag.score"]["latestRun"] is not None
        assert nodes["job:airflow-payments:payments_dag.settle"]["latestRun"] is None

    # payments' namespace page: fraud's dataset in it shows by name only
    page = await w.ok("payments", f"/api/v1/namespaces/{quote(PAYMENTS_DB, safe='')}/datasets")
    datasets = {d["name"]: d for d in page["datasets"]}
    assert datasets["fraud.mirror"]["fields"] == []
    assert datasets["fraud.mirror"]["facets"] == {}
    assert {f["name"] for f in datasets[TRANSACTIONS]["fields"]} == {"id", "cpf", "amount"}
    audited = await w.ok("auditor", f"/api/v1/namespaces/{quote(PAYMENTS_DB, safe='')}/datasets")
    assert {d["name"]: d for d in audited["datasets"]}["fraud.mirror"]["fields"]
