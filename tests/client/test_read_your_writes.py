"""The client reads its own writes by default: an ingest is answered once logged, and the client's next
read carries the answer's Catalog-Position, so the service serves it once the event is projected."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import psycopg
import pytest

from catalog.config import Settings
from catalog.db.engine import libpq_dsn
from catalog_client import CatalogClient
from catalog_client.pipelines import Emitter
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.factories import at, dataset, run_event, schema


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home", admin_token=ADMIN_TOKEN, log_format="console", ingest_default_wait="logged"
    )


def test_the_client_reads_its_own_write_while_the_projector_is_behind(
    live_server: LiveServer, database_url: str
) -> None:
    event = run_event(
        when=at(4), job=("airflow", "ryw"), outputs=[dataset("bigquery", "mart.ryw", schema=schema("id"))]
    )
    with (
        psycopg.connect(libpq_dsn(database_url)) as blocker,
        CatalogClient(live_server.url, ADMIN_TOKEN) as client,
    ):
        # The projector is held back: its next step waits for this row.
        blocker.execute("SELECT position FROM projector_state FOR UPDATE")
        answer = client.ingest(event)
        assert answer.status == "created"
        assert answer.position
        assert client.write_position.position == answer.position
        # A reader that does not send the position is served what is projected: not this event yet.
        with httpx.Client(
            base_url=live_server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as other:
            assert other.get("/api/v1/namespaces/bigquery/datasets/mart.ryw").status_code == 404
        threading.Timer(0.5, blocker.rollback).start()  # the projector goes on in half a second
        found = client.dataset("bigquery", "mart.ryw")  # waits for it instead of answering 404
        assert [f.name for f in found.fields] == ["id"]


def test_the_emitter_shares_its_positions_with_the_client_that_reads(
    live_server: LiveServer, database_url: str
) -> None:
    with (
        psycopg.connect(libpq_dsn(database_url)) as blocker,
        CatalogClient(live_server.url, ADMIN_TOKEN) as client,
    ):
        emitter = Emitter(live_server.url, ADMIN_TOKEN, namespace="notebooks", reads=client)
        blocker.execute("SELECT position FROM projector_state FOR UPDATE")
        with emitter.run("ryw_report") as run:
            pass
        assert client.write_position.position > 0  # the START and COMPLETE answers' positions
        threading.Timer(0.5, blocker.rollback).start()
        assert client.run(run.run_id).state == "COMPLETE"
