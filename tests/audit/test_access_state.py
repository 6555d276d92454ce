"""Who may see what is chained: grants, revocations, waivers, keys, product reassignments and policy
reloads append to the audit log in the same transaction, and `catalog audit verify` holds the grants,
keys and waivers tables against the chain — so a superuser who deletes or forges rows there (without
touching the chain) is caught."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from catalog.audit import service as audit
from catalog.cli import app as cli
from catalog.config import Settings
from catalog.db.engine import create_engine, raw_transaction
from catalog.findings.service import scan
from catalog.policy import files
from catalog.policy import grants as grant_service
from tests.factories import dataset, run_event, schema
from tests.findings.helpers import PAYMENTS_DB, findings, ingest, source
from tests.keys import Key, make_key

JDBC_PLAIN = "jdbc:postgresql://payments-db-1.internal:5432/payments"
PAYMENTS_JOB = ("airflow-payments", "payments_dag.load")


async def _verify(engine: AsyncEngine) -> audit.VerifyReport:
    async with engine.connect() as conn:
        return await audit.verify(conn, page=4)


async def _superuser(engine: AsyncEngine, *statements: str) -> None:
    """Changes made straight in the database, past the service (and so past the chain)."""
    async with engine.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement))


async def _grant(client: httpx.AsyncClient, steward: Key, name: str) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/grants",
        json={
            "grantee_product": "fraud",
            "scope": "dataset",
            "namespace": PAYMENTS_DB,
            "name": name,
            "reason": "fraud scoring reads payments",
        },
        headers=steward.headers,
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _world(client: httpx.AsyncClient, engine: AsyncEngine) -> dict[str, Any]:
    """A live grant, a revoked one, a waived finding and a lifted waiver, made through the API."""
    steward = await make_key(engine, "steward", "payments")
    await ingest(
        client,
        run_event(
            job=PAYMENTS_JOB,
            inputs=[
                dataset(PAYMENTS_DB, name, dataSource=source(JDBC_PLAIN), schema=schema("id"))
                for name in ("payments.transactions", "payments.refunds")
            ],
        ),
    )
    live = await _grant(client, steward, "payments.transactions")
    revoked = await _grant(client, steward, "payments.refunds")
    assert (
        await client.delete(f"/api/v1/grants/{revoked['id']}", headers=steward.headers)
    ).status_code == 200
    finding = (await findings(client, "unencrypted-transfer"))[0]
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=7)).isoformat()
    url = f"/api/v1/findings/{finding['id']}"
    for step, body in (
        ("waive", {"reason": "first"}),
        ("unwaive", {}),
        ("waive", {"reason": "PAY-991", "until": until}),
    ):
        response = await client.post(f"{url}/{step}", json=body, headers=steward.headers)
        assert response.status_code == 200, response.text
    return {"steward": steward, "live": live, "revoked": revoked, "finding": finding["id"]}


async def test_access_changes_are_chained_and_verify_clean(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    world = await _world(client, engine)
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT action, subject FROM audit_log ORDER BY seq"))).all()
    chained = [(r.action, r.subject) for r in rows]
    assert ("api_key.created", f"api_key:{world['steward'].key_id}") in chained
    for action, grant in (
        ("grant.created", "live"),
        ("grant.created", "revoked"),
        ("grant.revoked", "revoked"),
    ):
        assert (action, f"grant:{world[grant]['id']}") in chained
    waivers = [a for a, s in chained if s == f"finding:{world['finding']}"]
    assert waivers == ["finding.waived", "finding.unwaived", "finding.waived"]
    report = await _verify(engine)
    assert report.ok, (report.problem, report.mismatches)


@pytest.mark.parametrize(
    ("attack", "named"),
    [
        # the issue's own example: every grant and its history gone
        (
            ["DELETE FROM grant_changes", "DELETE FROM grants"],
            "is missing from the grants table: it was deleted",
        ),
        (["DELETE FROM grants WHERE revoked_at IS NULL"], "is missing from the grants table"),
        (["DELETE FROM grant_changes WHERE action = 'revoke'"], "grant_changes holds 0 'revoke' row(s)"),
        (["UPDATE grants SET revoked_at = NULL, revoked_by = NULL"], "differs from audit row"),
        (["UPDATE grants SET grantee_product = 'risk'"], "grantee_product is 'risk' in the table"),
        (
            [
                "INSERT INTO grants (grantor_product, grantee_product, scope, namespace, name, reason, created_by) "
                f"VALUES ('payments', 'risk', 'namespace', '{PAYMENTS_DB}', NULL, 'backdoor', 'mallory')"
            ],
            "is not in the audit log: it was inserted outside the service",
        ),
        (["DELETE FROM api_keys"], "is missing from api_keys: it was deleted"),
        (["UPDATE api_keys SET role = 'admin', product = NULL"], "role is 'admin' in the table"),
        (["UPDATE api_keys SET secret_hash = sha256('mine'::bytea)"], "its secret hash was replaced"),
        (["UPDATE api_keys SET revoked_at = NULL"], None),  # nothing revoked yet: no change, no alarm
        (
            [
                "INSERT INTO api_keys (key_id, secret_hash, name, role) "
                "VALUES ('feedfacecafe', sha256('x'::bytea), 'backdoor', 'admin')"
            ],
            "api key feedfacecafe (admin, product -) is not in the audit log",
        ),
        (
            [
                "UPDATE findings SET status = 'open', waived_by = NULL, waiver_reason = NULL, waived_until = NULL"
            ],
            "is no longer waived and the log never lifted the waiver",
        ),
        (
            ["UPDATE findings SET waiver_reason = 'accepted by nobody'"],
            "waiver_reason is 'accepted by nobody'",
        ),
        (["DELETE FROM finding_changes"], "finding_changes holds 0 'waive' row(s)"),
        (["DELETE FROM findings"], "is no longer waived"),
    ],
)
async def test_access_tables_changed_behind_the_service_are_detected(
    client: httpx.AsyncClient, engine: AsyncEngine, attack: list[str], named: str | None
) -> None:
    await _world(client, engine)
    assert (await _verify(engine)).ok
    await _superuser(engine, *attack)
    report = await _verify(engine)
    assert report.problem is None  # the chain itself is untouched...
    if named is None:
        assert report.ok, report.mismatches
        return
    assert not report.ok  # ...but the tables no longer say what it says
    assert any(named in m.message for m in report.mismatches), [m.message for m in report.mismatches]


async def test_a_waiver_set_in_the_database_is_detected(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await ingest(
        client,
        run_event(
            job=PAYMENTS_JOB, inputs=[dataset(PAYMENTS_DB, "payments.x", dataSource=source(JDBC_PLAIN))]
        ),
    )
    assert (await _verify(engine)).ok
    await _superuser(
        engine, "UPDATE findings SET status = 'waived', waiver_reason = 'quietly', waived_by = 'me'"
    )
    report = await _verify(engine)
    assert any("the waiver was set outside the service" in m.message for m in report.mismatches)


async def test_the_chain_row_rolls_back_with_its_change(engine: AsyncEngine) -> None:
    """Same transaction: a grant whose transaction fails leaves neither the grant nor its chain row."""
    new = grant_service.NewGrant("payments", "fraud", "namespace", PAYMENTS_DB, None, False, "why not", None)
    async with engine.connect() as conn:
        transaction = await conn.begin()
        await grant_service.create_grant(conn, new, actor="tester")
        await transaction.rollback()
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM audit_log"))).scalar_one() == 0
        assert (await conn.execute(text("SELECT count(*) FROM grants"))).scalar_one() == 0
    assert (await _verify(engine)).ok


async def test_verify_gives_no_false_alarm_while_grants_are_being_made(engine: AsyncEngine) -> None:
    """The comparison runs under the append lock, so changes committing meanwhile never show up half."""
    stop = asyncio.Event()

    async def granting() -> int:
        made = 0
        while not stop.is_set():
            async with engine.begin() as conn:
                new = grant_service.NewGrant(
                    "payments", "fraud", "dataset", PAYMENTS_DB, f"payments.t{made}", False, "load", None
                )
                created = await grant_service.create_grant(conn, new, actor="tester")
                if made % 2:
                    await grant_service.revoke_grant(conn, grant_id=created["id"], actor="tester")
            made += 1
        return made

    async def verifying() -> list[audit.VerifyReport]:
        reports = []
        for _ in range(8):
            reports.append(await _verify(engine))
        stop.set()
        return reports

    made, reports = await asyncio.gather(granting(), verifying())
    assert made > 0
    assert all(r.ok for r in reports), [(r.problem, r.mismatches) for r in reports if not r.ok]


def test_catalog_audit_verify_fails_on_deleted_grants(database_url: str, settings: Settings) -> None:
    """The issue's example end to end: `DELETE FROM grant_changes; DELETE FROM grants` as a superuser, and
    the operator's command exits 1 naming the grant instead of saying "intact"."""

    async def run(work: str) -> None:
        engine = create_engine(database_url, pool_size=1)
        try:
            if work == "grant":
                async with engine.begin() as conn:
                    new = grant_service.NewGrant(
                        "payments", "fraud", "namespace", PAYMENTS_DB, None, True, "masked reads", None
                    )
                    await grant_service.create_grant(conn, new, actor="steward")
            else:
                await _superuser(engine, "DELETE FROM grant_changes", "DELETE FROM grants")
        finally:
            await engine.dispose()

    runner = CliRunner()
    asyncio.run(run("grant"))
    intact = runner.invoke(cli, ["audit", "verify", "--database-url", database_url])
    assert intact.exit_code == 0, intact.output
    assert "grants, keys and waivers match it" in " ".join(intact.output.split())
    asyncio.run(run("attack"))
    broken = runner.invoke(cli, ["audit", "verify", "--database-url", database_url])
    assert broken.exit_code == 1, broken.output
    said = " ".join(broken.output.split())
    assert "grant 1 (audit row 1) is missing from the grants table: it was deleted" in said
    assert "disagree with it" in said
    assert "intact:" not in said


