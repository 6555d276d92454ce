"""Findings in a compliance bundle read on their own: the CSV/JSON give the subject and evidence as
separate columns, the HTML report names each finding's subject in full (names with '/' included)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.audit.signing import kek_from_settings
from catalog.config import Settings
from catalog.export.bundle import ExportRequest, write_bundle
from tests.export.helpers import load, read
from tests.factories import at, dataset, run_event, schema
from tests.findings.helpers import source

PARTNER = "http://partner-api.example.com"
JOB = ("airflow-merchant", "merchant_partner.upload_settlements_to_the_partner_every_night")
NAME = "uploads/merchant/settlements/daily/with/a/very/long/path/that/used/to/be/cut/from/the/left"


async def test_findings_read_without_looking_anything_up(
    client: httpx.AsyncClient, engine: AsyncEngine, settings: Settings, tmp_path: Path
) -> None:
    upload = dataset(PARTNER, NAME, dataSource=source(f"{PARTNER}/upload"), schema=schema("id"))
    settlements = dataset(
        "postgres://merchant-db-1.internal:5432",
        "merchant.public.settlements",
        dataSource=source("postgres://merchant-db-1.internal:5432/merchant?sslmode=require"),
        schema=schema("id"),
    )
    event = run_event(when=at(1), job=JOB, inputs=[settlements], outputs=[upload])
    await load(client, [event])
    result = await write_bundle(
        engine,
        tmp_path / "b.zip",
        ExportRequest(as_of=dt.datetime(2026, 3, 2, tzinfo=dt.UTC), actor="test"),
        kek_from_settings(settings),
    )

    rows = list(csv.DictReader(io.StringIO(read(result.path, "findings/findings.csv").decode())))
    [row] = [r for r in rows if r["rule"] == "unencrypted-transfer"]
    assert (row["namespace"], row["name"], row["field"]) == (PARTNER, NAME, "")
    assert (row["job_namespace"], row["job"], row["direction"]) == (*JOB, "output")
    assert row["product"] == "merchant"
    assert row["uri"] == f"{PARTNER}/upload"
    assert row["run_id"] == event["run"]["runId"]
    assert row["reason"] == "http:// is a plaintext transport"
    display = f"job {JOB[1]} in {JOB[0]} writes dataset {NAME} in {PARTNER}"
    assert row["subject"] == display
    [as_json] = [
        r
        for r in orjson.loads(read(result.path, "findings/findings.json"))
        if r["rule"] == "unencrypted-transfer"
    ]
    assert (as_json["namespace"], as_json["name"], as_json["job"]) == (PARTNER, NAME, JOB[1])

    report = read(result.path, "report.html").decode()
    assert display in report  # whole, not cut from the left
    assert f"{PARTNER}/upload" in report
    assert "<th>evidence</th>" not in report  # the raw JSON stays in the files
