"""The real openlineage-python client, over a real socket, talking to the real service."""

from __future__ import annotations

import uuid

import httpx
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import schema_dataset
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpCompression, HttpConfig, HttpTransport

from tests.conftest import ADMIN_TOKEN, LiveServer


def _client(url: str, compression: HttpCompression | None) -> OpenLineageClient:
    config = HttpConfig(
        url=url,
        auth=ApiKeyTokenProvider({"apiKey": ADMIN_TOKEN}),
        compression=compression,
        timeout=10,
    )
    return OpenLineageClient(transport=HttpTransport(config))


def test_openlineage_python_client_emits_to_us(live_server: LiveServer) -> None:
    run_id = str(uuid.uuid4())
    job = Job(namespace="notebooks", name="daily_payout_report")
    fields = [schema_dataset.SchemaDatasetFacetFields(name="amount", type="NUMERIC")]
    inputs = [InputDataset(namespace="bigquery", name="cw-analytics.payments.payouts")]
    outputs = [
        OutputDataset(
            namespace="bigquery",
            name="cw-analytics.payments.payout_report",
            facets={"schema": schema_dataset.SchemaDatasetFacet(fields=fields)},
        )
    ]
    for state, compression in ((RunState.START, None), (RunState.COMPLETE, HttpCompression.GZIP)):
        event = RunEvent(
            eventType=state,
            eventTime="2026-11-29T10:00:00.123456789Z" if state == RunState.START else "2026-11-29T10:05:00Z",
            run=Run(runId=run_id),
            job=job,
            producer="https://github.com/example/notebook",
            inputs=inputs,
            outputs=outputs,
        )
        _client(live_server.url, compression).emit(event)

    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    run = httpx.get(f"{live_server.url}/api/v1/jobs/runs/{run_id}", headers=headers).json()
    assert run["state"] == "COMPLETE"
    assert run["startedAt"] == "2026-11-29T10:00:00.123457Z"
    dataset = httpx.get(
        f"{live_server.url}/api/v1/namespaces/bigquery/datasets/cw-analytics.payments.payout_report",
        headers=headers,
    ).json()
    assert [f["name"] for f in dataset["fields"]] == ["amount"]


def test_wrong_key_is_refused_over_the_socket(live_server: LiveServer) -> None:
    response = httpx.post(
        f"{live_server.url}/api/v1/lineage",
        content=b"{}",
        headers={"Authorization": "Bearer wrong", "Content-Type": "application/json"},
    )
    assert response.status_code == 401
