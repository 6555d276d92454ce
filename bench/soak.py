#!/usr/bin/env python3
"""Soak: a long paced stream through both ingest paths, the service's memory and the projection lag.

    python bench/soak.py [--events 100000] [--rate 400] [--datasets 20000]
                         [--dsn postgresql://postgres@127.0.0.1:5432/postgres]

Starts `catalog serve` (its projector in its own process; `--projector thread`: on a thread) on a fresh
database and sends the shared generator's
stream at `--rate` events/s in chunks of 100: three chunks in four as one POST /api/v1/lineage/batch,
the fourth as 100 single POSTs over 16 connections. Every 10,000 events it samples the service's
resident memory (VmRSS of the serving process plus its projector process, and each apart) and the lag
from GET /api/v1/ingest/status; at the end it waits for the
projector to drain and checks that every event is in the log and projected. Prints the curve, the RSS
spread from the 10,000-event sample on (the design's target: flat within +/- 20 %) and the worst lag.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest as bench  # bench/ingest.py: the servers, the HTTP load, the databases

CHUNK = 100
SAMPLE_EVERY = 10_000


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def projector_processes(pid: int) -> list[int]:
    """The serving process's projector process (its multiprocessing children; not the resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()]


def spread(values: list[float]) -> float | None:
    return round(max(values) / values[0] - 1, 3) if values else None


def status(port: int, token: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/ingest/status", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


async def soak(port: int, token: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    generator = bench.load_module("gen_events", bench.SHARED_BENCH / "gen_events.py")
    stream = generator.events(args.events, args.datasets, 11)
    curve: list[dict[str, Any]] = []
    sent = 0
    chunk_no = 0
    started = time.perf_counter()
    while sent < args.events:
        lines = [
            json.dumps(e, separators=(",", ":")).encode() for _, e in zip(range(CHUNK), stream, strict=False)
        ]
        if not lines:
            break
        if chunk_no % 4 == 3:
            await bench.http_load(port, token, lines, "/api/v1/lineage", 16)
        else:
            await bench.http_load(port, token, [b"[" + b",".join(lines) + b"]"], "/api/v1/lineage/batch", 1)
        sent += len(lines)
        chunk_no += 1
        ahead = started + sent / args.rate - time.perf_counter()
        if ahead > 0:
            await asyncio.sleep(ahead)
        if sent % SAMPLE_EVERY == 0:
            state = await asyncio.to_thread(status, port, token)
            serving = rss_mb(pid)
            projecting = sum(rss_mb(child) for child in projector_processes(pid))
            curve.append(
                {
                    "events": sent,
                    "seconds": round(time.perf_counter() - started, 1),
                    "rss_mb": round(serving + projecting, 1),
                    "rss_mb_serving": round(serving, 1),
                    "rss_mb_projector_process": round(projecting, 1),
                    "lag_events": state["lagEvents"],
                    "lag_seconds": state["lagSeconds"],
                }
            )
            print(curve[-1], file=sys.stderr)
    elapsed = time.perf_counter() - started
    drain_started = time.perf_counter()
    while (state := await asyncio.to_thread(status, port, token))["lagEvents"] > 0:
        if time.perf_counter() - drain_started > 1800:
            raise RuntimeError(f"the projector did not drain within 30 minutes: {state}")
        await asyncio.sleep(1)
    from_10k = [c["rss_mb"] for c in curve if c["events"] >= SAMPLE_EVERY]
    serving_from_10k = [c["rss_mb_serving"] for c in curve if c["events"] >= SAMPLE_EVERY]
    projecting_from_10k = [c["rss_mb_projector_process"] for c in curve if c["events"] >= SAMPLE_EVERY]
    return {
        "events": sent,
        "rate_asked": args.rate,
        "projector": args.projector,
        "rate_sent": round(sent / elapsed),
        "drained_after_s": round(time.perf_counter() - drain_started, 1),
        "position": state["position"],
        "head": state["head"],
        "set_aside": state["setAside"],
        "rss_mb_at_10k": from_10k[0] if from_10k else None,
        "rss_mb_max": max(from_10k, default=None),
        "rss_spread_from_10k": spread(from_10k),
        "rss_spread_from_10k_serving": spread(serving_from_10k),
        "rss_spread_from_10k_projector_process": spread(projecting_from_10k)
        if any(projecting_from_10k)
        else None,
        "lag_seconds_max": max((c["lag_seconds"] for c in curve), default=None),
        "curve": curve,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=400.0, help="events/s asked (paced)")
    parser.add_argument("--datasets", type=int, default=20_000)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--port", type=int, default=5177)
    parser.add_argument("--out", type=Path, default=bench.ROOT / "bench" / "results")
    parser.add_argument("--projector", choices=["process", "thread"], default="process")
    args = parser.parse_args()

    token = "bench-" + secrets.token_hex(8)
    name = f"bench_soak_{args.port}"
    dsn = bench.fresh_database(args.dsn, name)
    process = bench.serve(dsn, args.port, token, projector=args.projector)
    try:
        result = asyncio.run(soak(args.port, token, process.pid, args))
        result["stored"] = bench.count_events(dsn)
    finally:
        bench.stop(process)
        bench.drop_database(args.dsn, name)
    if result["stored"] != result["events"] or result["position"] != result["head"]:
        raise SystemExit(f"lost or unprojected events: {result}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak-latest.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}, indent=2))


if __name__ == "__main__":
    main()
