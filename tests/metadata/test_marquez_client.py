"""The real marquez-python client (PyPI) against the running service, every public method of it: the
reads answer Marquez's shapes with the data of ingested events; the writes (deprecated in Marquez in
favour of OpenLineage) get our 405 problem, which the client surfaces as `APIError`. (It has no method
for /lineage or /search; those are covered in test_rest.py.)"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.factories import at, dataset, run_event, schema
from tests.findings.helpers import source
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
            inputs=[
                dataset(
                    PG,
                    "payments.public.customers",
                    schema=schema("id", "cpf", "email", "phone"),
                    dataSource=source("postgres://etl:hunter2@payments-db:5432/payments", "payments-db"),
                )
            ],
            outputs=[dataset(BQ, "dw.raw_customers")],
            run_facets={"nominalTime": {"nominalStartTime": at(4)}},
        ),
    ]
    response = httpx.post(
        f"{live_server.url}/api/v1/lineage/batch",
        content=orjson.dumps(events),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
        timeout=60,  # a loaded 2-core CI machine: the default 5 s is not a bound on our answer
    )
    assert response.status_code in (200, 204), response.text

    client = marquez_client.MarquezClient(live_server.url, timeout_ms=60_000, api_key=ADMIN_TOKEN)
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

    # -- the rest of the client: events, sources -------------------------------------------------------
    events = client.list_events()["events"]
    assert len(events) == 3
    assert events[0]["run"]["runId"] == run_id
    in_jobs = client.list_events(namespace=JOBS)["events"]
    assert {e["job"]["namespace"] for e in in_jobs} == {JOBS}
    assert len(in_jobs) == 3
    assert client.list_events(namespace="no-such-namespace")["events"] == []

    sources = client.list_sources()["sources"]
    assert [s["name"] for s in sources] == ["payments-db"]
    found = client.get_source("payments-db")
    assert found["type"] == "POSTGRESQL"
    assert found["connectionUrl"].startswith("postgres://etl:")
    assert "hunter2" not in found["connectionUrl"]
    assert found == sources[0]
    with pytest.raises(marquez_client.errors.APIError) as missing:
        client.get_source("no-such-source")
    assert missing.value.__cause__.response.status_code == 404


def refused(call: Callable[[], object]) -> dict[str, object]:
    """The 405 problem+json behind the client's APIError."""
    with pytest.raises(marquez_client.errors.APIError) as raised:
        call()
    response = raised.value.__cause__.response
    assert response.status_code == 405, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, object] = response.json()
    assert problem["type"] == "/problems/method-not-allowed"
    assert "POST /api/v1/lineage" in str(problem["detail"])
    return problem


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the client marks its writes deprecated
def test_marquez_python_client_writes_are_told_to_send_openlineage_events(live_server: LiveServer) -> None:
    run_id = str(uuid.uuid4())
    event = run_event(when=at(2), run_id=run_id, job=(JOBS, "extract_customers"))
    response = httpx.post(
        f"{live_server.url}/api/v1/lineage",
        content=orjson.dumps(event),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
        timeout=60,  # a loaded 2-core CI machine: the default 5 s is not a bound on our answer
    )
    assert response.status_code in (200, 201, 204), response.text
    client = marquez_client.MarquezClient(live_server.url, timeout_ms=60_000, api_key=ADMIN_TOKEN)
    models = marquez_client.models

    refused(lambda: client.create_namespace(JOBS, "me", "a description"))
    refused(lambda: client.create_source("payments-db", "POSTGRESQL", "postgres://payments-db:5432/p"))
    refused(
        lambda: client.create_dataset(
            PG, "payments.public.orders", models.DatasetType.DB_TABLE, "public.orders", "payments-db"
        )
    )
    refused(lambda: client.create_job(JOBS, "extract_customers", models.JobType.BATCH))
    refused(lambda: client.create_job_run(JOBS, "extract_customers"))
    for mark in (
        client.mark_job_run_as_started,
        client.mark_job_run_as_completed,
        client.mark_job_run_as_failed,
        client.mark_job_run_as_aborted,
    ):
        refused(lambda mark=mark: mark(run_id))  # type: ignore[misc]
    # nothing was written: the job keeps its one run, COMPLETE
    runs = client.list_job_runs(JOBS, "extract_customers")["runs"]
    assert [(r["id"], r["state"]) for r in runs] == [(run_id, "COMPLETE")]


# Every public method of marquez_client.MarquezClient is called by one of the tests above; a client
# release with a new method fails here until it is tested.
CALLED = {
    "create_dataset", "create_job", "create_job_run", "create_namespace", "create_source", "create_tag",
    "get_column_lineage_by_dataset", "get_column_lineage_by_dataset_field", "get_column_lineage_by_job",
    "get_dataset", "get_dataset_version", "get_job", "get_job_run", "get_namespace", "get_source",
    "list_dataset_versions", "list_datasets", "list_events", "list_job_runs", "list_jobs",
    "list_namespaces", "list_sources", "list_tags", "mark_job_run_as_aborted", "mark_job_run_as_completed",
    "mark_job_run_as_failed", "mark_job_run_as_started", "tag_dataset", "tag_dataset_field",
}  # fmt: skip


def test_every_public_method_of_the_client_is_tested() -> None:
    public = {name for name in dir(marquez_client.MarquezClient) if not name.startswith("_")}
    assert public == CALLED
    source_text = Path(__file__).read_text()
    for name in CALLED:
        assert f".{name}" in source_text, name
