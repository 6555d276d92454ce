"""What the CLI and the service print when read by a machine (a pipe, a log collector): nothing wrapped
or cut at 80 columns, and INFO kept for what an operator acts on (no Casbin model dump at start)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import orjson

from catalog.auth.service import create_key
from catalog.db.engine import create_engine

REPO = Path(__file__).resolve().parents[2]
LONG_NAME = "airflow-payments-" + "nightly-settlement-reconciliation-" * 4 + "end"


def piped(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """Run `catalog ARGS` with stdout and stderr piped (not a terminal) and no COLUMNS set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CATALOG_", "PG")) and k != "COLUMNS"}
    env.update(CATALOG_HOME=str(home), PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "catalog.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_keys_list_is_not_wrapped_when_piped(database_url: str, tmp_path: Path) -> None:
    async def make() -> str:
        engine = create_engine(database_url, pool_size=1)
        try:
            async with engine.begin() as conn:
                created = await create_key(conn, name=LONG_NAME, role="pipeline", product="payments")
                return created.key_id
        finally:
            await engine.dispose()

    key_id = asyncio.run(make())
    listed = piped("keys", "list", "--database-url", database_url, home=tmp_path)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if key_id in line)
    assert LONG_NAME in row, listed.stdout  # whole, on the key's own line
    assert "…" not in listed.stdout


def test_messages_are_not_wrapped_when_piped(database_url: str, tmp_path: Path) -> None:
    unknown = "k" * 150
    revoked = piped("keys", "revoke", unknown, "--database-url", database_url, home=tmp_path)
    assert revoked.returncode == 1
    assert f"error: no active key with id '{unknown}'" in revoked.stderr.splitlines()


def test_startup_logs_no_casbin_model_at_info(tmp_path: Path) -> None:
    """The app factory builds the enforcer; what it logs at INFO is one JSON object a line, none of it
    Casbin's model (pycasbin prints six INFO lines of it while building an enforcer)."""
    script = (
        "from catalog.logs import configure_logging\n"
        "configure_logging('INFO', 'json')\n"
        "from catalog.app import create_app\n"
        "from catalog.config import Settings\n"
        f"create_app(Settings(home={str(tmp_path)!r}), 'postgresql://unused@/x')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALOG_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    started = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert started.returncode == 0, started.stderr
    lines = [line for line in started.stderr.splitlines() if line.strip()]
    records = [orjson.loads(line) for line in lines]  # every line a JSON object: nothing printed raw
    assert not [r for r in records if r["logger"].startswith("casbin")], started.stderr
    assert not [line for line in lines if "Model:" in line or "r.r:" in line]
