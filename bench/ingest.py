#!/usr/bin/env python3
"""Ingest throughput against the raw-PostgreSQL baseline, measured in the same run on the same server.

    python bench/ingest.py [--events 20000] [--single 8000] [--datasets 5000] [--peer]
                           [--dsn postgresql://postgres@127.0.0.1:5432/postgres]

Runs, each on a fresh database:
  raw          ../shared/bench/raw_baseline.py: COPY in batches, INSERT+COMMIT on 16 connections
  http_single  acceptance: `catalog serve` (uvicorn, one process, its projector process folding behind)
               + 32 concurrent keep-alive clients, one event a POST, answered once durably in the log;
               also with the projector on a thread of the serving process (`_projector_thread`) and
               with no projector at all (`_accept_only`)
  http_batch   acceptance: POST /api/v1/lineage/batch, 1000 events a request, 2 concurrent clients
  projector    the projector alone (classification, ownership audit and findings on) folding the whole
               stream appended beforehand, in this process (`catch_up`, what `catalog projector run` does)
  freshness    single events sent at half the projector's rate (then 1.5x, then nothing), the projection
               lag sampled from GET /api/v1/ingest/status: p95 at half rate, and the curve; once with
               `catalog serve`'s projector process, once with its projector on a thread; and once more with
               the events in batches of --freshness-batch (25) a request (`freshness_batched`)
  peer         with --peer: Data.Rentgen 0.7.2 on the same events (../shared/bench/peer_data_rentgen.sh)
and prints events/s and the ratios the issue targets (acceptance single >= 0.5 x INSERTx16, batch >= 0.6 x
COPY, projector >= 0.15 x COPY and >= 4 x Data.Rentgen, lag p95 <= 1 s at half the projector's rate).
The load generator is a minimal asyncio HTTP/1.1 client so that it steals as little CPU as possible
from the server on this 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.util
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
SHARED_BENCH = Path(os.environ.get("CATALOG_SHARED_BENCH", ROOT.parent / "shared" / "bench"))


def load_module(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fresh_database(admin_dsn: str, name: str) -> str:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, query = admin_dsn.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")


def drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def http_load(port: int, token: str, bodies: list[bytes], path: str, concurrency: int) -> float:
    """Send every body once over `concurrency` keep-alive connections; returns elapsed seconds."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nContent-Length: "
    ).encode()
    failures: list[str] = []

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                try:
                    body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
                status_line = await reader.readline()
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                payload = await reader.readexactly(length)
                if b" 20" not in status_line:
                    failures.append(status_line.decode() + payload.decode()[:200])
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[0]}")
    return elapsed


async def paced_load(
    port: int,
    token: str,
    bodies: list[bytes],
    rate: float,
    concurrency: int = 32,
    path: str = "/api/v1/lineage",
) -> float:
    """Send body i at `i / rate` seconds (open loop, over `concurrency` keep-alive connections); returns
    the elapsed seconds (longer than planned when the service cannot accept that fast)."""
    started = time.perf_counter()
    order = iter(range(len(bodies)))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nContent-Length: "
    ).encode()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in order:
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(head + str(len(bodies[i])).encode() + b"\r\n\r\n" + bodies[i])
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                if b" 201" not in status_line and b" 200" not in status_line:
                    raise RuntimeError(status_line.decode())
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


Sample = tuple[float, float, int, bool]  # seconds since start, lag seconds, lag events, yielding


async def sample_lag(
    port: int, token: str, stop: asyncio.Event, samples: list[Sample], every: float = 0.1
) -> None:
    """Append GET /api/v1/ingest/status's lag to `samples` until `stop`."""
    import urllib.request

    started = time.perf_counter()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/ingest/status", headers={"Authorization": f"Bearer {token}"}
    )

    def get() -> Any:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    while not stop.is_set():
        # On a thread: the status query can take tens of ms under load, and the load generator shares
        # this event loop (a blocking GET here would stall its pacing, then burst).
        state = await asyncio.to_thread(get)
        samples.append(
            (
                round(time.perf_counter() - started, 2),
                state["lagSeconds"],
                state["lagEvents"],
                bool(state.get("yieldingToAcceptance")),
            )
        )
        await asyncio.sleep(every)