async def test_a_policy_reload_is_chained_with_the_files_digests(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    response = await client.post("/api/v1/policy/reload")
    assert response.status_code == 200, response.text
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT actor, details FROM audit_log WHERE action = 'policy.reloaded' ORDER BY seq DESC"
                )
            )
        ).first()
    assert row is not None
    assert row.actor == "admin-token"
    products_yaml = files.resolve_dir(None) / "products.yaml"
    assert row.details["files"]["products.yaml"] == hashlib.sha256(products_yaml.read_bytes()).hexdigest()
    assert "payments" in row.details["products"]


async def test_a_product_reassignment_is_chained(
    settings: Settings, database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    """products.yaml moves a dataset to another product; `scan` reassigns it and the change, which moves
    who may read the dataset, is chained (a first assignment is not: rebuild derives it again)."""
    from catalog.app import create_app
    from tests.conftest import ADMIN_TOKEN

    policies = tmp_path / "policies"
    shutil.copytree(files.DEFAULT_DIR, policies)
    app = create_app(settings.model_copy(update={"policies_dir": policies}), database_url)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://c",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as http,
    ):
        await ingest(http, run_event(job=PAYMENTS_JOB, inputs=[dataset(PAYMENTS_DB, "payments.ledger_view")]))
    async with engine.connect() as conn:
        assert (
            await conn.execute(
                text("SELECT count(*) FROM audit_log WHERE action = 'product_assignment.changed'")
            )
        ).scalar_one() == 0
    yaml_path = policies / "products.yaml"
    yaml_path.write_text(
        yaml_path.read_text().replace(
            "datasets:\n",
            "datasets:\n  - namespace: 'postgres://payments-db.*'\n    name: 'payments\\.ledger_view'\n"
            "    product: ledger\n",
            1,
        )
    )
    app.state.policies.products.reload()
    async with raw_transaction(engine) as raw:
        await scan(raw, app.state.policies)
    async with engine.connect() as conn:
        [details] = (
            (
                await conn.execute(
                    text("SELECT details FROM audit_log WHERE action = 'product_assignment.changed'")
                )
            )
            .scalars()
            .all()
        )
    assert {
        "kind": "dataset",
        "namespace": PAYMENTS_DB,
        "name": "payments.ledger_view",
        "from": "payments",
        "to": "ledger",
    }.items() <= details["changes"][0].items()
    assert (await _verify(engine)).ok


