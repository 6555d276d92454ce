"""The unanchored tail: the service checkpoints new rows by itself (safely from several processes),
`verify` says how many rows follow the last checkpoint, and a checkpoint kept outside the database
(`catalog audit checkpoint --out`) catches a cut-off or rewritten chain even after a superuser deleted
the database's own checkpoints."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from catalog.app import create_app
from catalog.audit import service as audit
from catalog.audit.chain import GENESIS, canonical, row_hash
from catalog.audit.checkpointer import checkpoint_if_behind
from catalog.audit.signing import load_kek
from catalog.cli import app as cli
from catalog.config import Settings
from catalog.db.engine import create_engine

runner = CliRunner()


async def _append(engine: AsyncEngine, n: int, tag: str = "t") -> None:
    for i in range(n):
        async with engine.begin() as conn:
            await audit.record(
                conn, action="test.action", actor="tester", subject=f"{tag}:{i}", details={"i": i}
            )


async def _counts(engine: AsyncEngine) -> tuple[int, int, int]:
    """(head seq, newest checkpoint seq, number of checkpoints)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT coalesce((SELECT max(seq) FROM audit_log), 0) AS head, "
                    "coalesce((SELECT max(seq) FROM audit_checkpoints), 0) AS last, "
                    "(SELECT count(*) FROM audit_checkpoints) AS n"
                )
            )
        ).one()
    return row.head, row.last, row.n


async def _caught_up(engine: AsyncEngine) -> None:
    """Wait (at most 10 s) until the newest row is checkpointed."""
    async with asyncio.timeout(10):
        while True:
            head, last, _ = await _counts(engine)
            if head > 0 and last == head:
                return
            await asyncio.sleep(0.05)


async def test_service_processes_checkpoint_new_rows_by_themselves(
    settings: Settings, database_url: str, engine: AsyncEngine
) -> None:
    """Two service processes on one database, checkpointing every 0.1 s: the head is signed soon after
    new rows arrive, never twice, and the chain verifies with nothing left unanchored."""
    fast = settings.model_copy(update={"audit_checkpoint_seconds": 0.1})
    apps = [create_app(fast, database_url) for _ in range(2)]
    async with apps[0].router.lifespan_context(apps[0]), apps[1].router.lifespan_context(apps[1]):
        await _append(engine, 3)
        await _caught_up(engine)
        await _append(engine, 4, "later")
        await _caught_up(engine)
        await asyncio.sleep(0.4)  # rounds with nothing new sign nothing
        head, last, checkpoints = await _counts(engine)
    assert last == head
    async with engine.connect() as conn:
        distinct = (
            await conn.execute(text("SELECT count(DISTINCT seq) FROM audit_checkpoints"))
        ).scalar_one()
    assert distinct == checkpoints <= 4  # a few rounds at most, one row each
    async with engine.connect() as conn:
        report = await audit.verify(conn)
    assert report.ok, report.problem
    assert (report.anchored_seq, report.unanchored) == (head, 0)


async def test_the_default_interval_is_a_minute_and_zero_turns_it_off(
    settings: Settings, database_url: str, engine: AsyncEngine
) -> None:
    assert Settings().audit_checkpoint_seconds == 60.0
    off = settings.model_copy(update={"audit_checkpoint_seconds": 0})
    app = create_app(off, database_url)
    async with app.router.lifespan_context(app):
        await _append(engine, 2)
        await asyncio.sleep(0.3)
    assert (await _counts(engine))[2] == 0


async def test_one_checkpointer_at_a_time(engine: AsyncEngine, tmp_path: Path) -> None:
    """Concurrent rounds (as from many processes) produce one checkpoint, no error."""
    kek = load_kek(tmp_path, "")
    await _append(engine, 2)
    results = await asyncio.gather(*(checkpoint_if_behind(engine, kek) for _ in range(6)))
    heads = {r.seq for r in results if r is not None}
    assert len(heads) == 1
    assert (await _counts(engine))[2] == 1
    assert await checkpoint_if_behind(engine, kek) is None  # nothing new: nothing signed


async def test_verify_counts_the_rows_after_the_last_checkpoint(engine: AsyncEngine, tmp_path: Path) -> None:
    kek = load_kek(tmp_path, "")
    await _append(engine, 4)
    async with engine.connect() as conn:
        assert (await audit.verify(conn)).unanchored == 4
    async with engine.begin() as conn:
        checkpointed = await audit.checkpoint(conn, kek)
    assert checkpointed is not None
    await _append(engine, 3, "after")
    async with engine.connect() as conn:
        report = await audit.verify(conn)
    assert report.ok
    assert (report.anchored_seq, report.unanchored) == (checkpointed.seq, 3)


async def _superuser(engine: AsyncEngine, *statements: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        await conn.execute(text("ALTER TABLE audit_checkpoints DISABLE TRIGGER USER"))
        for statement in statements:
            await conn.execute(text(statement))
        await conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))
        await conn.execute(text("ALTER TABLE audit_checkpoints ENABLE TRIGGER USER"))


