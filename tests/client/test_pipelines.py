"""Pipelines: the emitter sends START then COMPLETE, or FAIL with the error message, through
openlineage-python to the real service; the facet helpers' output is read back through the catalog."""

from __future__ import annotations

import pytest

from catalog_client import CatalogClient, dataset_node, field_node
from catalog_client.pipelines import (
    Emitter,
    Source,
    column_lineage,
    data_source,
    input_dataset,
    output_dataset,
    tags,
)
from tests.conftest import ADMIN_TOKEN, LiveServer

PG = "postgres://payments-db:5432"


def test_run_context_sends_start_then_complete_with_every_facet(
    live_server: LiveServer, catalog: CatalogClient
) -> None:
    emitter = Emitter(live_server.url, ADMIN_TOKEN, namespace="notebooks")
    users = input_dataset(
        PG,
        "public.users",
        fields={"id": "BIGINT", "email": "TEXT", "cpf": "TEXT"},
        source=data_source("payments-db", f"{PG}/payments"),
        tags=tags(fields={"cpf": ["PII.CPF"]}),
    )
    with emitter.run("users_report", inputs=[users]) as run:
        # an output known only once the work is done goes out with COMPLETE
        run.add_output(
            output_dataset(
                "s3://reports",
                "users_report",
                fields=[("id", "BIGINT", "the user"), ("email_hash", "TEXT")],
                owners=["team:payments", ("user:ana", "MAINTAINER")],
                column_lineage=column_lineage(
                    {
                        "id": [(PG, "public.users", "id")],
                        "email_hash": [
                            Source(PG, "public.users", "email", subtype="TRANSFORMATION", masking=True)
                        ],
                    }
                ),
            )
        )
        started = catalog.run(run.run_id)
        assert started.state == "START"

    done = catalog.run(run.run_id)
    assert done.state == "COMPLETE"
    assert done.ended_at is not None
    assert done.job_version.name == "users_report"

    source = catalog.dataset(PG, "public.users")
    assert [f.name for f in source.fields] == ["id", "email", "cpf"]
    assert source.source_uri == f"{PG}/payments"
    declared = catalog.classifications(PG, "public.users", field="cpf")
    assert [c.tag for c in declared] == ["PII.CPF"]

    report = catalog.dataset("s3://reports", "users_report")
    assert [(f.name, f.description) for f in report.fields] == [("id", "the user"), ("email_hash", None)]
    owners = next(iter(catalog.all_datasets(namespace="s3://reports"))).owners
    assert {(o.name, o.type) for o in owners} == {("team:payments", None), ("user:ana", "MAINTAINER")}

    graph = catalog.column_lineage(field_node("s3://reports", "users_report", "email_hash"))
    node = graph.node(field_node("s3://reports", "users_report", "email_hash"))
    assert node is not None
    [origin] = node.data.input_fields
    assert (origin.dataset, origin.field, origin.transformation_subtype, origin.masking) == (
        "public.users",
        "email",
        "TRANSFORMATION",
        True,
    )
    job = catalog.lineage(dataset_node("s3://reports", "users_report"), direction="UPSTREAM")
    assert {n.id for n in job.graph} >= {"job:notebooks:users_report", dataset_node(PG, "public.users")}


def test_decorator_sends_fail_with_the_error_message_and_reraises(
    live_server: LiveServer, catalog: CatalogClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Configured from the environment, falling back to the OpenLineage variables like its client.
    monkeypatch.delenv("CATALOG_URL", raising=False)
    monkeypatch.delenv("CATALOG_API_KEY", raising=False)
    monkeypatch.setenv("OPENLINEAGE_URL", live_server.url)
    monkeypatch.setenv("OPENLINEAGE_API_KEY", ADMIN_TOKEN)
    emitter = Emitter(namespace="notebooks")

    @emitter.job("flaky_load", inputs=[input_dataset(PG, "public.orders")])
    def load(rows: int) -> int:
        if rows < 0:
            raise ValueError("negative row count")
        return rows

    assert load(3) == 3
    with pytest.raises(ValueError, match="negative row count"):
        load(-1)

    runs = list(catalog.runs("notebooks", "flaky_load"))
    assert [r.state for r in runs] == ["FAIL", "COMPLETE"]  # newest first
    error = runs[0].facets["errorMessage"]
    assert error["message"] == "ValueError: negative row count"
    assert error["programmingLanguage"] == "python"
    assert "raise ValueError" in error["stackTrace"]


async def test_decorator_wraps_coroutines(live_server: LiveServer, catalog: CatalogClient) -> None:
    emitter = Emitter(live_server.url, ADMIN_TOKEN, namespace="notebooks")

    @emitter.job()
    async def refresh() -> str:
        return "ok"

    assert await refresh() == "ok"
    [job] = [j for j in catalog.jobs("notebooks") if j.name.endswith("refresh")]
    assert job.latest_run is not None
    assert job.latest_run.state == "COMPLETE"
