"""`catalog serve` as a real process with the embedded PostgreSQL: SIGTERM and SIGINT stop the server it
started; a server orphaned by a SIGKILLed `catalog serve` is taken over by the next start and stopped
when that one ends."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from catalog.db.embedded import EmbeddedPostgres
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]


class Serve:
    """One `python -m catalog.cli serve` process on a free port with its own CATALOG_HOME."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CATALOG_", "PG"))}
        env.update(
            CATALOG_HOME=str(home),
            CATALOG_PORT=str(self.port),
            CATALOG_LOG_FORMAT="console",
            PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "clients/python/src")]),
        )
        self.log = (home.parent / f"serve-{self.port}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "catalog.cli", "serve"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            # As from a terminal: a background job inherits SIGINT ignored, and Python keeps it so.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )

    def wait_healthy(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"catalog serve exited {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"catalog serve not healthy after {timeout} s:\n{self.output()}")

    def signal(self, sig: signal.Signals, timeout: float = 60) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture
def home() -> Iterator[Path]:
    """A 0755 directory under /tmp (reachable for the server account when root): no relocation."""
    base = Path(tempfile.mkdtemp(prefix="catalog-serve-test-"))
    base.chmod(0o755)
    yield base / "home"
    EmbeddedPostgres(base / "home").destroy()
    shutil.rmtree(base, ignore_errors=True)


def postmaster_pid(home: Path) -> int:
    return int((EmbeddedPostgres(home).data_dir / "postmaster.pid").read_text().split()[0])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def serve_until_healthy(home: Path, started: list[Serve]) -> Serve:
    serve = Serve(home)
    started.append(serve)
    serve.wait_healthy()
    return serve


@pytest.fixture
def started() -> Iterator[list[Serve]]:
    processes: list[Serve] = []
    yield processes
    for serve in processes:
        serve.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_embedded_postgres_and_the_next_start_begins_afresh(
    home: Path, started: list[Serve], sig: signal.Signals
) -> None:
    first = serve_until_healthy(home, started)
    pid = postmaster_pid(home)
    assert alive(pid)
    assert "serving as role catalog_app" in first.output()  # not as the superuser that migrated

    # SIGTERM: 128 + 15, as a shell reports a process ended by it; uvicorn.run() swallows the
    # KeyboardInterrupt of SIGINT, so that one ends normally.
    assert first.signal(sig) == (143 if sig == signal.SIGTERM else 0), first.output()
    assert not alive(pid), f"the postmaster (pid {pid}) outlived `catalog serve`:\n{first.output()}"
    assert not (EmbeddedPostgres(home).data_dir / "postmaster.pid").exists()

    second = serve_until_healthy(home, started)
    second_pid = postmaster_pid(home)
    assert second_pid != pid  # started afresh, nothing adopted
    assert "took over" not in second.output()
    second.signal(sig)
    assert not alive(second_pid), second.output()


def test_a_server_orphaned_by_sigkill_is_taken_over_and_stopped_by_the_next_start(
    home: Path, started: list[Serve]
) -> None:
    first = serve_until_healthy(home, started)
    orphan = postmaster_pid(home)
    assert first.signal(signal.SIGKILL) == -signal.SIGKILL
    assert alive(orphan)  # nothing could stop it: SIGKILL runs no code

    second = serve_until_healthy(home, started)
    assert postmaster_pid(home) == orphan  # reused (it is our cluster), and now second's to stop
    assert f"took over the embedded PostgreSQL (pid {orphan})" in second.output()
    assert second.signal(signal.SIGTERM) == 128 + signal.SIGTERM
    assert not alive(orphan), second.output()


def test_a_command_beside_a_running_serve_leaves_the_server_to_it(home: Path, started: list[Serve]) -> None:
    serve = serve_until_healthy(home, started)
    pid = postmaster_pid(home)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CATALOG_", "PG"))}
    env.update(CATALOG_HOME=str(home), PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-m", "catalog.cli", "keys", "list"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert alive(pid)  # the command did not stop the server `catalog serve` is using
    assert httpx.get(f"http://127.0.0.1:{serve.port}/health", timeout=5).status_code == 200
    assert serve.signal(signal.SIGTERM) == 128 + signal.SIGTERM
    assert not alive(pid), serve.output()