async def test_a_policy_file_edit_is_chained_once_across_processes(
    settings: Settings, database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    """products.yaml is picked up by its mtime, without the reload endpoint: the edit is chained by the
    first process to notice, once, whatever the number of processes."""
    from catalog.app import create_app

    policies = tmp_path / "policies"
    shutil.copytree(files.DEFAULT_DIR, policies)
    apps = [
        create_app(settings.model_copy(update={"policies_dir": policies}), database_url) for _ in range(3)
    ]

    async def changes() -> list[Any]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT details FROM audit_log WHERE action = 'policy.changed' ORDER BY seq")
            )
            return [r.details for r in rows]

    async with (
        apps[0].router.lifespan_context(apps[0]),
        apps[1].router.lifespan_context(apps[1]),
        apps[2].router.lifespan_context(apps[2]),
    ):
        await asyncio.sleep(1.2)
        assert await changes() == []  # start-up is not a change
        products = policies / "products.yaml"
        products.write_text(products.read_text().replace("pix]", "pix, wallet]"))
        async with asyncio.timeout(10):
            while True:
                if await changes():
                    break
                await asyncio.sleep(0.1)
        await asyncio.sleep(2.5)  # every process has looked by now
        [details] = await changes()
    assert details["files"]["products.yaml"] == hashlib.sha256(products.read_bytes()).hexdigest()


