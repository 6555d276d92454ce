"""The built wheel is the product: built from the sources alone, installed (non-editable) into a fresh
venv, its `catalog serve` migrates an empty database with the migrations shipped inside the package and
serves with the default policies shipped inside it — no checkout on the path, run from another directory.

Takes about a minute (a build, a venv, a dependency install from the configured index or pip's cache)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from catalog.db.engine import libpq_dsn
from catalog.db.migrate import head_revisions
from tests.conftest import ADMIN_TOKEN, PgServer, free_port

REPO = Path(__file__).resolve().parents[2]
# Not skipped anywhere: CI runs it with the rest (`make test`); `pytest -m wheel` runs it alone.
pytestmark = pytest.mark.wheel


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, (
        f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


def _clean_env() -> dict[str, str]:
    """No PYTHONPATH (the checkout must not be importable), no CATALOG_* or PG* from the test session."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith(("CATALOG_", "PG"))
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed; its bin/ directory."""
    base = tmp_path_factory.mktemp("wheel")
    # The build context the Dockerfile uses: pyproject, README and the package, nothing else of the checkout.
    source = base / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "catalog", source / "catalog", ignore=shutil.ignore_patterns("__pycache__"))
    env = _clean_env()
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--wheel-dir",
            str(base / "dist"),
            str(source),
        ],
        base,
        env,
    )
    (wheel,) = (base / "dist").glob("lineage_catalog-*.whl")
    _run([sys.executable, "-m", "venv", str(base / "venv")], base, env)
    bin_dir = base / "venv" / "bin"
    _run(
        [
            str(bin_dir / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(wheel),
        ],
        base,
        env,
        timeout=600,
    )
    return bin_dir


def test_the_wheel_carries_migrations_and_policies_and_no_checkout_is_imported(installed: Path) -> None:
    script = (
        "import catalog, catalog.db.migrate as m, catalog.policy.files as f;"
        "print(catalog.__file__); print(*m.head_revisions()); print(*sorted(p.name for p in f.DEFAULT_DIR.iterdir()))"
    )
    where, heads, policies = _run(
        [str(installed / "python"), "-c", script], installed, _clean_env()
    ).splitlines()
    assert Path(where).is_relative_to(installed.parent), where
    assert not Path(where).is_relative_to(REPO)
    assert heads.split() == list(head_revisions())
    assert policies.split() == sorted(p.name for p in (REPO / "catalog" / "policies").iterdir())


@pytest.fixture
def empty_database(pg_server: PgServer) -> Iterator[str]:
    """A database never migrated (not a copy of the migrated template)."""
    name = f"w_{secrets.token_hex(6)}"
    pg_server.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        pg_server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_catalog_serve_from_the_wheel_migrates_and_serves(
    installed: Path, pg_server: PgServer, empty_database: str, tmp_path: Path
) -> None:
    port = free_port()
    env = _clean_env()
    env.update(
        CATALOG_HOME=str(tmp_path / "home"),
        CATALOG_PORT=str(port),
        CATALOG_LOG_FORMAT="console",
        CATALOG_ADMIN_TOKEN=ADMIN_TOKEN,
        CATALOG_DATABASE_URL=pg_server.service_url_for(empty_database),
        CATALOG_MIGRATION_DATABASE_URL=pg_server.url_for(empty_database),
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(installed / "catalog"), "serve"],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 90
            health = None
            while health is None:
                assert process.poll() is None, (
                    f"catalog serve exited {process.returncode}:\n{log.read_text()}"
                )
                assert time.monotonic() < deadline, f"not healthy after 90 s:\n{log.read_text()}"
                try:
                    health = httpx.get(f"{base}/health", timeout=2)
                except httpx.TransportError:
                    time.sleep(0.2)
            assert health.status_code == 200, health.text
            ready = httpx.get(f"{base}/ready", timeout=10)
            assert ready.status_code == 200, ready.text
            assert ready.json()["migrations"]["current"] == sorted(head_revisions())
            # The packaged policy decides: the bootstrap admin may list namespaces, no key may not.
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            assert httpx.get(f"{base}/api/v1/namespaces", headers=headers, timeout=10).status_code == 200
            assert httpx.get(f"{base}/api/v1/namespaces", timeout=10).status_code == 401
            # the web UI's build and the docs' vendored assets are in the wheel too
            ui = httpx.get(f"{base}/ui/", timeout=10)
            assert ui.status_code == 200, ui.text
            assert '<div id="root">' in ui.text
            assert httpx.get(f"{base}/ui/assets/index.js", timeout=10).status_code == 200
            assert httpx.get(f"{base}/static/vendor/swagger-ui-bundle.js", timeout=10).status_code == 200
        finally:
            process.terminate()
            process.wait(timeout=60)
    with psycopg.connect(libpq_dsn(pg_server.url_for(empty_database))) as conn:
        rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert sorted(r[0] for r in rows) == sorted(head_revisions())
