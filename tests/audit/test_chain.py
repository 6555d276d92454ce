"""The audit log: appends chain, concurrent appenders do not fork, the database refuses rewrites, and
`verify` names the first row an attacker (a superuser who disables the trigger) edited, deleted, inserted
or reordered."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.audit import service as audit
from catalog.audit.chain import GENESIS, canonical, row_hash
from catalog.audit.signing import load_kek


async def _append(engine: AsyncEngine, n: int) -> None:
    for i in range(n):
        async with engine.begin() as conn:
            await audit.record(
                conn,
                action="test.action",
                actor="tester",
                subject=f"thing:{i}",
                details={"i": i, "note": "ünïcode ✓", "nested": {"b": [1, 2.5, None], "a": True}},
            )


async def _attack(engine: AsyncEngine, *statements: str) -> None:
    """Run SQL as a superuser with the append-only trigger switched off, as an intruder would."""
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        for statement in statements:
            await conn.execute(text(statement))
        await conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))


async def _verify(engine: AsyncEngine) -> audit.VerifyReport:
    async with engine.connect() as conn:
        return await audit.verify(conn, page=3)  # small pages: the walk crosses page boundaries


async def test_appends_form_an_intact_chain(engine: AsyncEngine) -> None:
    await _append(engine, 7)
    report = await _verify(engine)
    assert report.ok, report.problem
    assert (report.rows, report.head_seq) == (7, 7)
    async with engine.connect() as conn:
        first = (await conn.execute(text("SELECT prev_hash FROM audit_log WHERE seq = 1"))).scalar_one()
        assert bytes(first) == GENESIS
        assert (await audit.head(conn)).hash == report.head_hash


async def test_a_rolled_back_transaction_leaves_no_row_and_no_gap(engine: AsyncEngine) -> None:
    await _append(engine, 2)
    async with engine.connect() as conn:
        transaction = await conn.begin()
        await audit.record(conn, action="x", actor=None, subject="s", details={})
        await transaction.rollback()  # the caller's work failed
    await _append(engine, 1)
    report = await _verify(engine)
    assert report.ok
    assert report.head_seq == 3


async def test_concurrent_appenders_do_not_fork_the_chain(engine: AsyncEngine) -> None:
    async def writer(k: int) -> None:
        for i in range(10):
            async with engine.begin() as conn:
                await audit.record(conn, action="race", actor=f"w{k}", subject=f"{k}:{i}", details={})

    await asyncio.gather(*(writer(k) for k in range(4)))
    report = await _verify(engine)
    assert report.ok, report.problem
    assert report.head_seq == 40


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log WHERE seq = 1", "TRUNCATE audit_log"],
)
async def test_the_database_refuses_to_rewrite_history(engine: AsyncEngine, statement: str) -> None:
    await _append(engine, 1)
    with pytest.raises(DBAPIError, match="append-only"):
        async with engine.begin() as conn:
            await conn.execute(text(statement))
    assert (await _verify(engine)).ok


async def test_an_edited_row_is_named(engine: AsyncEngine) -> None:
    await _append(engine, 6)
    await _attack(engine, """UPDATE audit_log SET details = '{"i": 999}' WHERE seq = 4""")
    problem = (await _verify(engine)).problem
    assert problem is not None
    assert (problem.seq, problem.kind) == (4, "edited")


async def test_an_edit_with_a_recomputed_hash_is_still_caught(engine: AsyncEngine) -> None:
    await _append(engine, 6)
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT recorded_at, prev_hash FROM audit_log WHERE seq = 3"))).one()
    forged = row_hash(
        bytes(row.prev_hash),
        canonical(
            recorded_at=row.recorded_at,
            action="test.action",
            actor="mallory",
            subject="thing:2",
            details_json="{}",
        ),
    )
    await _attack(
        engine,
        f"UPDATE audit_log SET actor = 'mallory', details = '{{}}', hash = '\\x{forged.hex()}' WHERE seq = 3",
    )
    problem = (await _verify(engine)).problem
    assert problem is not None
    assert (problem.seq, problem.kind) == (3, "edited")


async def test_a_deleted_row_is_named(engine: AsyncEngine) -> None:
    await _append(engine, 6)
    await _attack(engine, "DELETE FROM audit_log WHERE seq = 4")
    problem = (await _verify(engine)).problem
    assert problem is not None
    assert (problem.seq, problem.kind) == (4, "deleted")


async def test_a_deletion_hidden_by_renumbering_is_caught(engine: AsyncEngine) -> None:
    await _append(engine, 6)
    await _attack(
        engine, "DELETE FROM audit_log WHERE seq = 2", "UPDATE audit_log SET seq = seq - 1 WHERE seq > 2"
    )
    problem = (await _verify(engine)).problem
    assert problem is not None
    # Row 1 is the last row still chained correctly; the message says a row after it is missing.
    assert (problem.seq, problem.kind) == (1, "edited")
    assert "deleted" in problem.message


async def test_an_inserted_row_is_named(engine: AsyncEngine) -> None:
    await _append(engine, 6)
    # A careful intruder: makes room at seq 3 and chains the forged row correctly onto row 2.
    async with engine.connect() as conn:
        prev = bytes((await conn.execute(text("SELECT hash FROM audit_log WHERE seq = 2"))).scalar_one())
        at = (await conn.execute(text("SELECT recorded_at FROM audit_log WHERE seq = 2"))).scalar_one()
    forged = row_hash(
        prev,
        canonical(recorded_at=at, action="grant.created", actor="mallory", subject="x", details_json="{}"),
    )
    await _attack(
        engine,
        "UPDATE audit_log SET seq = seq + 100 WHERE seq >= 3",
        "UPDATE audit_log SET seq = seq - 99 WHERE seq >= 103",
        "INSERT INTO audit_log (seq, recorded_at, action, actor, subject, details, prev_hash, hash) "
        f"VALUES (3, '{at.isoformat()}', 'grant.created', 'mallory', 'x', '{{}}', "
        f"'\\x{prev.hex()}', '\\x{forged.hex()}')",
    )
    problem = (await _verify(engine)).problem
    assert problem is not None
    assert (problem.seq, problem.kind) == (3, "inserted")


async def test_reordered_rows_are_named(engine: AsyncEngine) -> None:
    await _append(engine, 6)
    await _attack(
        engine,
        "UPDATE audit_log SET seq = 100 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = 4",
        "UPDATE audit_log SET seq = 4 WHERE seq = 100",
    )
    problem = (await _verify(engine)).problem
    assert problem is not None
    assert (problem.seq, problem.kind) == (3, "reordered")


async def test_a_cut_off_tail_is_caught_by_the_signed_checkpoint(engine: AsyncEngine, tmp_path: Path) -> None:
    kek = load_kek(tmp_path, "")
    await _append(engine, 4)
    async with engine.begin() as conn:
        checkpointed = await audit.checkpoint(conn, kek)
    assert checkpointed is not None
    assert (await _verify(engine)).ok
    await _attack(engine, f"DELETE FROM audit_log WHERE seq >= {checkpointed.seq - 1}")
    problem = (await _verify(engine)).problem
    assert problem is not None
    assert (problem.seq, problem.kind) == (checkpointed.seq - 1, "deleted")


@pytest.mark.parametrize(
    ("statements", "named"),
    [
        (["""UPDATE audit_log SET details = '{"i": 999}' WHERE seq = 4"""], "row 4 (edited)"),
        (["DELETE FROM audit_log WHERE seq = 4"], "row 4 (deleted)"),
        (
            [
                "UPDATE audit_log SET seq = 100 WHERE seq = 3",
                "UPDATE audit_log SET seq = 3 WHERE seq = 4",
                "UPDATE audit_log SET seq = 4 WHERE seq = 100",
            ],
            "row 3 (reordered)",
        ),
    ],
)
def test_catalog_audit_verify_names_the_first_bad_row(
    database_url: str, statements: list[str], named: str
) -> None:
    """The operator's command, end to end: intact chain exits 0; after tampering it exits 1 naming the row."""
    from typer.testing import CliRunner

    from catalog.cli import app
    from catalog.db.engine import create_engine

    async def run(work: str) -> None:
        engine = create_engine(database_url, pool_size=1)
        try:
            if work == "append":
                await _append(engine, 6)
            else:
                await _attack(engine, *statements)
        finally:
            await engine.dispose()

    runner = CliRunner()
    asyncio.run(run("append"))
    intact = runner.invoke(app, ["audit", "verify", "--database-url", database_url])
    assert intact.exit_code == 0, intact.output
    assert "audit chain intact" in intact.output
    asyncio.run(run("attack"))
    broken = runner.invoke(app, ["audit", "verify", "--database-url", database_url])
    assert broken.exit_code == 1, broken.output
    assert f"audit chain broken at {named}" in " ".join(broken.output.split())