async def freshness(
    port: int, token: str, lines: list[bytes], rate: float, seconds: float, per_request: int = 1
) -> dict[str, Any]:
    """Half the projector's rate for `seconds`, then 1.5x for `seconds`, then drain: the lag curve.
    `per_request` > 1: the events go in batches of that many (POST /api/v1/lineage/batch), paced so
    that the events per second are the same."""
    stop = asyncio.Event()
    curve: list[Sample] = []
    sampler = asyncio.create_task(sample_lag(port, token, stop, curve))
    half = int(rate * 0.5 * seconds)
    over = int(rate * 1.5 * seconds)

    def bodies(chosen: list[bytes]) -> list[bytes]:
        if per_request == 1:
            return chosen
        return [
            b"[" + b",".join(chosen[i : i + per_request]) + b"]" for i in range(0, len(chosen), per_request)
        ]

    path = "/api/v1/lineage" if per_request == 1 else "/api/v1/lineage/batch"
    half_elapsed = await paced_load(port, token, bodies(lines[:half]), rate * 0.5 / per_request, path=path)
    over_elapsed = await paced_load(
        port, token, bodies(lines[half : half + over]), rate * 1.5 / per_request, path=path
    )
    drained = None
    drain_started = time.perf_counter()
    while time.perf_counter() - drain_started < 120:
        await asyncio.sleep(0.2)
        if curve and curve[-1][2] == 0:  # the backlog is gone
            drained = round(time.perf_counter() - drain_started, 1)
            break
    stop.set()
    await sampler
    first_phase = [lag for t, lag, *_ in curve if t <= half_elapsed]
    yielding = [y for t, _, _, y in curve if t <= half_elapsed]
    ordered = sorted(first_phase) or [0.0]
    return {
        "events_per_request": per_request,
        "half_rate_events_per_s": round(rate * 0.5),
        "half_rate_accepted_per_s": round(half / half_elapsed),
        "lag_p95_s_at_half_rate": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "overload_rate_events_per_s": round(rate * 1.5),
        "overload_accepted_per_s": round(over / over_elapsed),
        # the share of the half-rate samples in which the projector paused for acceptance (it should not:
        # acceptance is not saturated at half rate; see catalog/ingest/accepting_load.py)
        "yielding_share_at_half_rate": round(sum(yielding) / max(1, len(yielding)), 3),
        "max_lag_events": max((n for _, _, n, _ in curve), default=0),
        "max_lag_s": max((lag for _, lag, _, _ in curve), default=0.0),
        "sent": half + over,
        "drained_after_s": drained,
        "half_phase_ended_at_s": round(half_elapsed, 1),
        "curve_every_second": [(t, lag, n) for t, lag, n, _ in curve if abs(t - round(t)) < 0.05],
    }


async def project_backlog(dsn: str, lines: list[bytes]) -> dict[str, Any]:
    """Append the stream through the accepting path's code, then time the projector folding it."""
    sys.path[:0] = [str(ROOT), str(ROOT / "clients" / "python" / "src")]
    from catalog.db.engine import create_engine, raw_transaction
    from catalog.ingest.projector import catch_up
    from catalog.ingest.service import PartitionCache, append
    from catalog.memory import tune_garbage_collector
    from catalog.openlineage.events import Limits
    from catalog.openlineage.validation import parse_event
    from catalog.policies_in_force import Policies

    limits = Limits(latest_skew=dt.timedelta(days=3650))
    tune_garbage_collector()  # as `catalog projector run` does
    engine = create_engine(dsn, pool_size=2)
    try:
        partitions = PartitionCache()
        for i in range(0, len(lines), 1000):
            events = [parse_event(json.loads(line), limits=limits) for line in lines[i : i + 1000]]
            await partitions.ensure(engine, [e.event_time for e in events])
            async with raw_transaction(engine) as raw:
                await append(raw, events)
        started = time.perf_counter()
        await catch_up(engine, Policies.load())  # its default batch, as `catalog projector run`
        elapsed = time.perf_counter() - started
    finally:
        await engine.dispose()
    return {"events_per_s": round(len(lines) / elapsed), "seconds": round(elapsed, 2)}


