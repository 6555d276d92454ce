#!/usr/bin/env python3
"""Ingest throughput against the raw-PostgreSQL baseline, measured in the same run on the same server.

    python bench/ingest.py [--events 20000] [--datasets 5000] [--dsn postgresql://postgres@127.0.0.1:5432/postgres]

Runs, each on a fresh database:
  raw          ../shared/bench/raw_baseline.py: COPY in batches, INSERT+COMMIT on 16 connections
  http_single  `catalog serve` (uvicorn, one process) + 32 concurrent keep-alive clients, one event a POST
  http_batch   POST /api/v1/lineage/batch, 1000 events a request, 2 concurrent clients
  http_batch_rules_off   the same with the governance rules off (CATALOG_FINDINGS_INCREMENTAL=false)
and prints events/s and the ratios the design targets (single >= 25% of INSERT x16, batch >= 40% of COPY,
the rules costing at most 20% of batch throughput).
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


def serve(dsn: str, port: int, token: str, *, rules: bool = True) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        CATALOG_DATABASE_URL=dsn,
        CATALOG_ADMIN_TOKEN=token,
        CATALOG_LOG_LEVEL="WARNING",
        CATALOG_FINDINGS_INCREMENTAL="true" if rules else "false",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "catalog.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    import urllib.request

    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(
        "catalog serve did not come up: " + (process.stderr.read() if process.stderr else b"").decode()
    )


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

    raw_dsn = fresh_database(args.dsn, "bench_raw")
    try:
        results["raw"] = asyncio.run(baseline.run(raw_dsn, lines, args.single))
    finally:
        drop_database(args.dsn, "bench_raw")
    print(f"raw baseline: {results['raw']}", file=sys.stderr)

    for index, mode in enumerate(("http_single", "http_batch", "http_batch_rules_off")):
        dsn = fresh_database(args.dsn, f"bench_{mode}")
        # a port per run: a server that is slow to exit must not answer the next run's requests
        port = args.port + index
        process = serve(dsn, port, token, rules=mode != "http_batch_rules_off")
        try:
            if mode == "http_single":
                bodies = lines[: args.single]
                elapsed = asyncio.run(http_load(port, token, bodies, "/api/v1/lineage", 32))
            else:
                bodies = [b"[" + b",".join(lines[i : i + 1000]) + b"]" for i in range(0, len(lines), 1000)]
                elapsed = asyncio.run(http_load(port, token, bodies, "/api/v1/lineage/batch", 2))
            sent = args.single if mode == "http_single" else len(lines)
            stored = count_events(dsn)
            results[mode] = {
                "events_per_s": round(sent / elapsed),
                "seconds": round(elapsed, 2),
                "stored": stored,
            }
            print(f"{mode}: {results[mode]}", file=sys.stderr)
        finally:
            stop(process)
            drop_database(args.dsn, f"bench_{mode}")

    results["ratio_single_vs_insert16"] = round(
        results["http_single"]["events_per_s"] / results["raw"]["insert_16conn"], 3
    )
    results["ratio_batch_vs_copy"] = round(
        results["http_batch"]["events_per_s"] / results["raw"]["copy_batch_1000"], 3
    )
    results["rules_cost_batch"] = round(
        1 - results["http_batch"]["events_per_s"] / results["http_batch_rules_off"]["events_per_s"], 3
    )
    results["targets"] = {"single": 0.25, "batch": 0.40, "rules_cost_at_most": 0.20}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ingest-latest.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
