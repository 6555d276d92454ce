"""Engineers: typed reads and governance calls over REST and GraphQL against the real service, listings
paged transparently, the sync and async flavours answering the same."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from catalog_client import AsyncCatalogClient, CatalogClient, NotFound, dataset_node, field_node, job_node
from catalog_client.models import Dataset, DecisionIn, GrantIn, PiiFlow
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.factories import at, column_lineage, dataset, run_event, schema

PG = "postgres://payments-db.internal:5432"
WAREHOUSE = "bigquery"
TABLES = [f"public.t{i:02d}" for i in range(7)]


class CountingTransport(httpx.HTTPTransport):
    """A real HTTP transport that counts the requests it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.raw_path.decode())
        return super().handle_request(request)


def load(client: CatalogClient) -> None:
    """Seven tables copied into the warehouse by one job each; the last one twice, a day apart."""
    for i, table in enumerate(TABLES):
        lineage = {"cpf": [(PG, table, "cpf", "DIRECT", "IDENTITY", False)]}
        event = run_event(
            when=at(day=2 + i),
            job=("airflow", f"copy_{i}"),
            inputs=[dataset(PG, table, schema=schema("id", "cpf", ("address", "STRUCT")))],
            outputs=[
                dataset(
                    WAREHOUSE,
                    f"wh.{table}",
                    schema=schema("id", "cpf"),
                    columnLineage=column_lineage(lineage),
                )
            ],
        )
        assert client.ingest(event).status == "created"
    assert client.ingest(event).status == "duplicate"


def test_reads_follow_pages(live_server: LiveServer) -> None:
    transport = CountingTransport()
    with CatalogClient(live_server.url, ADMIN_TOKEN, page_size=3, transport=transport) as client:
        load(client)
        transport.paths.clear()
        assert [d.name for d in client.datasets(PG)] == TABLES
        # 7 rows in pages of 3: offsets 0, 3, 6 (the total says the third page is the last)
        listing = "/api/v1/namespaces/postgres%3A%2F%2Fpayments-db.internal%3A5432/datasets"
        assert transport.paths == [f"{listing}?limit=3&offset={o}" for o in (0, 3, 6)]
        assert all(isinstance(d, Dataset) for d in client.datasets(PG))

        assert [n.name for n in client.namespaces()] == ["airflow", WAREHOUSE, PG]
        assert [j.name for j in client.jobs("airflow")] == [f"copy_{i}" for i in range(7)]
        job = client.job("airflow", "copy_6")
        assert job.inputs[0].name == "public.t06"
        assert job.latest_run is not None
        runs = list(client.runs("airflow", "copy_6"))
        assert [r.id for r in runs] == [job.latest_run.id]
        assert client.run(runs[0].id).state == "COMPLETE"
        assert len(list(client.events(ascending=True))) == 7
        versions = list(client.dataset_versions(PG, "public.t00"))
        assert [f.name for f in versions[0].fields] == ["id", "cpf", "address"]

        # GraphQL where REST has no equivalent: datasets across namespaces by cursor, the field tree
        across = list(client.all_datasets(search="t0"))
        assert len(across) == 14
        assert {d.namespace for d in across} == {PG, WAREHOUSE}
        tree = client.fields(PG, "public.t00")
        assert tree is not None
        assert sorted(f.path for f in tree) == ["address", "cpf", "id"]
        assert client.fields(PG, "public.nope") is None