def peer(lines: list[bytes], n: int, admin_dsn: str) -> dict[str, Any]:
    """Data.Rentgen on the same events: its script prints the raw baseline, then its own events/s."""
    sample = Path(f"/tmp/bench-peer-{os.getpid()}.jsonl")
    sample.write_bytes(b"\n".join(lines[:n]) + b"\n")
    try:
        done = subprocess.run(
            ["bash", str(SHARED_BENCH / "peer_data_rentgen.sh"), str(sample), str(n), admin_dsn],
            capture_output=True,
            text=True,
            timeout=900,
            check=True,
        )
    finally:
        sample.unlink(missing_ok=True)
    outputs = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {"raw": outputs[0], "peer": outputs[-1]}


def serve(
    dsn: str,
    port: int,
    token: str,
    *,
    rules: bool = True,
    workers: int = 1,
    projector: str = "process",
) -> subprocess.Popen[bytes]:
    """`catalog serve` as it runs by default (its projector in a child process of its own), or with
    `projector="thread"` on a thread of the serving process (one GIL for both: the previous default), or
    with "none" accepting only, no projector anywhere (the log is folded later); with `workers` > 1,
    `catalog serve --workers N` (N accepting processes, each with a projector process, one leading)."""
    env = dict(
        os.environ,
        CATALOG_DATABASE_URL=dsn,
        CATALOG_ADMIN_TOKEN=token,
        CATALOG_LOG_LEVEL="WARNING",
        CATALOG_FINDINGS_INCREMENTAL="true" if rules else "false",
        CATALOG_INGEST_DEFAULT_WAIT="logged",  # acceptance: answered once durably in the log
        CATALOG_PROJECTOR_ENABLED="false" if projector == "none" else "true",
        CATALOG_PROJECTOR_PROCESS="false" if projector == "thread" else "true",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "catalog.cli", "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        # A file, not a pipe nobody reads: a full pipe would block the server's logging (and the server).
        stderr=open(LOGS / f"serve-{port}.log", "wb"),  # noqa: SIM115 - the process owns it
    )
    deadline = time.monotonic() + 60
    import urllib.request

    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                if response.status == 200 and (projector == "none" or _projecting(port, token)):
                    return process
        except OSError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("catalog serve did not come up: " + (LOGS / f"serve-{port}.log").read_text()[-2000:])


LOGS = Path(os.environ.get("CATALOG_BENCH_LOGS", "/tmp"))  # the servers' stderr, serve-<port>.log


def _projecting(port: int, token: str) -> bool:
    """Whether a projector leads (a projector process still starting would share the measured load)."""
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/ingest/status", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=1) as response:
        return json.loads(response.read())["projector"] is not None


