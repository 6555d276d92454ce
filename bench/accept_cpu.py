#!/usr/bin/env python3
"""The CPU per accepted event, for two or more checkouts of this repository, alternating: the serving process's
and its PostgreSQL backends'.

    python bench/accept_cpu.py [--runs 5] [--mode single|batch] BEFORE_CHECKOUT AFTER_CHECKOUT
    # e.g. git worktree add /tmp/before HEAD~1 && python bench/accept_cpu.py /tmp/before .

For each run and each checkout in turn: `catalog serve` of that checkout (accepting only, no projector) on a
fresh database, a warm-up, then `bench/ingest.py`'s load (single events from 32 clients, or batches of
1,000 from 2), and the user + system CPU from /proc of the server process and of the PostgreSQL backends
connected to its database (PostgreSQL on this machine). Prints the median CPU per event (ms) of each and
events/s per checkout. CPU per event is steadier than throughput on a shared two-core box, where
PostgreSQL and the load generator take the other core; alternating the checkouts spreads the box's
drift over both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest as bench  # bench/ is not a package: its directory is put on the path above

TICK = os.sysconf("SC_CLK_TCK")
WARM_UP = 300


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def backends_cpu(admin_dsn: str, database: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend connected to `database`."""
    import psycopg

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [database])]
    used = {}
    for pid in pids:
        try:
            used[pid] = cpu_seconds(pid)
        except OSError:  # gone meanwhile
            continue
    return used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("checkouts", nargs="+", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mode", choices=["single", "batch"], default="single")
    parser.add_argument("--events", type=int, default=6000)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--port", type=int, default=5400)
    args = parser.parse_args()
    checkouts = [checkout.resolve() for checkout in args.checkouts]  # before the server's chdir below

    generator = bench.load_module("gen_events", bench.SHARED_BENCH / "gen_events.py")
    lines = [
        json.dumps(e, separators=(",", ":")).encode()
        for e in generator.events(args.events + WARM_UP, 5000, 7)
    ]
    warm, sent = lines[:WARM_UP], lines[WARM_UP:]
    token = "bench-" + os.urandom(8).hex()
    # per run: server, PostgreSQL (ms per event), events/s
    results: dict[Path, list[tuple[float, float, float]]] = {}
    port = args.port
    for run in range(args.runs):
        for checkout in checkouts:
            # The checkout's code first on the path; the server runs from outside any checkout, so that
            # the current directory does not win over it.
            os.environ["PYTHONPATH"] = str(checkout)
            os.chdir("/")
            dsn = bench.fresh_database(args.dsn, "bench_accept_cpu")
            port += 1
            process = bench.serve(dsn, port, token, projector="none")
            try:
                asyncio.run(bench.http_load(port, token, warm, "/api/v1/lineage", 8))
                before = cpu_seconds(process.pid)
                backends_before = backends_cpu(args.dsn, "bench_accept_cpu")
                if args.mode == "single":
                    elapsed = asyncio.run(bench.http_load(port, token, sent, "/api/v1/lineage", 32))
                else:
                    bodies = [b"[" + b",".join(sent[i : i + 1000]) + b"]" for i in range(0, len(sent), 1000)]
                    elapsed = asyncio.run(bench.http_load(port, token, bodies, "/api/v1/lineage/batch", 2))
                used = cpu_seconds(process.pid) - before
                backends = backends_cpu(args.dsn, "bench_accept_cpu")
                database = sum(t - backends_before.get(pid, 0.0) for pid, t in backends.items())
            finally:
                bench.stop(process)
                bench.drop_database(args.dsn, "bench_accept_cpu")
            per_event = (used / len(sent) * 1000, database / len(sent) * 1000)
            results.setdefault(checkout, []).append((*per_event, len(sent) / elapsed))
            print(
                f"run {run + 1} {checkout}: server {per_event[0]:.4f}, PostgreSQL {per_event[1]:.4f} ms/event",
                file=sys.stderr,
            )
    for checkout, measured in results.items():
        server = statistics.median(m[0] for m in measured)
        database = statistics.median(m[1] for m in measured)
        rate = statistics.median(m[2] for m in measured)
        print(
            f"{checkout}: CPU server {server:.4f}, PostgreSQL {database:.4f} ms/event, {rate:.0f} events/s"
            f" (medians of {len(measured)})"
        )


if __name__ == "__main__":
    main()