def test_lineage_search_and_classification(catalog: CatalogClient) -> None:
    load(catalog)
    target = dataset_node(WAREHOUSE, "wh.public.t03")
    up = catalog.lineage(target, direction="UPSTREAM", depth=1)
    assert {n.id for n in up.graph} == {target, job_node("airflow", "copy_3"), dataset_node(PG, "public.t03")}
    down = catalog.lineage(target, direction="DOWNSTREAM")
    assert {n.id for n in down.graph} == {target}
    with pytest.raises(NotFound) as before:
        catalog.lineage(target, as_of=dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    assert before.value.pointer == "nodeId"

    cpf = field_node(WAREHOUSE, "wh.public.t03", "cpf")
    columns = catalog.column_lineage(cpf)
    node = columns.node(cpf)
    assert node is not None
    assert [(f.dataset, f.field) for f in node.data.input_fields] == [("public.t03", "cpf")]
    downstream = catalog.column_lineage(field_node(PG, "public.t03", "cpf"), with_downstream=True, depth=1)
    assert cpf in {n.id for n in downstream.graph}

    found = catalog.search("t05", kind="DATASET")
    assert found.total_count == 2
    assert {r.node_id for r in found.results} == {
        dataset_node(PG, "public.t05"),
        dataset_node(WAREHOUSE, "wh.public.t05"),
    }

    # PII: the detector's classification, a steward's decision, the inventory and the flow
    detected = catalog.classifications(PG, "public.t01", field="cpf")
    assert "PII.CPF" in {c.tag for c in detected}
    decision = catalog.record_decision(
        DecisionIn(
            namespace=PG, dataset="public.t01", field="id", tag="PII.CUSTOMER_ID", action="add", reason="x"
        )
    )
    assert decision.action == "add"
    assert [d.id for d in catalog.decisions(namespace=PG)] == [decision.id]
    inventory = list(catalog.pii_inventory(namespace=PG))
    assert ("public.t01", "id", "PII.CUSTOMER_ID") in {(c.dataset, c.field, c.tag) for c in inventory}
    flow = catalog.pii_flow(PG, "public.t01", "cpf")
    assert isinstance(flow, PiiFlow)
    assert (flow.origin.field, [c.tag for c in flow.origin.classifications]) == ("cpf", ["PII.CPF"])
    hop = next(h for h in flow.hops if h.to.dataset == "wh.public.t01")
    assert (hop.from_.field, hop.to.field, hop.effect, hop.masking_point) == ("cpf", "cpf", "carries", False)
    assert hop.job is not None
    assert hop.transformation.type == "DIRECT"
    assert "PII.CPF" in {c.tag for c in hop.target_classifications}
    assert flow.omitted_hops == 0
    shallow = catalog.pii_flow(PG, "public.t01", "cpf", depth=1)
    assert {h.depth for h in shallow.hops} == {1}
    retired = catalog.retire_decision(decision.id)
    assert retired.retired_at is not None
    assert list(catalog.decisions(namespace=PG)) == []

    tagged = catalog.tag(PG, "public.t02", "tier1")
    assert "tier1" in tagged.tags
    assert "tier1" in {t.name for t in catalog.tags()}
    field_tagged = catalog.tag(PG, "public.t02", "gold", field="id")
    assert "gold" in next(f for f in field_tagged.fields if f.name == "id").tags
    assert "tier1" not in catalog.untag(PG, "public.t02", "tier1").tags


def test_findings_and_grants(catalog: CatalogClient) -> None:
    leaky = dataset(
        PG,
        "public.secrets",
        dataSource={
            "name": "payments-db",
            "uri": "postgres://app:hunter2@payments-db.internal:5432/payments",
        },
    )
    catalog.ingest(run_event(job=("airflow", "leak"), outputs=[leaky]))
    # the credentials in the dataSource URI are a finding about the job that sent them; the URI's
    # missing sslmode one about the job's flow into the dataset (listed under both)
    by_rule = {f.rule: f for f in catalog.job_findings("airflow", "leak")}
    assert set(by_rule) == {"credentials-in-metadata", "unencrypted-transfer"}
    finding = by_rule["credentials-in-metadata"]
    assert by_rule["unencrypted-transfer"].subject["job"] == {"namespace": "airflow", "name": "leak"}
    assert finding.evidence["pointer"] == "/outputs/0/facets/dataSource/uri"
    assert "unencrypted-transfer" in {f.rule for f in catalog.dataset_findings(PG, "public.secrets")}
    assert [f.id for f in catalog.findings(rule="credentials-in-metadata")] == [finding.id]
    assert len(list(catalog.findings())) == 3
    assert catalog.finding(finding.id) == finding
    waived = catalog.waive(
        finding.id, "rotated already", until=dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    )
    assert waived.status == "waived"
    assert catalog.unwaive(finding.id, reason="not rotated").status == "open"
    assert waived.waived_by is not None
    assert waived.waiver_reason == "rotated already"
    assert waived.waived_until is not None
    payments = catalog.findings_summary().of("payments")
    assert payments.status == {"open": 3}
    assert payments.open_by_rule["credentials-in-metadata"] == 1
    assert sum(payments.open_by_severity.values()) == 3

    grant = catalog.create_grant(
        GrantIn(
            grantor_product="payments",
            grantee_product="fraud",
            scope="namespace",
            namespace=PG,
            reason="fraud models",
        )
    )
    assert (grant.grantor_product, grant.grantee_product, grant.masked_only) == ("payments", "fraud", False)
    assert [g.id for g in catalog.grants(product="payments")] == [grant.id]
    assert catalog.revoke_grant(grant.id).revoked_at is not None
    assert catalog.grants(product="payments") == []


async def test_async_flavour_answers_the_same(
    catalog: CatalogClient, async_catalog: AsyncCatalogClient
) -> None:
    load(catalog)
    sync_names = [d.name for d in catalog.datasets(PG)]
    async_names = [d.name async for d in async_catalog.datasets(PG)]
    assert async_names == sync_names == TABLES
    assert [d.id async for d in async_catalog.all_datasets(namespace=WAREHOUSE)] == [
        d.id for d in catalog.all_datasets(namespace=WAREHOUSE)
    ]
    assert await async_catalog.dataset(PG, "public.t00") == catalog.dataset(PG, "public.t00")
    target = dataset_node(WAREHOUSE, "wh.public.t03")
    assert await async_catalog.lineage(target, depth=2) == catalog.lineage(target, depth=2)
    assert (await async_catalog.search("t0", limit=50)).total_count == 14
    with pytest.raises(NotFound):
        await async_catalog.job("airflow", "nope")
