#!/usr/bin/env python3
"""Lineage traversal latency on a 100k-dataset / 25k-job graph, against Marquez's query on the same data.

    .venv/bin/python bench/lineage.py [--datasets 100000] [--queries 300] [--baseline-queries 30]
                                      [--dsn postgresql://postgres@127.0.0.1:5432/postgres] [--reuse]

1. Loads a fresh database through the batch ingest code path (`append_and_project`, the function the
   batch endpoint runs, in 2k-event transactions): every job reads 2 random datasets and writes 4, with
   schema, dataSource and columnLineage facets from ../shared/bench/gen_events.py, so all 100k datasets
   exist; 10% of the jobs run again a month later with one input swapped (exercises as-of).
2. Measures, over random roots, p50/p95 of:
     service      catalog.lineage.service.lineage(BOTH, depth 5), in process on one connection
     service_asof the same, as of a mid-load instant
     graphql      the same query through POST /graphql (the app in process over ASGI, auth included)
     column       catalog.lineage.service.column_lineage(BOTH, depth 5) around a random field
     cte          a floor: one bare directed recursive CTE per walk, node ids only (our tables/indexes)
     marquez      Marquez 0.51's LineageDao.getLineage (recursive CTE over per-job input/output arrays,
                  undirected `&&` overlap) + getDatasetData, reproduced on our job_io table, depth 5
3. Prints a table and the speed-up, and writes bench/results/lineage-latest.json.

`--reuse` keeps the loaded database between runs (it is dropped otherwise). `--skip-classification`
loads without the PII classification step of the ingest path (the traversals read no classification);
use it only when that step makes the load impractical, and say so with the numbers (it is recorded in
the results' params).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import importlib.util
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal
from unittest.mock import patch

import asyncpg
import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from catalog.app import create_app  # noqa: E402
from catalog.config import Settings  # noqa: E402
from catalog.db import migrate  # noqa: E402
from catalog.db.engine import create_engine, raw_transaction  # noqa: E402
from catalog.ingest.projector import append_and_project  # noqa: E402
from catalog.ingest.service import PartitionCache  # noqa: E402
from catalog.ingest.statistics import GrowthAnalyzer  # noqa: E402
from catalog.lineage import service as lineage_service  # noqa: E402
from catalog.openlineage.events import Limits  # noqa: E402
from catalog.openlineage.validation import parse_event  # noqa: E402
from catalog.policies_in_force import Policies  # noqa: E402

SHARED_BENCH = Path(os.environ.get("CATALOG_SHARED_BENCH", ROOT.parent / "shared" / "bench"))
RESULTS = ROOT / "bench" / "results" / "lineage-latest.json"
DB_NAME = "catalog_bench_lineage"
POLICIES = Policies.load()  # the shipped policies, parsed once
CLASSIFY_STEP = "catalog.ingest.service.classify_batch"  # what --skip-classification replaces
BATCH = 2000
DEPTH = 5
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
RERUN = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)  # second runs (10% of jobs, one input swapped) from here

# Marquez 0.51 LineageDao.getLineage, verbatim but for names: its job_versions_io_mapping of the current
# job version is our job_io table (so its CTE, also called job_io there, is renamed job_arrays);
# jobs_view is jobs. `UNION` over (job, inputs, outputs, depth) rows, with
# `array_cat(...) && array_cat(...)`: the undirected overlap walk.
MARQUEZ_LINEAGE = """
WITH RECURSIVE
    job_arrays AS (
        SELECT j.id AS job_uuid,
        ARRAY_AGG(DISTINCT io.dataset_id) FILTER (WHERE io.direction = 'input') AS inputs,
        ARRAY_AGG(DISTINCT io.dataset_id) FILTER (WHERE io.direction = 'output') AS outputs
        FROM jobs j
        LEFT JOIN job_io io ON io.job_id = j.id
        GROUP BY j.id
    ),
    lineage(job_uuid, inputs, outputs) AS (
        SELECT job_uuid, inputs, outputs, 0 AS depth
        FROM job_arrays
        WHERE job_uuid = ANY($1::bigint[])
        UNION
        SELECT io.job_uuid, io.inputs, io.outputs, l.depth + 1
        FROM job_arrays io,
             lineage l
        WHERE io.job_uuid != l.job_uuid AND
        array_cat(io.inputs, io.outputs) && array_cat(l.inputs, l.outputs)
        AND depth < $2
    )