def test_upgrading_adopts_the_access_history_made_before_it(database_url: str) -> None:
    """A database whose grants, waivers and keys were made before they were chained: after the upgrade
    `verify` is clean (the history is adopted once), and a later deletion is caught as for new rows."""
    from catalog.db import migrate

    migrate.downgrade(database_url, "0006")
    old_code = (
        # what the previous release wrote: grant rows with their history, a waiver, a key, no chain rows
        "INSERT INTO grants (grantor_product, grantee_product, scope, namespace, name, reason, created_by) "
        f"VALUES ('payments', 'fraud', 'namespace', '{PAYMENTS_DB}', NULL, 'scoring', 'k1'), "
        f"('payments', 'risk', 'dataset', '{PAYMENTS_DB}', 'payments.tx', 'models', 'k1')",
        "INSERT INTO grant_changes (grant_id, action, actor, detail) SELECT id, 'create', 'k1', to_jsonb(g) FROM grants g",
        "UPDATE grants SET revoked_at = now(), revoked_by = 'k2' WHERE id = 2",
        "INSERT INTO grant_changes (grant_id, action, actor, detail) "
        "SELECT id, 'revoke', 'k2', to_jsonb(g) FROM grants g WHERE id = 2",
        "INSERT INTO findings (rule, severity, subject_kind, subject_key, evidence, first_seen, last_seen, status, "
        "waived_by, waiver_reason, waived_until) VALUES ('unencrypted-transfer', 'high', 'dataset', 'x', '{}', "
        "now(), now(), 'waived', 'k3', 'legacy driver', now() + interval '7 days')",
        "INSERT INTO finding_changes (finding_id, action, actor, reason, until) "
        "SELECT id, 'waive', waived_by, waiver_reason, waived_until FROM findings",
        "INSERT INTO api_keys (key_id, secret_hash, name, role, product) "
        "VALUES ('0ld0ld0ld0ld', sha256('s'::bytea), 'old pipeline', 'pipeline', 'payments')",
    )

    async def run(work: str) -> audit.VerifyReport:
        engine = create_engine(database_url, pool_size=1)
        try:
            if work == "old":
                await _superuser(engine, *old_code)
            elif work == "delete":
                await _superuser(engine, "DELETE FROM grants WHERE id = 1")
            return await _verify(engine)
        finally:
            await engine.dispose()

    before = asyncio.run(run("old"))
    assert not before.ok  # what verify would say of it without the adoption
    migrate.upgrade(database_url)
    adopted = asyncio.run(run("check"))
    assert adopted.ok, [m.message for m in adopted.mismatches]
    assert adopted.rows == 5  # two grant creations, a revocation, a waiver, a key
    migrate.upgrade(database_url)  # at head already: nothing appended twice
    assert asyncio.run(run("check")).rows == 5
    after = asyncio.run(run("delete"))
    assert any("grant 1 (audit row 1) is missing" in m.message for m in after.mismatches)
