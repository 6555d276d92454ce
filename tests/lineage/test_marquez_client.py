"""The real marquez-python client (PyPI) against the running service, for every method it has that maps
to an endpoint we serve: namespaces, datasets (+versions, tags, field tags), jobs, runs, column lineage
and tags. (It has no method for /lineage or /search; those are covered in test_rest.py.)"""

from __future__ import annotations

import uuid

import httpx
import orjson
import pytest

from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.factories import at, dataset, run_event, schema
from tests.lineage.conftest import BQ, JOBS, PG, chain_events

marquez_client = pytest.importorskip("marquez_client")


def test_marquez_python_client_reads_our_catalog(live_server: LiveServer) -> None:
    run_id = str(uuid.uuid4())
    events = [
        *chain_events(),
        run_event(
            when=at(4),
            run_id=run_id,
            job=(JOBS, "extract_customers"),
            inputs=[dataset(PG, "payments.public.customers", schema=schema("id", "cpf", "email", "phone"))],
            outputs=[dataset(BQ, "dw.raw_customers")],
        ),
    ]
    response = httpx.post(
        f"{live_server.url}/api/v1/lineage/batch",
        content=orjson.dumps(events),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
    )
    assert response.status_code in (200, 204), response.text

    client = marquez_client.MarquezClient(live_server.url, api_key=ADMIN_TOKEN)
    table = "payments.public.customers"

    assert PG in {n["name"] for n in client.list_namespaces()["namespaces"]}
    assert client.get_namespace(PG)["name"] == PG

    assert table in {d["name"] for d in client.list_datasets(PG)["datasets"]}
    assert client.get_dataset(PG, table)["namespace"] == PG
    versions = client.list_dataset_versions(PG, table)["versions"]
    assert len(versions) == 2
    oldest = versions[-1]
    assert client.get_dataset_version(PG, table, oldest["version"])["version"] == oldest["version"]

    assert client.create_tag("PII", "personal data") == {"name": "PII", "description": "personal data"}
    assert client.tag_dataset(PG, table, "SENSITIVE")["tags"] == ["SENSITIVE"]
    tagged = client.tag_dataset_field(PG, table, "cpf", "PII")
    assert next(f for f in tagged["fields"] if f["name"] == "cpf")["tags"] == ["PII"]
    assert {t["name"] for t in client.list_tags()["tags"]} == {"PII", "SENSITIVE"}

    assert "extract_customers" in {j["name"] for j in client.list_jobs(JOBS)["jobs"]}
    assert client.get_job(JOBS, "extract_customers")["name"] == "extract_customers"
    runs = client.list_job_runs(JOBS, "extract_customers")["runs"]
    assert run_id in {r["id"] for r in runs}
    assert client.get_job_run(run_id)["id"] == run_id

    field_graph = client.get_column_lineage_by_dataset_field(BQ, "dw.dim_customers", "cpf_hash")["graph"]
    assert {n["id"] for n in field_graph} == {
        f"datasetField:{BQ}:dw.dim_customers:cpf_hash",
        f"datasetField:{BQ}:dw.raw_customers:cpf",
        f"datasetField:{PG}:payments.public.customers:cpf",
    }
    downstream = client.get_column_lineage_by_dataset_field(PG, table, "cpf", depth=1, with_downstream=True)
    assert f"datasetField:{BQ}:dw.raw_customers:cpf" in {n["id"] for n in downstream["graph"]}
    by_dataset = client.get_column_lineage_by_dataset(BQ, "dw.raw_customers")["graph"]
    assert f"datasetField:{BQ}:dw.raw_customers:email" in {n["id"] for n in by_dataset}
    by_job = client.get_column_lineage_by_job(JOBS, "model_customers")["graph"]
    assert f"datasetField:{BQ}:dw.dim_customers:customer_id" in {n["id"] for n in by_job}
