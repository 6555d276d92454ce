"""The rest of Marquez's API over HTTP (catalog/api/rest/marquez.py): every job, a run's facets, the event
log by namespace, sources, /stats/*, and Marquez's writes answered 405 — each read with the per-product
rule of the read it extends. The world is test_rest_leaks's: payments' and fraud's jobs and datasets."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.metadata.marquez import source_type
from tests.factories import PRODUCER, dataset, run_event
from tests.findings.helpers import FRAUD_DB, PAYMENTS_DB, ingest, source
from tests.keys import make_key
from tests.policy.test_grants import TLS, denied_by
from tests.policy.test_rest_leaks import FRAUD_TLS, INTERNALS, SQL_FACET, TRANSACTIONS, world

V1 = "/api/v1"


def iso(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def jobs_by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {j["name"]: j for j in body["jobs"]}


async def test_every_job_shows_another_products_jobs_by_name_and_io_only(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    w = await world(client, engine)
    sql = {"_producer": PRODUCER, "_schemaURL": SQL_FACET, "query": "SELECT document_number FROM ledger"}
    await ingest(client, run_event(job=("airflow-payments", "payments_dag.settle"), job_facets={"sql": sql}))
    await ingest(client, run_event("START", job=("airflow-fraud", "fraud_dag.running")))

    everything = await w.ok("auditor", f"{V1}/jobs")
    names = ["fraud_dag.running", "fraud_dag.score", "payments_dag.settle"]
    assert [j["name"] for j in everything["jobs"]] == names  # by namespace, then name
    assert everything["totalCount"] == 3
    assert jobs_by_name(everything)["payments_dag.settle"]["sql"] == sql["query"]

    # fraud's engineer: payments' job by name, inputs and outputs; its SQL and runs are payments' internals
    theirs = jobs_by_name(await w.ok("fraud", f"{V1}/jobs"))
    settle = theirs["payments_dag.settle"]
    assert settle["sql"] is None
    assert settle["latestRun"] is None
    assert settle["facets"] == {}
    assert {d["name"] for d in settle["outputs"]} == {TRANSACTIONS}
    assert "document_number" not in str(theirs)
    assert theirs["fraud_dag.score"]["latestRun"]["state"] == "COMPLETE"
    # payments' engineer sees its own job in full
    assert jobs_by_name(await w.ok("payments", f"{V1}/jobs"))["payments_dag.settle"]["sql"] == sql["query"]
    assert denied_by(await w.get("pipeline", f"{V1}/jobs"), "default-deny")

    # Marquez's lastRunStates, by the latest run's state
    running = await w.ok("auditor", f"{V1}/jobs", lastRunStates="RUNNING")
    assert [j["name"] for j in running["jobs"]] == ["fraud_dag.running"]
    assert running["totalCount"] == 1
    both = await w.client.get(
        f"{V1}/jobs",
        params=[("lastRunStates", "COMPLETED"), ("lastRunStates", "running")],
        headers=w.keys["auditor"].headers,
    )
    assert both.json()["totalCount"] == 3
    assert (await w.ok("auditor", f"{V1}/jobs", lastRunStates="NEW"))["jobs"] == []
    bad = await w.get("auditor", f"{V1}/jobs", lastRunStates="DONE")
    assert bad.status_code == 400
    assert bad.json()["pointer"] == "lastRunStates"
    page = await w.ok("auditor", f"{V1}/jobs", limit=1, offset=1)
    assert [j["name"] for j in page["jobs"]] == ["fraud_dag.score"]
    assert page["totalCount"] == 3


async def test_a_runs_facets_and_its_jobs_are_the_jobs_internals(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    w = await world(client, engine)
    run_id = str(uuid.uuid4())
    sql = {"_producer": PRODUCER, "_schemaURL": SQL_FACET, "query": "SELECT 1"}
    nominal = {"_producer": PRODUCER, "_schemaURL": SQL_FACET, "nominalStartTime": "2026-03-01T00:00:00Z"}
    await ingest(
        client,
        run_event(
            run_id=run_id,
            job=("airflow-payments", "payments_dag.settle"),
            job_facets={"sql": sql},
            run_facets={"nominalTime": nominal},
        ),
    )
    facets = f"{V1}/jobs/runs/{run_id}/facets"
    run = await w.ok("payments", facets)
    assert run["runId"] == run_id
    assert run["facets"]["nominalTime"]["nominalStartTime"] == "2026-03-01T00:00:00Z"
    assert "sql" not in run["facets"]
    job = await w.ok("payments", facets, type="job")
    assert job == {"runId": run_id, "facets": {"sql": sql}}
    assert denied_by(await w.get("fraud", facets), INTERNALS)
    assert (await w.get("auditor", f"{V1}/jobs/runs/{uuid.uuid4()}/facets")).status_code == 404
    bad = await w.get("auditor", facets, type="dataset")
    assert bad.status_code == 400
    assert bad.json()["pointer"] == "type"


async def test_events_by_namespace_follow_the_event_log_rule(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    w = await world(client, engine)
    for who in ("auditor", "fraud", "payments"):
        # /events is /events/lineage under Marquez's other name
        assert await w.ok(who, f"{V1}/events") == await w.ok(who, f"{V1}/events/lineage")
    payments = await w.ok("auditor", f"{V1}/events/airflow-payments")
    assert {e["job"]["name"] for e in payments["events"]} == {"payments_dag.settle"}
    assert payments["totalCount"] == len(payments["events"]) == 1
    assert (await w.ok("payments", f"{V1}/events/airflow-payments"))["events"] == payments["events"]
    # fraud's engineer may not read payments' runs: none of that namespace's events
    assert (await w.ok("fraud", f"{V1}/events/airflow-payments")) == {"events": [], "totalCount": 0}
    assert len((await w.ok("fraud", f"{V1}/events/airflow-fraud"))["events"]) == 1
    assert denied_by(await w.get("pipeline", f"{V1}/events/airflow-fraud"), "default-deny")


async def test_sources_are_the_datasets_data_sources_without_credentials(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    w = await world(client, engine)
    await ingest(
        client,
        run_event(
            job=("airflow-fraud", "fraud_dag.export"),
            outputs=[
                dataset(
                    "s3://fraud-exports", "scores/2026", dataSource=source("s3://fraud-exports", "exports")
                ),
                dataset(
                    FRAUD_DB,
                    "fraud.audit",
                    dataSource=source("jdbc:mysql://svc:Secr3t@fraud-audit:3306/audit", "fraud-audit"),
                ),
            ],
        ),
    )
    body = await w.ok("fraud", f"{V1}/sources")
    by_name = {s["name"]: s for s in body["sources"]}
    assert body["totalCount"] == len(body["sources"]) == len(by_name)
    assert by_name["exports"]["type"] == "S3"
    assert by_name["exports"]["connectionUrl"] == "s3://fraud-exports"
    audit = by_name["fraud-audit"]
    assert audit["type"] == "MYSQL"
    assert "Secr3t" not in audit["connectionUrl"]
    assert set(audit) == {"type", "name", "createdAt", "updatedAt", "connectionUrl", "description"}
    assert await w.ok("auditor", f"{V1}/sources/fraud-audit") == audit
    assert (await w.get("auditor", f"{V1}/sources/{quote('no such', safe='')}")).status_code == 404
    page = await w.ok("auditor", f"{V1}/sources", limit=1, offset=100)
    assert page == {"sources": [], "totalCount": (await w.ok("auditor", f"{V1}/sources"))["totalCount"]}

    # A dataset's dataSource facet is its product's internals: payments' engineer does not learn where
    # fraud's audit database is, nor fraud's URI behind the source name both products use.
    assert (await w.get("payments", f"{V1}/sources/fraud-audit")).status_code == 404
    theirs = {s["name"]: s for s in (await w.ok("payments", f"{V1}/sources"))["sources"]}
    assert set(theirs) == {"source", "exports"}  # its own datasets' and an unowned dataset's
    assert theirs["source"]["connectionUrl"] == TLS
    assert by_name["source"]["connectionUrl"] == FRAUD_TLS
    assert "fraud" not in str(theirs["source"])
    sources_stats = await w.ok("payments", f"{V1}/stats/sources", period="DAY")
    assert sources_stats[-1]["count"] == 2
    assert (await w.ok("auditor", f"{V1}/stats/sources", period="DAY"))[-1]["count"] == 3


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("postgres://db:5432/x", "POSTGRESQL"),
        ("postgresql://db/x", "POSTGRESQL"),
        ("jdbc:postgresql://db/x", "POSTGRESQL"),
        ("jdbc:oracle:thin:@host:1521/db", "ORACLE"),
        ("kafka://broker:9092", "KAFKA"),
        ("bigquery", "BIGQUERY"),
        ("file", "FILE"),
        ("", "UNKNOWN"),
        (None, "UNKNOWN"),
        ("/tmp/data", "UNKNOWN"),
    ],
)
def test_source_type_from_uri_scheme(uri: str | None, expected: str) -> None:
    assert source_type(uri) == expected


async def test_stats_count_events_and_growth_in_time_buckets(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    w = await world(client, engine)
    now = dt.datetime.now(dt.UTC)
    # inside last hour's bucket, with the FAIL a minute later still in it (whatever the minute of now)
    hour_ago = (now - dt.timedelta(hours=1)).replace(minute=10, second=0, microsecond=0)
    three_days_ago = now - dt.timedelta(days=3)
    run = str(uuid.uuid4())
    await ingest(
        client,
        run_event("START", when=iso(hour_ago), run_id=run, job=("airflow-fraud", "fraud_dag.hourly")),
        run_event(
            "FAIL",
            when=iso(hour_ago + dt.timedelta(minutes=1)),
            run_id=run,
            job=("airflow-fraud", "fraud_dag.hourly"),
        ),
        run_event(
            when=iso(three_days_ago),
            job=("airflow-payments", "payments_dag.daily"),
            outputs=[
                dataset(
                    PAYMENTS_DB, "payments.daily", dataSource=source("postgres://new-db:5432/p", "new-db")
                )
            ],
        ),
    )

    day = await w.ok("auditor", f"{V1}/stats/lineage-events", period="DAY")
    assert len(day) == 24
    for earlier, later in itertools.pairwise(day):
        assert earlier["endInterval"] == later["startInterval"]
    assert day[-1]["startInterval"] <= iso(now) < day[-1]["endInterval"]
    hit = [b for b in day if b["startInterval"] <= iso(hour_ago) < b["endInterval"]]
    assert len(hit) == 1
    assert (hit[0]["start"], hit[0]["fail"]) == (1, 1)
    assert sum(b["complete"] + b["abort"] for b in day) == 0  # the world's events are from March
    assert set(day[0]) == {"startInterval", "endInterval", "start", "complete", "fail", "abort"}

    # payments' engineer does not count fraud's runs (the /events/lineage rule)
    theirs = await w.ok("payments", f"{V1}/stats/lineage-events", period="day")
    assert sum(b["start"] + b["fail"] for b in theirs) == 0

    # a week by the caller's days: buckets start at local midnight
    week = await w.ok("auditor", f"{V1}/stats/lineage-events", period="WEEK", timezone="America/Sao_Paulo")
    assert len(week) == 7
    assert {b["startInterval"][11:] for b in week} == {"03:00:00Z"}
    assert sum(b["complete"] for b in week) == 1  # payments' daily run

    # growth: how many existed at the end of each bucket
    jobs_now = (await w.ok("auditor", f"{V1}/jobs"))["totalCount"]
    jobs = await w.ok("auditor", f"{V1}/stats/jobs", period="WEEK")
    assert jobs[-1]["count"] == jobs_now
    assert jobs[0]["count"] == jobs_now - 2  # the hourly and the daily jobs came within the week
    datasets = await w.ok("auditor", f"{V1}/stats/datasets", period="DAY")
    assert len({b["count"] for b in datasets}) == 1  # none new within the day
    sources = await w.ok("auditor", f"{V1}/stats/sources", period="WEEK")
    assert sources[-1]["count"] == (await w.ok("auditor", f"{V1}/sources"))["totalCount"]
    assert sources[-1]["count"] - sources[0]["count"] == 1  # new-db
    assert set(sources[0]) == {"startInterval", "endInterval", "count"}

    for path in ("lineage-events", "jobs"):
        missing = await w.get("auditor", f"{V1}/stats/{path}")
        assert missing.status_code == 400
        assert missing.json()["pointer"] == "period"
        zone = await w.get("auditor", f"{V1}/stats/{path}", period="WEEK", timezone="Mars/Olympus")
        assert zone.status_code == 400
        assert zone.json()["pointer"] == "timezone"


async def test_marquez_writes_answer_405_to_who_may_ingest_and_403_to_others(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    w = await world(client, engine)
    w.keys["payments-pipeline"] = await make_key(engine, "pipeline", "payments")
    dataset_path = f"{V1}/namespaces/{quote(PAYMENTS_DB, safe='')}/datasets/{quote(TRANSACTIONS, safe='')}"
    job_path = f"{V1}/namespaces/airflow-payments/jobs/{quote('payments_dag.settle', safe='')}"
    run = (await w.ok("auditor", f"{job_path}/runs"))["runs"][0]["id"]
    writes = [
        ("PUT", f"{V1}/namespaces/{quote(PAYMENTS_DB, safe='')}", "GET"),
        ("DELETE", f"{V1}/namespaces/{quote(PAYMENTS_DB, safe='')}", "GET"),
        ("PUT", dataset_path, "GET"),
        ("DELETE", dataset_path, "GET"),
        ("PUT", job_path, "GET"),
        ("DELETE", job_path, "GET"),
        ("POST", f"{job_path}/runs", "GET"),
        ("POST", f"{V1}/jobs/runs/{run}/start", ""),
        ("POST", f"{V1}/jobs/runs/{run}/abort", ""),
        ("POST", f"{job_path}/tags/PII", ""),
        ("PATCH", f"{job_path}/tags/PII", ""),
        ("DELETE", f"{job_path}/tags/PII", ""),
    ]
    for method, path, allow in writes:
        for who in ("payments-pipeline", "payments"):
            response = await w.client.request(method, path, json={}, headers=w.keys[who].headers)
            assert response.status_code == 405, (method, path, who, response.text)
            assert response.headers["allow"] == allow
            assert "POST /api/v1/lineage" in response.json()["detail"]
        # judged as the ingest they stand for: fraud's pipeline may not ingest payments' jobs
        other = await w.client.request(method, path, json={}, headers=w.keys["pipeline"].headers)
        assert denied_by(other, "pipeline-only-ingests-own-product"), (method, path)
        assert denied_by(
            await w.client.request(method, path, json={}, headers=w.keys["auditor"].headers),
            "auditor-never-writes",
        )
    # nothing changed
    assert (await w.ok("auditor", f"{job_path}/runs"))["runs"][0]["id"] == run
    assert (await w.ok("auditor", dataset_path))["name"] == TRANSACTIONS
    # a source names no product: only admin (who may ingest anything) is told how
    admin = await make_key(engine, "admin")
    put_source = await w.client.put(f"{V1}/sources/fraud-audit", json={}, headers=admin.headers)
    assert put_source.status_code == 405
    assert put_source.json()["type"] == "/problems/method-not-allowed"
    # the supported tag endpoints are unchanged
    tagged = await w.client.post(f"{dataset_path}/tags/PII", headers=w.keys["payments-steward"].headers)
    assert tagged.status_code == 200, tagged.text
