"""The projector in a process of its own (the default under `catalog serve`): it folds and reports how far
to its service process (so `?wait=projected` answers), a kill -9 of it mid-batch is survived (the service
starts another, which resumes: nothing lost, nothing applied twice), and it never outlives its service."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.app import create_app
from catalog.config import Settings
from catalog.db.backend_priority import on_this_machine
from catalog.ingest.projector import PROJECTOR_LOCK_KEY
from catalog.ingest.projector_process import ProjectorProcess
from tests.conftest import ADMIN_TOKEN
from tests.factories import at, dataset, run_event
from tests.ingest.projector_helpers import (
    append_backlog,
    asynchronous_settings,
    gone,
    no_audit_row_twice,
    projector_status,
    rebuild_matches,
    stream,
    until_a_step_is_in_flight,
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Several steps to the backlog below, so a kill lands mid-way.
    return asynchronous_settings(tmp_path, projector_process=True, projector_batch_size=300)


async def _until(condition: Callable[[], bool], what: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def test_the_projector_process_folds_reports_survives_kill_9_and_ends_with_its_service(
    settings: Settings, service_database_url: str, database_url: str, engine: AsyncEngine
) -> None:
    app = create_app(settings, service_database_url)
    async with app.router.lifespan_context(app):
        projector = app.state.projector
        assert isinstance(projector, ProjectorProcess)
        first = projector.pid
        assert first is not None
        assert first != os.getpid()
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://catalog",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as http:
            # Woken by the append's NOTIFY (nothing in this process wakes it), and the position it
            # reached crosses the pipe: the answer says projected, and the read finds the job.
            event = run_event(
                when=at(1), job=("airflow", "in_a_child"), outputs=[dataset("bigquery", "mart.c")]
            )
            answer = await http.post("/api/v1/lineage?wait=projected", content=orjson.dumps(event))
            assert answer.status_code == 201, answer.text
            assert answer.json()["projected"] is True
            assert (await http.get("/api/v1/namespaces/airflow/jobs/in_a_child")).status_code == 200
            status = (await http.get("/api/v1/ingest/status")).json()
            assert status["projectorHere"] is True  # this service's projector leads
            assert status["projector"].endswith(f":{first}")  # and it is the child, not this process
            metrics = await _metrics(http)
            assert metrics["catalog_projector_process_up"] == 1
            assert metrics["catalog_projector_process_leading"] == 1
            assert metrics["catalog_projector_process_restarts_total"] == 0
            assert metrics["catalog_projector_process_resident_memory_bytes"] > 20 * 2**20
            assert metrics["catalog_projector_process_cpu_seconds_total"] > 0  # the child's, read from /proc

            # A backlog, and the child killed with a step in flight.
            head = await append_backlog(engine, stream(2400))
            await until_a_step_is_in_flight(database_url, engine, after=answer.json()["position"])
            os.kill(first, signal.SIGKILL)
            await _until(lambda: gone(first), "the killed projector is still there")
            stopped_at = (await projector_status(engine)).position
            assert stopped_at < head  # it died mid-way

            # The service starts another, which takes the lead and resumes from the stored position.
            await _until(lambda: projector.pid not in (None, first), "no new projector process", within=20)
            second = projector.pid
            assert projector.restarts == 1
            assert await app.state.watermark.wait_for(head, 90)
            assert projector.leading
            status = (await http.get("/api/v1/ingest/status")).json()
            assert status["position"] == status["head"] == head
            assert status["projector"].endswith(f":{second}")
            assert (await _metrics(http))["catalog_projector_process_restarts_total"] == 1
    # Stopping the service stops its projector process.
    assert second is not None
    assert gone(second)
    await no_audit_row_twice(engine)
    await rebuild_matches(engine)


async def _metrics(http: httpx.AsyncClient) -> dict[str, float]:
    answer = await http.get("/metrics")
    assert answer.status_code == 200, answer.text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
        if sample.name.startswith("catalog_projector_process")
    }


async def test_a_service_without_a_projector_starts_no_process(
    settings: Settings, service_database_url: str
) -> None:
    app = create_app(settings.model_copy(update={"projector_enabled": False}), service_database_url)
    async with app.router.lifespan_context(app):
        assert app.state.projector.pid is None
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://catalog",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as http:
            assert (await _metrics(http))["catalog_projector_process_up"] == 0


@pytest.mark.parametrize("idle", [True, False], ids=["idle", "niced-only"])
async def test_the_projector_process_and_its_database_connections_yield_the_cpu_to_the_accepting_path(
    settings: Settings, service_database_url: str, engine: AsyncEngine, idle: bool
) -> None:
    """When both want the CPU, the projector (its process and its PostgreSQL backends) goes second: at the
    idle scheduling policy (the default) and niced; the serving process and its backends keep theirs."""
    niceness = 7  # not the default: the setting is what is applied
    app = create_app(
        settings.model_copy(update={"projector_nice": niceness, "projector_idle": idle}), service_database_url
    )
    policy = os.SCHED_IDLE if idle else os.SCHED_OTHER
    async with app.router.lifespan_context(app):
        projector = app.state.projector
        await _until(lambda: projector.leading, "the projector process never led")
        assert projector.pid is not None
        assert os.getpriority(os.PRIO_PROCESS, projector.pid) == max(
            niceness, os.getpriority(os.PRIO_PROCESS, 0)
        )
        assert os.sched_getscheduler(projector.pid) == policy
        async with engine.connect() as conn:
            # The leader's lock is held by one of the projector process's connections.
            holder = (
                await conn.exec_driver_sql(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = %s::oid"
                    % (PROJECTOR_LOCK_KEY & 0xFFFFFFFF)
                )
            ).scalar_one()
            ours = (await conn.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one()
        if not on_this_machine(make_url(service_database_url)):
            pytest.skip("PostgreSQL runs elsewhere: its backends are not reniced (nor visible here)")
        may_renice = os.geteuid() == 0 or os.stat(f"/proc/{holder}").st_uid == os.geteuid()
        assert os.getpriority(os.PRIO_PROCESS, holder) == (niceness if may_renice else 0)
        assert os.sched_getscheduler(holder) == (policy if may_renice else os.SCHED_OTHER)
        # not the test's (nor the service's) connections, nor the service process itself
        assert os.getpriority(os.PRIO_PROCESS, ours) == 0
        assert os.sched_getscheduler(ours) == os.SCHED_OTHER
        assert os.sched_getscheduler(0) == os.SCHED_OTHER


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("postgresql://u@/db?host=/tmp/catalog-x&port=5433", True),  # the embedded server's socket
        ("postgresql://u@127.0.0.1:5432/db", True),
        ("postgresql://u@localhost/db", True),
        ("postgresql://u@[::1]:5432/db", True),
        ("postgresql://u@db.internal:5432/db", False),
        ("postgresql://u@10.0.0.7/db", False),
    ],
)
def test_backends_are_reniced_only_on_this_machine(url: str, local: bool) -> None:
    assert on_this_machine(make_url(url)) is local


async def _keep_this_process_busy(until: asyncio.Event) -> None:
    """This (the service) process CPU-bound, as under more ingest than it answers: spin the event loop in
    slices, so that it still serves the test's requests between them."""
    while not until.is_set():
        ends = time.perf_counter() + 0.04
        while time.perf_counter() < ends:
            pass
        await asyncio.sleep(0.001)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads Linux's /proc")