SELECT DISTINCT ON (l2.job_uuid) j.*, inputs AS input_uuids, outputs AS output_uuids
FROM lineage l2
INNER JOIN jobs j ON j.id = l2.job_uuid
"""
# LineageDao.getJobFromInputOrOutput: a dataset root is first mapped to one job touching it.
MARQUEZ_JOB_OF_DATASET = """
SELECT j.id FROM jobs j INNER JOIN job_io io ON io.job_id = j.id
WHERE io.dataset_id = $1 ORDER BY io.direction DESC, io.last_seen DESC LIMIT 1
"""
# LineageDao.getDatasetData: the datasets of every job found, with their current schema.
MARQUEZ_DATASETS = """
SELECT ds.*, dv.fields FROM datasets ds
LEFT JOIN LATERAL (SELECT fields FROM dataset_versions v WHERE v.dataset_id = ds.id
                   ORDER BY v.last_seen DESC LIMIT 1) dv ON true
WHERE ds.id = ANY($1::bigint[])
"""

# A floor for the service's walk: one bare recursive CTE per direction (directed, indexed, node ids
# only — no edges, names or as-of, and nodes reached at several depths are re-expanded).
CTE_WALK = """
WITH RECURSIVE walk(kind, id, depth) AS (
    SELECT $1::text, $2::bigint, 0
    UNION
    SELECT CASE WHEN w.kind = 'dataset' THEN 'job' ELSE 'dataset' END,
           CASE WHEN w.kind = 'dataset' THEN io.job_id ELSE io.dataset_id END,
           w.depth + 1
    FROM walk w
    JOIN job_io io ON (w.kind = 'dataset' AND io.dataset_id = w.id AND io.direction = $3)
                   OR (w.kind = 'job' AND io.job_id = w.id AND io.direction = $4)
    WHERE w.depth < $5
      AND NOT EXISTS (SELECT 1 FROM lineage_observations o WHERE o.owner_kind = 'job'
                      AND o.owner_id = io.job_id AND o.observed_at > io.last_seen)
)
SELECT DISTINCT kind, id FROM walk
"""


def load_module(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def iso(at: dt.datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def generate(n_datasets: int, seed: int) -> list[dict[str, Any]]:
    """Every job reads 2 random datasets and writes 4 of its own, so every dataset exists and is written
    once; the generator's dataset_ref supplies realistic schema/dataSource/columnLineage facets."""
    gen = load_module("gen_events", SHARED_BENCH / "gen_events.py")
    rnd = random.Random(seed)
    datasets = gen.make_datasets(rnd, n_datasets)
    n_jobs = n_datasets // 4
    events = []
    t = START
    reruns = []
    for job_no in range(n_jobs):
        product = datasets[4 * job_no]["product"]
        job = {"namespace": f"airflow-{product}", "name": f"{product}_dag_{job_no // 10}.task_{job_no}"}
        ins = rnd.sample(datasets, 2)
        outs = datasets[4 * job_no : 4 * job_no + 4]
        t += dt.timedelta(milliseconds=rnd.randint(10, 100))
        events.append(_run(gen, rnd, job, ins, outs, t))
        if rnd.random() < 0.1:
            reruns.append((job, [ins[0], rnd.choice(datasets)], outs))
    t = RERUN
    for job, ins, outs in reruns:
        t += dt.timedelta(milliseconds=rnd.randint(10, 100))
        events.append(_run(gen, rnd, job, ins, outs, t))
    return events


def _run(
    gen: Any, rnd: random.Random, job: dict[str, Any], ins: list[Any], outs: list[Any], t: dt.datetime
) -> Any:
    return {
        "eventType": "COMPLETE",
        "eventTime": iso(t),
        "producer": gen.PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": gen.uuid7(rnd, t), "facets": {}},
        "job": {**job, "facets": {}},
        "inputs": [gen.dataset_ref(d, None, rnd) for d in ins],
        "outputs": [gen.dataset_ref(d, ins, rnd) for d in outs],
    }


async def _no_classification(*_: Any, **__: Any) -> None:
    """Stands in for catalog.ingest.service.classify_batch under --skip-classification."""


async def load(url: str, events: list[dict[str, Any]], *, classify: bool = True) -> float:
    limits = Limits(latest_skew=dt.timedelta(days=3650))
    engine = create_engine(url, pool_size=2)
    partitions = PartitionCache()
    analyzer = GrowthAnalyzer(engine)  # as the service's ingest writer does
    started = time.perf_counter()
    skip = contextlib.nullcontext() if classify else patch(CLASSIFY_STEP, new=_no_classification)
    try:
        for i in range(0, len(events), BATCH):
            parsed = [parse_event(e, limits=limits) for e in events[i : i + BATCH]]
            await partitions.ensure(engine, [e.event_time for e in parsed])
            async with raw_transaction(engine) as raw:
                with skip:
                    outcome = await append_and_project(raw, parsed, POLICIES)
            await analyzer.maybe_analyze(outcome.stored)
            print(f"  loaded {min(i + BATCH, len(events))}/{len(events)} events", end="\r", flush=True)
        print()
        async with raw_transaction(engine) as raw:
            await raw.execute("ANALYZE")
    finally:
        await engine.dispose()
    return time.perf_counter() - started


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
    }