async def _as_role(engine: AsyncEngine, role: str, statement: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(f"SET LOCAL ROLE {role}"))
        await conn.execute(text(statement))


async def test_an_application_role_cannot_rewrite_history_even_with_table_grants(engine: AsyncEngine) -> None:
    """The trigger, not only grants, holds: a non-owner role granted every privilege still cannot
    UPDATE or DELETE audit rows, nor switch the trigger off."""
    await _append(engine, 2)
    role = f"catalog_app_{secrets.token_hex(4)}"  # roles are cluster-wide: unique per test run
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE ROLE {role} NOLOGIN"))
        await conn.execute(text(f"GRANT ALL ON audit_log TO {role}"))
    try:
        for statement in (
            "UPDATE audit_log SET actor = 'mallory' WHERE seq = 1",
            "DELETE FROM audit_log WHERE seq = 2",
            "ALTER TABLE audit_log DISABLE TRIGGER USER",
        ):
            with pytest.raises(DBAPIError, match=r"append-only|must be owner"):
                await _as_role(engine, role, statement)
        async with engine.begin() as conn:
            await conn.execute(text(f"SET LOCAL ROLE {role}"))
            await audit.record(conn, action="test.action", actor="app", subject="ok", details={})
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"REVOKE ALL ON audit_log FROM {role}"))
            await conn.execute(text(f"DROP ROLE {role}"))
    assert (await _verify(engine)).ok
