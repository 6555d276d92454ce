"""The projector behind the accepting path: a failing event is set aside and the rest goes on; a lost
connection, a kill -9 mid-batch and the death of the projecting service process lose nothing and apply
nothing twice (the projection's fingerprint equals a rebuild's)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.config import Settings
from catalog.db.engine import libpq_dsn
from catalog.ingest.projector import catch_up, retry_set_aside
from catalog.policies_in_force import Policies
from tests.conftest import ADMIN_TOKEN, free_port
from tests.factories import at, dataset, run_event
from tests.ingest.projector_helpers import (
    append_backlog,
    asynchronous_settings,
    gone,
    no_audit_row_twice,
    projector_backend,
    projector_status,
    rebuild_matches,
    stream,
    until_a_step_is_in_flight,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return asynchronous_settings(tmp_path)


async def test_a_failing_event_is_set_aside_visible_and_retried_after_a_fix(
    client: httpx.AsyncClient, database_url: str, engine: AsyncEngine
) -> None:
    # A constraint the projection breaks for one job only (standing in for a bug or a bad row).
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as conn:
        conn.execute("ALTER TABLE jobs ADD CONSTRAINT ck_test_no_explode CHECK (name <> 'explode')")
    events = [
        run_event(
            when=at(2, 1, i),
            job=("airflow", "explode" if i == 2 else f"fine_{i}"),
            outputs=[dataset("bigquery", f"mart.t{i}")],
        )
        for i in range(5)
    ]
    answer = await client.post("/api/v1/lineage/batch?wait=projected", content=orjson.dumps(events))
    assert answer.status_code == 200, answer.text
    assert answer.json()["projected"] is True  # the projector went past it: nothing stalled
    for i in (0, 1, 3, 4):
        assert (await client.get(f"/api/v1/namespaces/airflow/jobs/fine_{i}")).status_code == 200
    assert (await client.get("/api/v1/namespaces/airflow/jobs/explode")).status_code == 404
    state = (await client.get("/api/v1/ingest/status")).json()
    assert state["setAside"] == 1
    assert "ck_test_no_explode" in state["lastError"]
    assert state["lagEvents"] == 0
    assert state["position"] == state["head"] == answer.json()["position"]

    # Still failing: it stays aside, its attempts counted.
    assert await retry_set_aside(engine, Policies.load()) == (0, 1)
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as conn:
        conn.execute("ALTER TABLE jobs DROP CONSTRAINT ck_test_no_explode")  # the fix
    assert await retry_set_aside(engine, Policies.load()) == (1, 0)
    assert (await client.get("/api/v1/namespaces/airflow/jobs/explode")).status_code == 200
    assert (await client.get("/api/v1/ingest/status")).json()["setAside"] == 0


async def test_several_bad_events_in_a_large_batch_are_set_aside_and_only_they(
    client: httpx.AsyncClient, database_url: str
) -> None:
    # The batch is folded in halves down to the failing events: every other event must land, once.
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as conn:
        conn.execute("ALTER TABLE jobs ADD CONSTRAINT ck_test_no_boom CHECK (name NOT LIKE 'boom%')")
    bad = {0, 17, 18, 33, 63}
    events = [
        run_event(
            when=at(3, i // 60, i % 60),
            job=("airflow", f"boom_{i}" if i in bad else f"calm_{i}"),
            outputs=[dataset("bigquery", f"mart.h{i}")],
        )
        for i in range(64)
    ]
    answer = await client.post("/api/v1/lineage/batch?wait=projected", content=orjson.dumps(events))
    assert answer.status_code == 200, answer.text
    assert answer.json()["projected"] is True
    state = (await client.get("/api/v1/ingest/status")).json()
    assert state["setAside"] == len(bad)
    with psycopg.connect(libpq_dsn(database_url)) as conn:
        jobs = {
            r[0] for r in conn.execute("SELECT name FROM jobs WHERE name LIKE 'calm%' OR name LIKE 'boom%'")
        }
        aside = conn.execute("SELECT count(*) FROM projection_set_aside").fetchone()
        runs = conn.execute("SELECT count(*) FROM runs").fetchone()
    assert jobs == {f"calm_{i}" for i in range(64) if i not in bad}
    assert aside == (len(bad),)
    assert runs == (64 - len(bad),)


async def test_the_status_needs_a_key(client: httpx.AsyncClient) -> None:
    answer = await client.get("/api/v1/ingest/status", headers={"Authorization": ""})
    assert answer.status_code == 401


async def test_a_connection_lost_mid_step_rolls_back_and_the_projector_comes_back(
    client: httpx.AsyncClient, database_url: str, engine: AsyncEngine
) -> None:
    answer = await client.post("/api/v1/lineage/batch", content=orjson.dumps(stream(60)))
    head = answer.json()["position"]
    with psycopg.connect(libpq_dsn(database_url)) as blocker:
        # Hold the position row: the projector's next step waits inside its transaction.
        blocker.execute("SELECT position FROM projector_state FOR UPDATE")
        killed = 0
        for _ in range(3):  # the projector's own connection, each time it comes back
            deadline = time.monotonic() + 15
            while (backend := projector_backend(database_url)) is None or not backend["in_transaction"]:
                assert time.monotonic() < deadline, "the projector did not start a step"
                await asyncio.sleep(0.05)
            with psycopg.connect(libpq_dsn(database_url), autocommit=True) as killer:
                killer.execute("SELECT pg_terminate_backend(%s)", (backend["pid"],))
            killed += 1
        blocker.rollback()
    assert killed == 3
    # Read-your-writes by position: served once the projector (back on a new connection) passed it.
    read = await client.get("/api/v1/namespaces/bigquery/datasets", headers={"Catalog-Position": str(head)})
    assert read.status_code == 200
    assert int(read.headers["Catalog-Projected"]) >= head
    state = await projector_status(engine)
    assert state.position == head
    assert state.set_aside == 0
    await no_audit_row_twice(engine)
    await rebuild_matches(engine)


def _env(database_url: str, service_url: str, home: Path) -> dict[str, str]:
    return dict(
        os.environ,
        CATALOG_DATABASE_URL=service_url,
        CATALOG_MIGRATION_DATABASE_URL=database_url,
        CATALOG_HOME=str(home),
        CATALOG_LOG_LEVEL="WARNING",
        CATALOG_ADMIN_TOKEN=ADMIN_TOKEN,
        CATALOG_PROJECTOR_STANDBY_SECONDS="0.2",
        CATALOG_INGEST_DEFAULT_WAIT="logged",
        CATALOG_PROJECTOR_PROCESS="true",  # as `catalog serve` runs by default (the suite's apps use a thread)
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "clients/python/src")]),
    )


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "catalog.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=20)


async def test_kill_9_of_the_projector_mid_batch_loses_nothing_and_applies_nothing_twice(
    database_url: str,
    service_database_url: str,
    engine: AsyncEngine,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    head = await append_backlog(engine, stream(2400))
    env = _env(database_url, service_database_url, tmp_path) | {"CATALOG_PROJECTOR_BATCH_SIZE": "300"}
    projector = _spawn(["projector", "run", "--follow"], env)
    processes.append(projector)
    await until_a_step_is_in_flight(database_url, engine)  # one batch committed, the next one in flight
    assert projector.poll() is None, "the projector exited"
    projector.send_signal(signal.SIGKILL)
    projector.wait(timeout=10)
    stopped_at = (await projector_status(engine)).position
    assert 0 < stopped_at < head  # it died mid-way, its batch in flight rolled back

    assert (
        await catch_up(engine, Policies.load(), batch_size=500) == head
    )  # restarted: resumes from the stored position
    await no_audit_row_twice(engine)
    await rebuild_matches(engine)


async def _wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "catalog serve exited"
            try:
                if (await http.get("/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "catalog serve did not come up"
            await asyncio.sleep(0.1)


async def _leaders(ports: list[int]) -> list[int]:
    found = []
    for port in ports:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=5
        ) as http:
            answer = await http.get("/api/v1/ingest/status")
            assert answer.status_code == 200, answer.text
            if answer.json()["projectorHere"]:
                found.append(port)
    return found


async def test_two_service_processes_one_projector_and_the_other_takes_over_when_it_dies(
    database_url: str, service_database_url: str, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    env = _env(database_url, service_database_url, tmp_path)
    ports = [free_port(), free_port()]
    for port in ports:
        processes.append(_spawn(["serve", "--port", str(port)], env))
    for port, process in zip(ports, processes, strict=True):
        await _wait_ready(port, process)
    deadline = time.monotonic() + 10
    while len(leaders := await _leaders(ports)) != 1:
        assert len(leaders) < 2, "two projectors at once"
        assert time.monotonic() < deadline, "no projector"
        await asyncio.sleep(0.1)
    (leader,) = leaders
    (survivor,) = [p for p in ports if p != leader]
    killed = processes[ports.index(leader)]
    its_projector = _children(killed.pid)  # the process that holds the lock (serve's projector process)
    assert len(its_projector) == 1
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=10)
    killed_at = time.monotonic()
    # Its projector process goes with it (before anything is sent that it could fail to report).
    await _until_gone(its_projector, "the killed service's projector process")

    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{survivor}",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=15,
    ) as http:
        event = run_event(
            when=at(3), job=("airflow", "after_failover"), outputs=[dataset("bigquery", "mart.f")]
        )
        answer = await http.post("/api/v1/lineage?wait=projected", content=orjson.dumps(event))
        assert answer.status_code == 201, answer.text
        assert answer.json()["projected"] is True  # the survivor took over and folded it
        assert time.monotonic() - killed_at < 5
        assert (await http.get("/api/v1/namespaces/airflow/jobs/after_failover")).status_code == 200
    assert await _leaders([survivor]) == [survivor]


def _workers(serve: subprocess.Popen[bytes]) -> set[int]:
    """The worker processes `catalog serve --workers N` runs (its children, uvicorn's spawned workers)."""
    children = Path(f"/proc/{serve.pid}/task/{serve.pid}/children").read_text().split()
    return {int(pid) for pid in children if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()}


async def _projecting(http: httpx.AsyncClient) -> int:
    """The pid the ingest status names as the projector (waiting out a failover's gap)."""
    deadline = time.monotonic() + 15
    while True:
        status = (await http.get("/api/v1/ingest/status")).json()
        if status["projector"] is not None:
            host, pid = status["projector"].rsplit(":", 1)
            assert host == socket.gethostname()
            return int(pid)
        assert time.monotonic() < deadline, "no process projects"
        await asyncio.sleep(0.1)


async def test_serve_with_workers_accepts_in_each_projects_in_one_and_survives_losing_it(
    database_url: str, service_database_url: str, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    env = _env(database_url, service_database_url, tmp_path)
    port = free_port()
    serve = _spawn(["serve", "--port", str(port), "--workers", "2"], env)
    processes.append(serve)
    await _wait_ready(port, serve)
    deadline = time.monotonic() + 30
    while len(workers := _workers(serve)) != 2:
        assert time.monotonic() < deadline, f"workers: {workers}"
        await asyncio.sleep(0.1)

    # Fresh connections each: the kernel hands them to either worker; every event is logged once and
    # projected by the one projector.
    events = [
        run_event(when=at(1, minute=i), job=("airflow", f"w{i}"), outputs=[dataset("bigquery", f"mart.w{i}")])
        for i in range(40)
    ]

    async def send(event: dict[str, object]) -> httpx.Response:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
        ) as http:
            return await http.post("/api/v1/lineage?wait=projected", content=orjson.dumps(event))

    answers = await asyncio.gather(*(send(e) for e in events))
    assert [a.status_code for a in answers] == [201] * len(events), answers[0].text
    assert all(a.json()["projected"] for a in answers)
    assert len({a.json()["position"] for a in answers}) == len(events)

    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
    ) as http:
        projecting = await _projecting(http)
    # The projector process of one of this serve's workers, named with its host and pid.
    leader = _parent(projecting)
    assert leader in workers
    os.kill(leader, signal.SIGKILL)  # the worker: its projector process goes with it

    # The other worker takes the lead; uvicorn replaces the dead one. A request may meet the dying
    # worker's socket: a new connection then reaches a live one.
    deadline = time.monotonic() + 30
    event = run_event(
        when=at(2), job=("airflow", "after_worker_died"), outputs=[dataset("bigquery", "mart.z")]
    )
    while True:
        try:
            answer = await send(event)
            if answer.status_code == 201 and answer.json().get("projected") is True:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "no worker projected after the projecting one died"
        await asyncio.sleep(0.2)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
    ) as http:
        assert _parent(await _projecting(http)) in workers - {leader}
    await _until_gone([projecting], "the dead worker's projector process")
    deadline = time.monotonic() + 30
    while len(replaced := _workers(serve) - {leader}) != 2:  # uvicorn started a worker in its place
        assert time.monotonic() < deadline, f"workers now: {replaced}"
        await asyncio.sleep(0.2)
    assert serve.poll() is None

    # The supervisor killed outright: its workers stop too, rather than serve on unwatched.
    # One projector process per worker (one leads, one stands by); the new worker's starts with its app.
    deadline = time.monotonic() + 30
    while len(projectors := [child for worker in replaced for child in _children(worker)]) != 2:
        assert time.monotonic() < deadline, f"projector processes: {projectors}"
        await asyncio.sleep(0.2)
    serve.kill()
    serve.wait(timeout=10)
    await _until_gone([*replaced, *projectors], "workers or their projector processes")


async def _until_gone(pids: list[int], what: str) -> None:
    deadline = time.monotonic() + 20
    while alive := [pid for pid in pids if not gone(pid)]:
        assert time.monotonic() < deadline, f"{what} left behind: {alive}"
        await asyncio.sleep(0.2)


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _children(pid: int) -> list[int]:
    """The processes `pid` started with multiprocessing (not its resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children if "spawn_main" in Path(f"/proc/{child}/cmdline").read_text()]
