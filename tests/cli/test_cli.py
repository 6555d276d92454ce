"""The `catalog` command: help, keys, ingest of files/folders/NDJSON/stdin with a summary, rebuild --verify."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import orjson
from sqlalchemy import text
from typer.testing import CliRunner

from catalog.cli import app
from catalog.db.engine import create_engine
from tests.corpus import CORPUS, reject_files
from tests.factories import at, run_event

runner = CliRunner()


def count(url: str, table: str) -> int:
    async def go() -> int:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.connect() as conn:
                return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "migrate", "ingest", "rebuild", "keys"):
        assert command in result.output


def test_keys_create_list_revoke(database_url: str) -> None:
    created = runner.invoke(
        app,
        [
            "keys",
            "create",
            "--name",
            "airflow",
            "--role",
            "pipeline",
            "--product",
            "payments",
            "--database-url",
            database_url,
        ],
    )
    assert created.exit_code == 0, created.output
    token = re.search(r"cat_[0-9a-f]+_\S+", created.stdout)
    assert token is not None
    key_id = token.group(0).split("_")[1]
    listed = runner.invoke(app, ["keys", "list", "--database-url", database_url])
    assert key_id in listed.stdout
    assert token.group(0) not in listed.stdout
    assert runner.invoke(app, ["keys", "revoke", key_id, "--database-url", database_url]).exit_code == 0
    again = runner.invoke(app, ["keys", "revoke", key_id, "--database-url", database_url])
    assert again.exit_code == 1
    bad_role = runner.invoke(
        app, ["keys", "create", "--name", "x", "--role", "god", "--database-url", database_url]
    )
    assert bad_role.exit_code == 2
    assert "role must be one of" in bad_role.output


def test_ingest_folder_ndjson_and_stdin_with_summary(database_url: str, tmp_path: Path) -> None:
    ndjson = tmp_path / "events.ndjson"
    ndjson.write_bytes(b"\n".join(orjson.dumps(run_event(when=at(1, h))) for h in range(4)))
    folder = CORPUS / "events" / "marquez-api-tests"
    stdin_event = orjson.dumps(run_event(when=at(2)))
    result = runner.invoke(
        app, ["ingest", str(folder), str(ndjson), "-", "--database-url", database_url], input=stdin_event
    )
    assert result.exit_code == 0, result.output
    files = len(list(folder.glob("*.json")))
    assert count(database_url, "event_log") >= files + 4 + 1 - 2
    assert "stored" in result.output

    again = runner.invoke(app, ["ingest", str(ndjson), "--database-url", database_url])
    assert again.exit_code == 0
    assert re.search(r"already stored \(duplicates\)\s*│?\s*4", again.output)


def test_ingest_reports_rejected_events_and_exits_1(database_url: str) -> None:
    result = runner.invoke(app, ["ingest", *map(str, reject_files()), "--database-url", database_url])
    assert result.exit_code == 1
    assert "/run/runId" in result.output
    assert count(database_url, "event_log") == 0


def test_rebuild_verify(database_url: str) -> None:
    folder = CORPUS / "events" / "compat-consumer-CLL"
    assert runner.invoke(app, ["ingest", str(folder), "--database-url", database_url]).exit_code == 0
    result = runner.invoke(app, ["rebuild", "--verify", "--database-url", database_url])
    assert result.exit_code == 0, result.output
    assert "identical" in result.output


def test_keys_create_refuses_a_role_and_product_pair_that_could_do_nothing(database_url: str) -> None:
    """Auditor and admin keys act in every product (the policy only knows `auditor@*`, `admin@*`): with a
    product the key would be denied everything, so it is refused, as is a per-product role without one."""
    for role in ("auditor", "admin"):
        refused = runner.invoke(
            app,
            [
                "keys",
                "create",
                "--name",
                "x",
                "--role",
                role,
                "--product",
                "payments",
                "--database-url",
                database_url,
            ],
        )
        assert refused.exit_code == 2, refused.output
        said = " ".join(refused.output.split())
        assert f"the {role} role is cross-product" in said
        assert "leave out --product 'payments'" in said
    lonely = runner.invoke(
        app, ["keys", "create", "--name", "x", "--role", "steward", "--database-url", database_url]
    )
    assert lonely.exit_code == 2, lonely.output
    assert "the steward role acts for one product" in " ".join(lonely.output.split())
    assert count(database_url, "api_keys") == 0  # nothing was stored
    made = runner.invoke(
        app, ["keys", "create", "--name", "a", "--role", "auditor", "--database-url", database_url]
    )
    assert made.exit_code == 0, made.output