async def test_the_projector_process_yields_while_its_service_process_is_cpu_bound_and_catches_up_after(
    settings: Settings, service_database_url: str, engine: AsyncEngine
) -> None:
    """Accepting goes first (catalog/ingest/accepting_load.py): while the service process wants a whole CPU
    the projector process folds in small steps, pausing between them, and the status and metrics say so;
    when the load ends, it catches up — nothing lost, nothing applied twice."""
    # More than the projector folds in a respite (accepting_load.RESPITE): if a pause ends early on a slow
    # spell of the test box, it folds on unpaced for a second, and must still find a backlog after it.
    head = await append_backlog(engine, stream(4000))
    done = asyncio.Event()
    busy = asyncio.create_task(_keep_this_process_busy(done))
    try:
        app = create_app(settings.model_copy(update={"projector_busy_share": 0.2}), service_database_url)
        async with app.router.lifespan_context(app):
            projector = app.state.projector
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://catalog",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            ) as http:
                await _until(lambda: projector.yielding, "the projector never yielded", within=60)
                status = (await http.get("/api/v1/ingest/status")).json()
                assert status["yieldingToAcceptance"] is True
                assert 0 < status["position"] < head  # some folded, in small steps, the rest waits
                assert (await _metrics(http))["catalog_projector_process_yielding"] == 1
                # reported with the step after the pause (the last one, maybe)
                await _until(lambda: projector.paused_seconds > 0, "no pause reported", within=30)

                done.set()
                await busy
                assert await app.state.watermark.wait_for(head, 90)  # the load is over: it catches up
                await _until(lambda: not projector.yielding, "still yielding with nothing to yield to")
                status = (await http.get("/api/v1/ingest/status")).json()
                assert status["yieldingToAcceptance"] is False
                assert status["position"] == status["head"] == head
                metrics = await _metrics(http)
                assert metrics["catalog_projector_process_yielding"] == 0
                assert metrics["catalog_projector_process_paused_seconds_total"] > 0
    finally:
        done.set()
        await busy
    await no_audit_row_twice(engine)
    await rebuild_matches(engine)
