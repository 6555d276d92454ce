"""What an event turns into in the catalog, as read back through the REST API and in the tables."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.factories import PRODUCER, at, column_lineage, dataset, run_event, schema

PG = "postgres://payments-db:5432"
BQ = "bigquery"


def enc(name: str) -> str:
    return quote(name, safe="")


async def ingest(client: httpx.AsyncClient, *events: dict[str, Any]) -> None:
    response = await client.post("/api/v1/lineage/batch", content=orjson.dumps(list(events)))
    assert response.json()["summary"]["failed"] == 0, response.text


async def rows(engine: AsyncEngine, sql: str) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql))).all())


def cdc_event(**overrides: Any) -> dict[str, Any]:
    source = dataset(
        PG,
        "payments.public.customers",
        schema=schema(
            "id", "cpf", {"name": "address", "type": "STRUCT", "fields": [{"name": "city", "type": "STRING"}]}
        ),
        dataSource={"name": PG, "uri": f"{PG}/payments?sslmode=verify-full"},
        ownership={"owners": [{"name": "team:payments", "type": "TEAM"}]},
    )
    target = dataset(
        BQ,
        "analytics.payments.customers",
        schema=schema("id", "cpf_hash", "city"),
        columnLineage=column_lineage(
            {
                "id": [(PG, "payments.public.customers", "id", "DIRECT", "IDENTITY", False)],
                "cpf_hash": [(PG, "payments.public.customers", "cpf", "DIRECT", "TRANSFORMATION", True)],
                "city": [(PG, "payments.public.customers", "address.city", "DIRECT", "IDENTITY", False)],
            }
        ),
        symlinks={"identifiers": [{"namespace": "gs://lake", "name": "/customers", "type": "TABLE"}]},
    )
    event = run_event(
        "COMPLETE",
        job=("airflow-payments", "cdc.customers_to_bq"),
        inputs=[source],
        outputs=[target],
        job_facets={
            "jobType": {
                "_producer": PRODUCER,
                "processingType": "BATCH",
                "integration": "AIRFLOW",
                "jobType": "TASK",
            },
            "sql": {
                "_producer": PRODUCER,
                "query": "INSERT INTO customers SELECT id, sha256(cpf), address.city",
            },
            "sourceCodeLocation": {
                "_producer": PRODUCER,
                "type": "git",
                "url": "https://git.example/etl.git",
            },
        },
    )
    event.update(overrides)
    return event


async def test_dataset_fields_owners_and_source(client: httpx.AsyncClient) -> None:
    await ingest(client, cdc_event())
    body = (
        await client.get(f"/api/v1/namespaces/{enc(PG)}/datasets/{enc('payments.public.customers')}")
    ).json()
    assert body["id"] == {"namespace": PG, "name": "payments.public.customers"}
    assert [f["name"] for f in body["fields"]] == ["id", "cpf", "address", "address.city"]
    assert body["sourceName"] == PG
    assert body["facets"]["ownership"]["owners"][0]["name"] == "team:payments"
    assert body["currentVersion"]


async def test_column_lineage_edges_keep_transformation_and_masking(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await ingest(client, cdc_event())
    edges = await rows(
        engine,
        "SELECT sf.path AS source, tf.path AS target, e.transformation_type, e.transformation_subtype, e.masking "
        "FROM column_edges e JOIN dataset_fields sf ON sf.id = e.source_field_id "
        "JOIN dataset_fields tf ON tf.id = e.target_field_id ORDER BY tf.path",
    )
    assert [tuple(e) for e in edges] == [
        ("address.city", "city", "DIRECT", "IDENTITY", False),
        ("cpf", "cpf_hash", "DIRECT", "TRANSFORMATION", True),
        ("id", "id", "DIRECT", "IDENTITY", False),
    ]


async def test_job_io_type_sql_and_location(client: httpx.AsyncClient) -> None:
    await ingest(client, cdc_event())
    job = (await client.get("/api/v1/namespaces/airflow-payments/jobs/cdc.customers_to_bq")).json()
    assert job["inputs"] == [{"namespace": PG, "name": "payments.public.customers"}]
    assert job["outputs"] == [{"namespace": BQ, "name": "analytics.payments.customers"}]
    assert job["sql"].startswith("INSERT INTO customers")
    assert job["location"] == "https://git.example/etl.git"
    assert job["jobType"]["integration"] == "AIRFLOW"
    assert job["latestRun"]["state"] == "COMPLETE"


async def test_schema_change_makes_a_new_version(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    ds = "payments.public.tx"
    await ingest(
        client,
        run_event(when=at(1), outputs=[dataset(PG, ds, schema=schema("id"))]),
        run_event(when=at(2), outputs=[dataset(PG, ds, schema=schema("id"))]),
        run_event(when=at(3), outputs=[dataset(PG, ds, schema=schema("id", "amount"))]),
    )
    versions = await rows(engine, "SELECT first_seen, last_seen FROM dataset_versions ORDER BY first_seen")
    assert len(versions) == 2
    body = (await client.get(f"/api/v1/namespaces/{enc(PG)}/datasets/{ds}")).json()
    assert [f["name"] for f in body["fields"]] == ["id", "amount"]


async def test_lifecycle_drop_marks_the_dataset_deleted(client: httpx.AsyncClient) -> None:
    drop = {"_producer": PRODUCER, "lifecycleStateChange": "DROP"}
    await ingest(
        client,
        run_event(when=at(1), outputs=[dataset(BQ, "tmp.t", schema=schema("id"))]),
        run_event(when=at(2), outputs=[dataset(BQ, "tmp.t", lifecycleStateChange=drop)]),
    )
    body = (await client.get("/api/v1/namespaces/bigquery/datasets/tmp.t")).json()
    assert body["deleted"] is True
    assert body["lastLifecycleState"] == "DROP"


async def test_deleted_facet_is_removed(client: httpx.AsyncClient) -> None:
    await ingest(
        client,
        run_event(
            when=at(1), outputs=[dataset(BQ, "t.d", documentation={"description": "old", "_producer": "x"})]
        ),
        run_event(
            when=at(2), outputs=[dataset(BQ, "t.d", documentation={"_deleted": True, "_producer": "x"})]
        ),
    )
    body = (await client.get("/api/v1/namespaces/bigquery/datasets/t.d")).json()
    assert "documentation" not in body["facets"]
    assert body["description"] is None


async def test_newest_facet_wins_whatever_the_arrival_order(client: httpx.AsyncClient) -> None:
    newer = run_event(when=at(5), outputs=[dataset(BQ, "t.e", documentation={"description": "new"})])
    older = run_event(when=at(1), outputs=[dataset(BQ, "t.e", documentation={"description": "old"})])
    await ingest(client, newer)
    await ingest(client, older)
    body = (await client.get("/api/v1/namespaces/bigquery/datasets/t.e")).json()
    assert body["description"] == "new"
    assert body["createdAt"] == "2026-03-01T00:00:00Z"
    assert body["updatedAt"] == "2026-03-05T00:00:00Z"


async def test_parent_run_and_same_run_id_under_two_jobs(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    parent_id, run_id = str(uuid.uuid4()), str(uuid.uuid4())
    parent = {
        "_producer": PRODUCER,
        "run": {"runId": parent_id},
        "job": {"namespace": "airflow", "name": "dag"},
    }
    await ingest(
        client,
        run_event("START", run_id=run_id, job=("airflow", "dag.a"), run_facets={"parent": parent}),
        run_event("START", run_id=run_id, job=("airflow", "dag.b"), when=at(2)),
    )
    assert len(await rows(engine, "SELECT 1 FROM runs")) == 2
    runs = (await client.get("/api/v1/namespaces/airflow/jobs/dag.a/runs")).json()
    assert runs["totalCount"] == 1
    assert runs["runs"][0]["parentRun"] == {"id": parent_id, "jobNamespace": "airflow", "jobName": "dag"}
    latest = (await client.get(f"/api/v1/jobs/runs/{run_id}")).json()
    assert latest["jobVersion"]["name"] == "dag.b"
    assert latest["sameIdRuns"] == [{"jobNamespace": "airflow", "jobName": "dag.a"}]


async def test_lists_have_total_count_and_paginate(client: httpx.AsyncClient) -> None:
    await ingest(client, *[run_event(when=at(1, h), outputs=[dataset(BQ, f"t.p{h}")]) for h in range(7)])
    page = (await client.get("/api/v1/namespaces/bigquery/datasets?limit=3&offset=3")).json()
    assert page["totalCount"] == 7
    assert [d["name"] for d in page["datasets"]] == ["t.p3", "t.p4", "t.p5"]
    events = (await client.get("/api/v1/events/lineage?limit=2")).json()
    assert events["totalCount"] == 7
    assert [e["eventTime"] for e in events["events"]] == [at(1, 6), at(1, 5)]
    after = (await client.get("/api/v1/events/lineage", params={"after": "2026-03-01T04:30:00Z"})).json()
    assert after["totalCount"] == 2
    namespaces = (await client.get("/api/v1/namespaces")).json()
    assert namespaces["totalCount"] == 2


async def test_unknown_things_are_404_problems(client: httpx.AsyncClient) -> None:
    for path in (
        "/api/v1/namespaces/nope",
        "/api/v1/namespaces/nope/datasets",
        "/api/v1/namespaces/nope/datasets/x",
        "/api/v1/namespaces/nope/jobs/x",
        f"/api/v1/jobs/runs/{uuid.uuid4()}",
    ):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_bad_query_parameters_are_400_naming_the_parameter(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/namespaces?limit=0")
    assert response.status_code == 400
    assert response.json()["pointer"] == "limit"
    response = await client.get("/api/v1/jobs/runs/not-a-uuid")
    assert response.status_code == 400