async def _rechain(engine: AsyncEngine) -> None:
    """What a thorough intruder does after deleting a row: renumber and recompute every hash, so the
    chain in the database is valid again from genesis."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT seq, recorded_at, action, actor, subject, details::text AS d FROM audit_log ORDER BY seq"
                )
            )
        ).all()
    prev, statements = GENESIS, []
    for position, r in enumerate(rows, start=1):
        digest = row_hash(
            prev,
            canonical(
                recorded_at=r.recorded_at, action=r.action, actor=r.actor, subject=r.subject, details_json=r.d
            ),
        )
        statements.append(
            f"UPDATE audit_log SET seq = {position}, prev_hash = '\\x{prev.hex()}', hash = '\\x{digest.hex()}' "
            f"WHERE seq = {r.seq}"
        )
        prev = digest
    await _superuser(engine, *statements)


def _cli_db(database_url: str, work: str, n: int = 0, statements: tuple[str, ...] = ()) -> None:
    async def run() -> None:
        engine = create_engine(database_url, pool_size=1)
        try:
            if work == "append":
                await _append(engine, n, f"batch{n}")
            elif work == "attack":
                await _superuser(engine, *statements)
            else:
                await _rechain(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())


def _said(result: object) -> str:
    return " ".join(str(getattr(result, "output", "")).split())


def test_an_external_checkpoint_catches_a_cut_tail_the_database_forgot(
    database_url: str, tmp_path: Path
) -> None:
    """The auditor keeps the checkpoint file; the intruder deletes the tail and every checkpoint in the
    database. `verify` alone cannot tell (a shorter chain is a valid chain); with the file it can."""
    home = ["--database-url", database_url, "--home", str(tmp_path / "home")]
    _cli_db(database_url, "append", 5)
    kept = tmp_path / "checkpoint-5.json"
    made = runner.invoke(cli, ["audit", "checkpoint", "--out", str(kept), *home])
    assert made.exit_code == 0, made.output
    document = json.loads(kept.read_text())
    head = document["seq"]  # 5 rows, plus the signing key's creation
    assert document["chain"] == "catalog-audit"
    assert "BEGIN PUBLIC KEY" in document["publicKeyPem"]
    _cli_db(database_url, "append", 2)

    good = runner.invoke(cli, ["audit", "verify", "--checkpoint", str(kept), *home])
    assert good.exit_code == 0, good.output
    assert "1 external checkpoint(s) match" in _said(good)
    assert "unanchored 2" in good.output
    assert f"2 row(s) after the last checkpoint (row {head})" in _said(good)

    _cli_db(
        database_url,
        "attack",
        statements=(f"DELETE FROM audit_log WHERE seq >= {head - 1}", "DELETE FROM audit_checkpoints"),
    )
    blind = runner.invoke(cli, ["audit", "verify", *home])
    assert blind.exit_code == 0, blind.output  # documented: this is what the file is for
    assert "0 signed checkpoint(s)" in _said(blind)
    caught = runner.invoke(cli, ["audit", "verify", "--checkpoint", str(kept), *home])
    assert caught.exit_code == 1, caught.output
    assert (
        f"audit chain broken at row {head - 1} (deleted): rows {head - 1}..{head} were deleted: the checkpoint "
        f"in {kept} covers row {head}" in _said(caught)
    )


def test_an_external_checkpoint_catches_a_rewritten_chain(database_url: str, tmp_path: Path) -> None:
    home = ["--database-url", database_url, "--home", str(tmp_path / "home")]
    _cli_db(database_url, "append", 6)
    kept = tmp_path / "cp.json"
    assert runner.invoke(cli, ["audit", "checkpoint", "--out", str(kept), *home]).exit_code == 0
    _cli_db(database_url, "append", 3)
    _cli_db(
        database_url,
        "attack",
        statements=("DELETE FROM audit_log WHERE seq = 2", "DELETE FROM audit_checkpoints"),
    )
    _cli_db(database_url, "rechain")
    assert runner.invoke(cli, ["audit", "verify", *home]).exit_code == 0  # valid chain, from genesis
    caught = runner.invoke(cli, ["audit", "verify", "--checkpoint", str(kept), *home])
    assert caught.exit_code == 1, caught.output
    seq = json.loads(kept.read_text())["seq"]
    assert f"row {seq} differs from the checkpoint in {kept}" in _said(caught)


def test_a_forged_or_broken_checkpoint_file_is_refused(database_url: str, tmp_path: Path) -> None:
    home = ["--database-url", database_url, "--home", str(tmp_path / "home")]
    _cli_db(database_url, "append", 3)
    kept = tmp_path / "cp.json"
    assert runner.invoke(cli, ["audit", "checkpoint", "--out", str(kept), *home]).exit_code == 0
    document = json.loads(kept.read_text())
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({**document, "seq": document["seq"] - 1}))
    refused = runner.invoke(cli, ["audit", "verify", "--checkpoint", str(forged), *home])
    assert refused.exit_code == 1, refused.output
    assert f"the checkpoint in {forged} has an invalid signature" in _said(refused)
    junk = tmp_path / "junk.json"
    junk.write_text(json.dumps({"chain": "catalog-audit", "seq": 1}))
    unreadable = runner.invoke(cli, ["audit", "verify", "--checkpoint", str(junk), *home])
    assert unreadable.exit_code == 2, unreadable.output
    assert "member 'publicKeyPem' is missing" in _said(unreadable)


def test_the_empty_log_writes_no_checkpoint_file(database_url: str, tmp_path: Path) -> None:
    out = tmp_path / "none.json"
    result = runner.invoke(
        cli,
        ["audit", "checkpoint", "--out", str(out), "--database-url", database_url, "--home", str(tmp_path)],
    )
    assert result.exit_code == 1, result.output
    assert "nothing to checkpoint" in _said(result)
    assert not out.exists()