async def timed(samples: list[float], call: Callable[[], Awaitable[Any]]) -> Any:
    started = time.perf_counter()
    result = await call()
    samples.append(time.perf_counter() - started)
    return result


async def measure(url: str, queries: int, baseline_queries: int, seed: int) -> dict[str, Any]:
    rnd = random.Random(seed)
    raw = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    datasets = await raw.fetch(
        "SELECT d.id, n.name AS namespace, d.name FROM datasets d JOIN namespaces n ON n.id = d.namespace_id"
    )
    jobs = await raw.fetch(
        "SELECT j.id, n.name AS namespace, j.name FROM jobs j JOIN namespaces n ON n.id = j.namespace_id"
    )
    field_roots = (
        "SELECT n.name AS namespace, d.name AS dataset, f.path FROM dataset_fields f "
        "JOIN datasets d ON d.id = f.dataset_id JOIN namespaces n ON n.id = d.namespace_id "
        "WHERE f.id IN (SELECT target_field_id FROM column_edges {sample}) LIMIT 5000"
    )
    fields = await raw.fetch(field_roots.format(sample="TABLESAMPLE SYSTEM (5)"))
    if not fields:  # a small graph: 5% of its pages may hold no edge at all
        fields = await raw.fetch(field_roots.format(sample=""))
    if not fields:
        raise SystemExit("no column edges were loaded: nothing to measure column lineage on")
    counts = {
        t: await raw.fetchval(f"SELECT count(*) FROM {t}")
        for t in (
            "datasets",
            "jobs",
            "job_io",
            "column_edges",
            "dataset_fields",
            "lineage_observations",
            "event_log",
        )
    }
    print("graph:", counts)
    # Half dataset roots, half job roots (a small graph caps the number of distinct roots).
    queries = min(queries, len(datasets))
    roots: list[tuple[Literal["dataset", "job"], Any]] = [
        ("dataset", r) if i % 2 == 0 else ("job", rnd.choice(jobs))
        for i, r in enumerate(rnd.sample(list(datasets), queries))
    ]
    engine = create_engine(url, pool_size=2)
    results: dict[str, Any] = {"graph": counts}
    sizes: list[int] = []

    async def one(kind: Literal["dataset", "job"], r: Any, as_of: dt.datetime | None = None) -> Any:
        async with engine.connect() as conn, conn.begin():
            return await lineage_service.lineage(
                conn,
                kind=kind,
                namespace=r["namespace"],
                name=r["name"],
                direction="BOTH",
                depth=DEPTH,
                as_of=as_of,
            )

    for kind, r in roots[:20]:  # warm-up: prepared statements, caches
        await one(kind, r)
    samples: list[float] = []
    for kind, r in roots:
        graph = await timed(samples, functools.partial(one, kind, r))
        sizes.append(len(graph.nodes))
    results["service"] = percentiles(samples) | {
        "mean_nodes": round(statistics.fmean(sizes), 1),
        "max_nodes": max(sizes),
    }
    print("service      ", results["service"])

    samples = []
    as_of = RERUN + dt.timedelta(days=1)
    for kind, r in roots:
        await timed(samples, functools.partial(one, kind, r, as_of))
    results["service_asof"] = percentiles(samples)
    print("service_asof ", results["service_asof"])

    results["graphql"] = await measure_graphql(url, roots)
    print("graphql      ", results["graphql"])

    samples = []
    column_sizes: list[int] = []

    async def col(f: Any) -> Any:
        async with engine.connect() as conn, conn.begin():
            return await lineage_service.column_lineage(
                conn,
                namespace=f["namespace"],
                dataset=f["dataset"],
                field=f["path"],
                direction="BOTH",
                depth=DEPTH,
            )

    picks = [rnd.choice(fields) for _ in range(queries)]
    for f in picks[:20]:
        await col(f)
    for f in picks:
        graph = await timed(samples, functools.partial(col, f))
        column_sizes.append(len(graph.edges))
    results["column"] = percentiles(samples) | {"mean_edges": round(statistics.fmean(column_sizes), 1)}
    print("column       ", results["column"])

    samples = []
    for kind, r in roots:
        root_id = r["id"]

        async def cte(kind: str = kind, root_id: int = root_id) -> None:
            levels = 2 * DEPTH + (1 if kind == "job" else 0)
            await raw.fetch(CTE_WALK, kind, root_id, "output", "input", levels)
            await raw.fetch(CTE_WALK, kind, root_id, "input", "output", levels)

        await timed(samples, cte)
    results["cte"] = percentiles(samples)
    print("cte          ", results["cte"])

    samples = []
    marquez_sizes: list[int] = []
    await raw.execute("SET statement_timeout = '120s'")
    for kind, r in roots[:baseline_queries]:

        async def marquez(kind: str = kind, root_id: int = r["id"]) -> int:
            job_id = root_id if kind == "job" else await raw.fetchval(MARQUEZ_JOB_OF_DATASET, root_id)
            if job_id is None:
                return 0
            rows = await raw.fetch(MARQUEZ_LINEAGE, [job_id], DEPTH)
            ids = {d for row in rows for d in (row["input_uuids"] or []) + (row["output_uuids"] or [])}
            await raw.fetch(MARQUEZ_DATASETS, list(ids))
            return len(rows) + len(ids)

        marquez_sizes.append(await timed(samples, marquez))
    results["marquez"] = percentiles(samples) | {"mean_nodes": round(statistics.fmean(marquez_sizes), 1)}
    print("marquez      ", results["marquez"])
    await raw.close()
    await engine.dispose()
    return results


