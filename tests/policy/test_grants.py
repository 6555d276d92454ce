"""Runtime grants: the owning product's steward lets another product read a dataset (reason, expiry),
that product's engineer then reads its columns; revocation and expiry take it back; and a grant made
through one service instance is enforced by another on the same database within a second (another app in
this process, and `catalog serve` in another OS process)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import LiveServer, free_port
from tests.factories import dataset, run_event, schema
from tests.findings.helpers import PAYMENTS_DB, ingest, source
from tests.keys import make_key

TLS = "postgres://payments-db-1.internal:5432/payments?sslmode=verify-full"
INTERNALS = "other-products-internals-need-a-grant"


def dataset_url(name: str) -> str:
    return f"/api/v1/namespaces/{quote(PAYMENTS_DB, safe='')}/datasets/{quote(name, safe='')}"


async def load_payments(client: httpx.AsyncClient) -> None:
    tables = [
        dataset(PAYMENTS_DB, name, dataSource=source(TLS), schema=schema("id", ("amount", "NUMERIC")))
        for name in ("payments.transactions", "payments.refunds")
    ]
    await ingest(client, run_event(job=("airflow-payments", "payments_dag.load"), inputs=tables))


def grant_body(**overrides: Any) -> dict[str, Any]:
    return {
        "grantee_product": "fraud",
        "scope": "dataset",
        "namespace": PAYMENTS_DB,
        "name": "payments.transactions",
        "reason": "fraud scoring needs settled transactions (RISK-114)",
        "expires_at": (dt.datetime.now(dt.UTC) + dt.timedelta(days=90)).isoformat(),
        **overrides,
    }


def denied_by(response: httpx.Response, rule: str) -> bool:
    return (
        response.status_code == 403
        and response.headers["content-type"].startswith("application/problem+json")
        and response.json()["rule"] == rule
    )


async def test_a_steward_grants_another_product_read_and_its_engineer_reads_the_columns(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await load_payments(client)
    steward = await make_key(engine, "steward", "payments")
    fraud_steward = await make_key(engine, "steward", "fraud")
    fraud_engineer = await make_key(engine, "engineer", "fraud")
    url = dataset_url("payments.transactions")

    before = await client.get(url, headers=fraud_engineer.headers)
    assert denied_by(before, INTERNALS), before.text

    # only the owning product's steward may grant
    stolen = await client.post(
        "/api/v1/grants", json=grant_body(grantor_product="payments"), headers=fraud_steward.headers
    )
    assert denied_by(stolen, "only-the-owning-steward-grants"), stolen.text
    for bad, field in ((grant_body(reason=""), "reason"), (grant_body(scope="everything"), "scope")):
        refused = await client.post("/api/v1/grants", json=bad, headers=steward.headers)
        assert refused.status_code in (400, 422), (field, refused.text)

    body = grant_body()
    created = await client.post("/api/v1/grants", json=body, headers=steward.headers)
    assert created.status_code == 201, created.text
    grant = created.json()
    assert grant["grantorProduct"] == "payments"
    assert grant["granteeProduct"] == "fraud"
    assert grant["reason"] == body["reason"]
    assert dt.datetime.fromisoformat(grant["expiresAt"]) == dt.datetime.fromisoformat(body["expires_at"])
    assert grant["createdBy"] == steward.key_id

    after = await client.get(url, headers=fraud_engineer.headers)
    assert after.status_code == 200, after.text
    assert [f["name"] for f in after.json()["fields"]] == ["id", "amount"]
    # the grant is for that dataset only
    refunds = await client.get(dataset_url("payments.refunds"), headers=fraud_engineer.headers)
    assert denied_by(refunds, INTERNALS), refunds.text
    # both products see the grant
    for key in (steward, fraud_engineer):
        listed = await client.get("/api/v1/grants", params={"product": key.product}, headers=key.headers)
        assert [g["id"] for g in listed.json()["grants"]] == [grant["id"]], listed.text

    revoked = await client.delete(f"/api/v1/grants/{grant['id']}", headers=steward.headers)
    assert revoked.status_code == 200, revoked.text
    again = await client.get(url, headers=fraud_engineer.headers)
    assert denied_by(again, INTERNALS), again.text

    async with engine.connect() as conn:
        changes = (
            await conn.execute(
                text("SELECT action, actor FROM grant_changes WHERE grant_id = :id ORDER BY id"),
                {"id": grant["id"]},
            )
        ).all()
        denials = (
            await conn.execute(
                text("SELECT rule FROM access_denials WHERE key_id = :k ORDER BY id"),
                {"k": fraud_engineer.key_id},
            )
        ).scalars()
        denial_rules = list(denials)
    assert [tuple(c) for c in changes] == [("create", steward.key_id), ("revoke", steward.key_id)]
    assert denial_rules == [INTERNALS] * 3


async def test_a_namespace_grant_covers_every_dataset_in_it(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await load_payments(client)
    steward = await make_key(engine, "steward", "payments")
    fraud_engineer = await make_key(engine, "engineer", "fraud")
    created = await client.post(
        "/api/v1/grants", json=grant_body(scope="namespace", name=None), headers=steward.headers
    )
    assert created.status_code == 201, created.text
    for name in ("payments.transactions", "payments.refunds"):
        read = await client.get(dataset_url(name), headers=fraud_engineer.headers)
        assert read.status_code == 200, read.text
    listing = await client.get(
        f"/api/v1/namespaces/{quote(PAYMENTS_DB, safe='')}/datasets", headers=fraud_engineer.headers
    )
    assert listing.status_code == 200, listing.text


async def test_a_grant_lapses_at_its_expiry(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    await load_payments(client)
    steward = await make_key(engine, "steward", "payments")
    fraud_engineer = await make_key(engine, "engineer", "fraud")
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.5)
    created = await client.post(
        "/api/v1/grants", json=grant_body(expires_at=expires.isoformat()), headers=steward.headers
    )
    assert created.status_code == 201, created.text
    url = dataset_url("payments.transactions")
    assert (await client.get(url, headers=fraud_engineer.headers)).status_code == 200
    await asyncio.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()) + 0.6)
    lapsed = await client.get(url, headers=fraud_engineer.headers)
    assert denied_by(lapsed, INTERNALS), lapsed.text


async def wait_for_status(
    http: httpx.AsyncClient, url: str, headers: dict[str, str], status: int, *, within: float
) -> float:
    """Poll until `url` answers `status`; the seconds it took (fails after `within`)."""
    started = time.monotonic()
    while True:
        response = await http.get(url, headers=headers)
        elapsed = time.monotonic() - started
        if response.status_code == status:
            return elapsed
        assert elapsed < within, f"still {response.status_code} after {elapsed:.2f}s: {response.text}"
        await asyncio.sleep(0.05)


async def test_a_grant_made_through_one_instance_is_enforced_by_another_within_a_second(
    client: httpx.AsyncClient, live_server: LiveServer, engine: AsyncEngine
) -> None:
    """`client` and `live_server` are two app instances (own engine, enforcer and grant watcher; the
    live server on its own event loop and socket) on one database."""
    await load_payments(client)
    steward = await make_key(engine, "steward", "payments")
    fraud_engineer = await make_key(engine, "engineer", "fraud")
    url = dataset_url("payments.transactions")
    assert denied_by(await client.get(url, headers=fraud_engineer.headers), INTERNALS)

    async with httpx.AsyncClient(base_url=live_server.url, timeout=10) as other:
        created = await other.post("/api/v1/grants", json=grant_body(), headers=steward.headers)
        assert created.status_code == 201, created.text
        assert await wait_for_status(client, url, fraud_engineer.headers, 200, within=1.0) < 1.0

        revoked = await other.delete(f"/api/v1/grants/{created.json()['id']}", headers=steward.headers)
        assert revoked.status_code == 200, revoked.text
        assert await wait_for_status(client, url, fraud_engineer.headers, 403, within=1.0) < 1.0

        # and the other way round: granted through the in-process app, enforced by the live server
        created = await client.post("/api/v1/grants", json=grant_body(), headers=steward.headers)
        assert created.status_code == 201, created.text
        assert await wait_for_status(other, url, fraud_engineer.headers, 200, within=1.0) < 1.0


async def test_a_grant_is_enforced_by_another_os_process_within_a_second(
    client: httpx.AsyncClient, database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    """The same across OS processes: `catalog serve` in a subprocess, grants made through this one."""
    await load_payments(client)
    steward = await make_key(engine, "steward", "payments")
    fraud_engineer = await make_key(engine, "engineer", "fraud")
    url = dataset_url("payments.transactions")
    port = free_port()
    env = dict(
        os.environ, CATALOG_DATABASE_URL=database_url, CATALOG_HOME=str(tmp_path), CATALOG_LOG_LEVEL="WARNING"
    )
    env.pop("CATALOG_ADMIN_TOKEN", None)
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "catalog.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as other:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if (await other.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.returncode is not None:
                    stderr = await process.stderr.read() if process.stderr else b""
                    raise AssertionError(f"catalog serve exited: {stderr.decode()}")
                assert time.monotonic() < deadline, "catalog serve did not come up"
                await asyncio.sleep(0.1)
            assert denied_by(await other.get(url, headers=fraud_engineer.headers), INTERNALS)

            created = await client.post("/api/v1/grants", json=grant_body(), headers=steward.headers)
            assert created.status_code == 201, created.text
            assert await wait_for_status(other, url, fraud_engineer.headers, 200, within=1.0) < 1.0

            revoked = await client.delete(f"/api/v1/grants/{created.json()['id']}", headers=steward.headers)
            assert revoked.status_code == 200, revoked.text
            assert await wait_for_status(other, url, fraud_engineer.headers, 403, within=1.0) < 1.0
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=20)
            except TimeoutError:
                process.kill()
                await process.wait()