def _placement(mode: str) -> str:
    """Where a mode's `catalog serve` runs its projector (see `serve`)."""
    if mode.endswith("_accept_only"):
        return "none"
    return "thread" if mode.endswith("_projector_thread") else "process"


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def count_events(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM event_log").fetchone()
        assert row is not None
        return int(row[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--single", type=int, default=8_000, help="events sent one per POST")
    parser.add_argument("--datasets", type=int, default=5_000)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--port", type=int, default=5077)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--freshness-seconds", type=float, default=15.0, help="per phase (half rate, 1.5x)")
    parser.add_argument(
        "--freshness-batch", type=int, default=25, help="events a request in the batched freshness phases"
    )
    parser.add_argument("--peer", action="store_true", help="also run Data.Rentgen on the same events")
    parser.add_argument("--peer-events", type=int, default=5000)
    parser.add_argument(
        "--workers", type=int, default=2, help="also measure acceptance with `catalog serve --workers N`"
    )
    parser.add_argument(
        "--only",
        help="comma-separated acceptance modes to run (e.g. http_single_accept_only); skips the projector,"
        " freshness and peer phases: for quick comparisons, not for the issue's report",
    )
    args = parser.parse_args()

    generator = load_module("gen_events", SHARED_BENCH / "gen_events.py")
    baseline = load_module("raw_baseline", SHARED_BENCH / "raw_baseline.py")
    lines = [
        json.dumps(e, separators=(",", ":")).encode() for e in generator.events(args.events, args.datasets, 7)
    ]
    results: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "events": len(lines),
        "single_events": args.single,
        "datasets": args.datasets,
        "cpus": os.cpu_count(),
    }
    token = "bench-" + secrets.token_hex(8)
    print(
        f"{len(lines)} events generated ({sum(map(len, lines)) / len(lines) / 1024:.1f} KB each)",
        file=sys.stderr,
    )

    tag = f"_{os.getpid()}"  # other benchmarks may run on the same server
    raw_dsn = fresh_database(args.dsn, "bench_raw" + tag)
    try:
        results["raw"] = asyncio.run(baseline.run(raw_dsn, lines, args.single))
    finally:
        drop_database(args.dsn, "bench_raw" + tag)
    print(f"raw baseline: {results['raw']}", file=sys.stderr)

    modes = ["http_single", "http_batch", "http_single_projector_thread", "http_batch_projector_thread"]
    # The accepting path alone (the "acceptance": validate, authorise, redact, deduplicate,
    # append, answer), no projector on this box's two cores while it runs: what every accepting process
    # adds when the projector has cores of its own.
    modes += ["http_single_accept_only", "http_batch_accept_only"]
    if args.workers > 1:
        modes += ["http_single_workers", "http_batch_workers"]
    if args.only:
        modes = [m for m in modes if m in args.only.split(",")]
    for index, mode in enumerate(modes):
        dsn = fresh_database(args.dsn, f"bench_{mode}{tag}")
        # a port per run: a server that is slow to exit must not answer the next run's requests
        port = args.port + 10 + index
        workers = args.workers if mode.endswith("_workers") else 1
        process = serve(
            dsn,
            port,
            token,
            workers=workers,
            projector=_placement(mode),
        )
        try:
            if mode.startswith("http_single"):
                bodies = lines[: args.single]
                elapsed = asyncio.run(http_load(port, token, bodies, "/api/v1/lineage", 32))
            else:
                bodies = [b"[" + b",".join(lines[i : i + 1000]) + b"]" for i in range(0, len(lines), 1000)]
                elapsed = asyncio.run(http_load(port, token, bodies, "/api/v1/lineage/batch", 2))
            sent = args.single if mode.startswith("http_single") else len(lines)
            stored = count_events(dsn)
            results[mode] = {
                "events_per_s": round(sent / elapsed),
                "seconds": round(elapsed, 2),
                "stored": stored,
            }
            print(f"{mode} (acceptance): {results[mode]}", file=sys.stderr)
        finally:
            stop(process)
            drop_database(args.dsn, f"bench_{mode}{tag}")

    if args.only:
        for mode in modes:
            what, key = ("single", "insert_16conn") if "single" in mode else ("batch", "copy_batch_1000")
            results[f"ratio_{mode}"] = round(results[mode]["events_per_s"] / results["raw"][key], 3)
        print(json.dumps({k: v for k, v in results.items() if k.startswith(("ratio", "raw"))}, indent=2))
        return

    dsn = fresh_database(args.dsn, "bench_projector" + tag)
    try:
        process = serve(dsn, args.port + 2, token)  # migrates the database; its projector is stopped next
        stop(process)
        results["projector"] = asyncio.run(project_backlog(dsn, lines))
        print(f"projector: {results['projector']}", file=sys.stderr)
    finally:
        drop_database(args.dsn, "bench_projector" + tag)

    # `catalog serve`'s projector process, its projector on a thread of the serving process, and with
    # --workers, one of the `--workers N` accepting processes' projector processes.
    # Both phases need rate x 2 x seconds distinct events: the stream goes on past the first `--events`
    # (the same generator, later runs; a repeated event would only be a duplicate, never projected).
    rate = results["projector"]["events_per_s"]
    wanted = int(rate * 2 * args.freshness_seconds) + 1
    stream = lines
    if wanted > len(stream):
        stream = [
            json.dumps(e, separators=(",", ":")).encode() for e in generator.events(wanted, args.datasets, 7)
        ]
    # The same phases in batches of `--freshness-batch` events a request (an emitter that batches: the
    # file transport relayed by `catalog ingest`, a queue relay): 1.5x the projector's rate is more
    # single events a second than the accepting path takes on this box even with no projector running
    # (the `http_single_accept_only` row), so only batches show whether acceptance keeps an overload's pace
    # while the lag grows and drains.
    phases = [
        ("freshness", "process", 1, 1),
        ("freshness_projector_thread", "thread", 1, 1),
        ("freshness_batched", "process", 1, args.freshness_batch),
    ]
    if args.workers > 1:
        phases.append(("freshness_workers", "process", args.workers, 1))
    for index, (name, placement, workers, per_request) in enumerate(phases):
        dsn = fresh_database(args.dsn, f"bench_{name}{tag}")
        port = args.port + 3 + index * 30
        process = serve(dsn, port, token, projector=placement, workers=workers)
        try:
            results[name] = asyncio.run(
                freshness(port, token, stream, rate, args.freshness_seconds, per_request)
            )
            results[name]["stored"] = count_events(dsn)  # every event sent, once
            print(
                f"{name}: { {k: v for k, v in results[name].items() if k != 'curve_every_second'} }",
                file=sys.stderr,
            )
        finally:
            stop(process)
            drop_database(args.dsn, f"bench_{name}{tag}")

    if args.peer:
        results["peer"] = peer(lines, args.peer_events, args.dsn)
        print(f"peer: {results['peer']}", file=sys.stderr)
        results["ratio_projector_vs_peer"] = round(
            results["projector"]["events_per_s"] / results["peer"]["peer"]["events_per_s"], 2
        )

    results["ratio_single_vs_insert16"] = round(
        results["http_single"]["events_per_s"] / results["raw"]["insert_16conn"], 3
    )
    results["ratio_batch_vs_copy"] = round(
        results["http_batch"]["events_per_s"] / results["raw"]["copy_batch_1000"], 3
    )
    results["ratio_single_vs_insert16_projector_thread"] = round(
        results["http_single_projector_thread"]["events_per_s"] / results["raw"]["insert_16conn"], 3
    )
    results["ratio_batch_vs_copy_projector_thread"] = round(
        results["http_batch_projector_thread"]["events_per_s"] / results["raw"]["copy_batch_1000"], 3
    )
    for what, baseline_key in (("single", "insert_16conn"), ("batch", "copy_batch_1000")):
        key = "insert16" if what == "single" else "copy"
        results[f"ratio_{what}_vs_{key}_accept_only"] = round(
            results[f"http_{what}_accept_only"]["events_per_s"] / results["raw"][baseline_key], 3
        )
    if args.workers > 1:
        results["workers"] = args.workers
        results["ratio_single_vs_insert16_workers"] = round(
            results["http_single_workers"]["events_per_s"] / results["raw"]["insert_16conn"], 3
        )
        results["ratio_batch_vs_copy_workers"] = round(
            results["http_batch_workers"]["events_per_s"] / results["raw"]["copy_batch_1000"], 3
        )
    results["ratio_projector_vs_copy"] = round(
        results["projector"]["events_per_s"] / results["raw"]["copy_batch_1000"], 3
    )
    results["targets"] = {
        "single_vs_insert16": 0.5,
        "batch_vs_copy": 0.6,
        "projector_vs_copy": 0.15,
        "projector_vs_peer": 4,
        "lag_p95_s_at_half_rate": 1.0,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ingest-latest.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
