"""Migration 0010 on a catalog that already holds events: each flow's transport is rebuilt from the event
log, and findings get their subject by name."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import text
from typer.testing import CliRunner

from catalog.cli import app
from catalog.db import migrate
from catalog.db.engine import create_engine
from tests.factories import at, dataset, run_event, schema
from tests.findings.helpers import PAYMENTS_DB, source

runner = CliRunner()
PLAIN = "jdbc:postgresql://payments-db-1.internal:5432/payments"
TLS = "postgres://payments-db-1.internal:5432/payments?sslmode=verify-full"


def query(url: str, sql: str) -> list[Any]:
    async def go() -> list[Any]:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.connect() as conn:
                return list((await conn.execute(text(sql))).all())
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_upgrade_rebuilds_flow_transports_from_the_log(database_url: str, tmp_path: Path) -> None:
    def tx(uri: str) -> dict[str, Any]:
        return dataset(PAYMENTS_DB, "payments.transactions", dataSource=source(uri), schema=schema("id"))

    events = [
        run_event(when=at(1), job=("airflow-fraud", "fraud_dag.score"), inputs=[tx(TLS)]),
        run_event(when=at(2), job=("airflow-fraud", "fraud_dag.score"), inputs=[tx(PLAIN)]),
        run_event(when=at(3), job=("airflow-payments", "payments_dag.load"), inputs=[tx(TLS)]),
    ]
    path = tmp_path / "events.json"
    path.write_bytes(orjson.dumps(events))
    ingested = runner.invoke(app, ["ingest", str(path), "--database-url", database_url])
    assert ingested.exit_code == 0, ingested.output
    before = query(database_url, "SELECT * FROM flow_transports ORDER BY job_id, dataset_id, direction")
    assert len(before) == 2

    migrate.downgrade(database_url, "0006")
    migrate.upgrade(database_url)
    after = query(database_url, "SELECT * FROM flow_transports ORDER BY job_id, dataset_id, direction")
    assert after == before
    assert {r.uri for r in after} == {PLAIN, TLS}

    subjects = query(database_url, "SELECT rule, subject FROM findings ORDER BY rule")
    assert [rule for rule, _ in subjects] == ["cross-product-access", "unencrypted-transfer"]
    for _, subject in subjects:
        assert subject == {
            "kind": "flow",
            "namespace": PAYMENTS_DB,
            "name": "payments.transactions",
            "job": {"namespace": "airflow-fraud", "name": "fraud_dag.score"},
            "direction": "input",
        }