async def measure_graphql(url: str, roots: list[tuple[Literal["dataset", "job"], Any]]) -> dict[str, Any]:
    token = "bench-" + secrets.token_hex(8)
    with tempfile.TemporaryDirectory() as home:
        app = create_app(
            Settings(home=Path(home), admin_token=token, log_format="console", log_level="WARNING"), url
        )
        query = (
            "query($node: NodeInput!, $depth: Int!) { lineage(node: $node, direction: BOTH, depth: $depth) "
            "{ root nodes { id kind namespace name } edges { origin destination firstSeen lastSeen } } }"
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://catalog", headers={"Authorization": f"Bearer {token}"}
            ) as http:
                samples: list[float] = []

                async def one(kind: str, r: Any) -> None:
                    variables = {
                        "node": {"kind": kind.upper(), "namespace": r["namespace"], "name": r["name"]},
                        "depth": DEPTH,
                    }
                    response = await http.post("/graphql", json={"query": query, "variables": variables})
                    body = response.json()
                    if response.status_code != 200 or body.get("errors"):
                        raise RuntimeError(f"GraphQL lineage query failed: {body}")
                    assert body["data"]["lineage"]["root"]

                for kind, r in roots[:20]:
                    await one(kind, r)
                for kind, r in roots:
                    await timed(samples, functools.partial(one, kind, r))
    return percentiles(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--baseline-queries", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--reuse", action="store_true", help="keep (and reuse) the loaded database")
    parser.add_argument(
        "--skip-classification",
        action="store_true",
        help="load without the ingest path's PII classification step (recorded in the results)",
    )
    args = parser.parse_args()

    base = args.dsn.rsplit("/", 1)[0]
    # One database per graph size, so a --reuse'd big graph survives runs at other sizes.
    db_name = f"{DB_NAME}_{args.datasets}_{args.seed}" + ("_noclass" if args.skip_classification else "")
    url = f"{base}/{db_name}"
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db_name,)).fetchone()
        if exists and not args.reuse:
            conn.execute(f'DROP DATABASE "{db_name}" WITH (FORCE)')
            exists = None
        if not exists:
            conn.execute(f'CREATE DATABASE "{db_name}"')
    load_seconds = None
    n_events = None
    if not exists:
        migrate.upgrade(url)
        started = time.perf_counter()
        events = generate(args.datasets, args.seed)
        print(f"generated {len(events)} events in {time.perf_counter() - started:.1f}s")
        n_events = len(events)
        load_seconds = asyncio.run(load(url, events, classify=not args.skip_classification))
        print(f"loaded in {load_seconds:.1f}s ({len(events) / load_seconds:.0f} events/s)")
    try:
        results = asyncio.run(measure(url, args.queries, args.baseline_queries, args.seed))
    finally:
        if not args.reuse:
            with psycopg.connect(args.dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    speedup = results["marquez"]["p50_ms"] / max(results["service"]["p50_ms"], 1e-6)
    speedup95 = results["marquez"]["p95_ms"] / max(results["service"]["p95_ms"], 1e-6)
    out = {
        "measured_at": dt.datetime.now(dt.UTC).isoformat(),
        "params": {"datasets": args.datasets, "jobs": args.datasets // 4, "depth": DEPTH, "direction": "BOTH"}
        | {"queries": args.queries, "baseline_queries": args.baseline_queries, "seed": args.seed}
        | {"classification_during_load": not args.skip_classification},
        "load": {"events": n_events, "seconds": round(load_seconds, 1) if load_seconds else None},
        **results,
        "speedup_vs_marquez_p50": round(speedup, 1),
        "speedup_vs_marquez_p95": round(speedup95, 1),
        "target_p95_ms": 50,
        "graphql_p95_meets_target": results["graphql"]["p95_ms"] <= 50,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"speed-up over Marquez's query: x{speedup:.1f} at p50, x{speedup95:.1f} at p95 -> {RESULTS}")


if __name__ == "__main__":
    main()
