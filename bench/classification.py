#!/usr/bin/env python3
"""Propagation cost per ingested event on the lineage benchmark's graph, against the same ingest without
classification, measured in the same run.

    .venv/bin/python bench/classification.py [--datasets 100000] [--events 300] [--decisions 30] [--seed 7]
                                             [--dsn postgresql://postgres@127.0.0.1:5432/postgres] [--reuse]

Without --dsn an embedded PostgreSQL is started in a temporary directory (and removed afterwards).

1. Loads bench/lineage.py's graph (same generator and seed: every job reads 2 random datasets and writes 4,
   realistic PII columns, 30% of PII column edges masked) through the batch ingest path, so detection and
   propagation already ran over it; `--reuse` keeps the database between runs (the same database as
   `bench/lineage.py --reuse` for the same size and seed, so the graph is loaded once for both).
2. For `--events` single events — reruns of random existing jobs with two fresh random inputs, so each one
   brings new column edges whose PII must be propagated downstream of its outputs — measures, each in its
   own transaction that is rolled back afterwards (every sample sees the same graph), interleaved:
     ingest_full  append_and_project (what the batch endpoint does for one event), classification included
     ingest_bare  the same with classify_batch replaced by a no-op: the baseline
     classify     time spent inside classify_batch (detection, declared tags, propagation)
     propagate    time spent inside propagate_from, and the propagated rows it wrote
3. `--decisions` steward decisions (`add` PII.CPF on a random field that feeds others): the largest
   incremental step, re-propagating everything downstream of the field.
4. Prints a table and writes bench/results/classification-latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.util
import json
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import catalog.classification.decisions as classification_decisions  # noqa: E402
import catalog.classification.ingest_hook as classification_hook  # noqa: E402
import catalog.ingest.service as ingest_service  # noqa: E402
from catalog.classification.ingest_hook import classify_batch  # noqa: E402
from catalog.classification.propagate import propagate_from  # noqa: E402
from catalog.db import migrate  # noqa: E402
from catalog.db.embedded import EmbeddedPostgres  # noqa: E402
from catalog.db.engine import create_engine, libpq_dsn, raw_connection  # noqa: E402
from catalog.ingest.projector import append_and_project  # noqa: E402
from catalog.ingest.service import PartitionCache  # noqa: E402
from catalog.openlineage.events import Limits  # noqa: E402
from catalog.openlineage.validation import parse_event  # noqa: E402
from catalog.policies_in_force import Policies  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "classification-latest.json"
MEASURE_FROM = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)  # after everything the load wrote


def load_module(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lineage_bench = load_module("bench_lineage", ROOT / "bench" / "lineage.py")


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


class Stopwatch:
    """Wraps an async function, adding the time spent in it (and what it returned) to lists."""

    def __init__(self, inner: Callable[..., Awaitable[Any]]) -> None:
        self.inner = inner
        self.seconds: list[float] = []
        self.results: list[Any] = []

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = await self.inner(*args, **kwargs)
        self.seconds.append(time.perf_counter() - started)
        self.results.append(result)
        return result

    def take(self) -> tuple[float, Any]:
        """Total time and last result since the previous take (one measured operation)."""
        total, last = sum(self.seconds), self.results[-1] if self.results else None
        self.seconds.clear()
        self.results.clear()
        return total, last


def patch(module: Any, name: str, value: Any) -> None:
    """Replace a function where it is looked up at call time (a module global)."""
    setattr(module, name, value)


POLICIES = Policies.load()  # the shipped policies: what the service folds by


async def no_classification(*_: Any, **__: Any) -> None:
    return None


@asynccontextmanager
async def rolled_back(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection[Any]]:
    """A transaction that is always rolled back: every sample starts from the same graph."""
    async with engine.connect() as conn:
        raw = await raw_connection(conn)
        tx = raw.transaction()
        await tx.start()
        try:
            yield raw
        finally:
            await tx.rollback()


def new_events(n: int, n_datasets: int, seed: int) -> list[dict[str, Any]]:
    """Reruns of existing jobs (same outputs) with two fresh random inputs: new column edges on every one."""
    gen = lineage_bench.load_module("gen_events", lineage_bench.SHARED_BENCH / "gen_events.py")
    datasets = gen.make_datasets(random.Random(seed), n_datasets)  # the same datasets as the load
    rnd = random.Random(seed + 1)
    n_jobs = n_datasets // 4
    events = []
    at = MEASURE_FROM
    for _ in range(n):
        job_no = rnd.randrange(n_jobs)
        product = datasets[4 * job_no]["product"]
        job = {"namespace": f"airflow-{product}", "name": f"{product}_dag_{job_no // 10}.task_{job_no}"}
        at += dt.timedelta(seconds=1)
        ins = rnd.sample(datasets, 2)
        events.append(lineage_bench._run(gen, rnd, job, ins, datasets[4 * job_no : 4 * job_no + 4], at))
    return events


async def measure(url: str, n_datasets: int, n_events: int, n_decisions: int, seed: int) -> dict[str, Any]:
    limits = Limits(latest_skew=dt.timedelta(days=3650))
    parsed = [parse_event(e, limits=limits) for e in new_events(n_events, n_datasets, seed)]
    engine = create_engine(url, pool_size=2)
    # Patched by name where they are looked up at call time (ingest's service, classification's hook and decisions).
    classify = Stopwatch(classify_batch)
    propagate = Stopwatch(propagate_from)
    full: list[float] = []
    bare: list[float] = []
    classify_s: list[float] = []
    propagate_s: list[float] = []
    rows_written: list[int] = []
    decision_s: list[float] = []
    decision_rows: list[int] = []
    try:
        await PartitionCache().ensure(engine, [e.event_time for e in parsed])
        patch(classification_hook, "propagate_from", propagate)
        patch(classification_decisions, "propagate_from", propagate)
        for i, event in enumerate(parsed):
            # Alternate which variant goes first so caches warmed by one do not favour the other.
            variants: Iterable[bool] = (True, False) if i % 2 == 0 else (False, True)
            for with_classification in variants:
                patch(
                    ingest_service, "classify_batch", classify if with_classification else no_classification
                )
                async with rolled_back(engine) as raw:
                    started = time.perf_counter()
                    await append_and_project(raw, [event], POLICIES)
                    elapsed = time.perf_counter() - started
                if with_classification:
                    full.append(elapsed)
                    classify_s.append(classify.take()[0])
                    seconds, rows = propagate.take()
                    propagate_s.append(seconds)
                    rows_written.append(int(rows or 0))
                else:
                    bare.append(elapsed)
            print(f"  measured {i + 1}/{len(parsed)} events", end="\r", flush=True)
        print()

        async with engine.connect() as conn:
            raw = await raw_connection(conn)
            feeders = await raw.fetch(
                "SELECT n.name AS namespace, d.name AS dataset, f.path FROM "
                "(SELECT DISTINCT source_field_id FROM column_edges ORDER BY 1 LIMIT 20000) e "
                "JOIN dataset_fields f ON f.id = e.source_field_id JOIN datasets d ON d.id = f.dataset_id "
                "JOIN namespaces n ON n.id = d.namespace_id"
            )
        rnd = random.Random(seed + 2)
        for row in rnd.sample(list(feeders), min(n_decisions, len(feeders))):
            async with engine.connect() as conn, conn.begin() as tx:
                started = time.perf_counter()
                await classification_decisions.record_decision(
                    conn,
                    namespace=row["namespace"],
                    dataset=row["dataset"],
                    field=row["path"],
                    tag="PII.CPF",
                    action="add",
                    reason="benchmark",
                    author="bench",
                )
                decision_s.append(time.perf_counter() - started)
                await tx.rollback()  # every sample starts from the same graph
            decision_rows.append(int(propagate.take()[1] or 0))
    finally:
        patch(ingest_service, "classify_batch", classify_batch)
        patch(classification_hook, "propagate_from", propagate_from)
        patch(classification_decisions, "propagate_from", propagate_from)
        await engine.dispose()

    overhead = [f - b for f, b in zip(full, bare, strict=True)]
    return {
        "ingest_full": percentiles(full),
        "ingest_bare": percentiles(bare),
        "classify": percentiles(classify_s),
        "propagate": percentiles(propagate_s),
        "overhead_vs_bare": percentiles(overhead),
        "classify_share_of_ingest_mean": round(statistics.fmean(classify_s) / statistics.fmean(full), 3),
        "propagated_rows_written": {
            "mean": round(statistics.fmean(rows_written), 1),
            "p95": sorted(rows_written)[max(0, int(len(rows_written) * 0.95) - 1)],
            "max": max(rows_written),
        },
        "steward_decision": percentiles(decision_s) if decision_s else None,
        "steward_decision_rows_written": {
            "mean": round(statistics.fmean(decision_rows), 1),
            "max": max(decision_rows),
        }
        if decision_rows
        else None,
    }


def database_name(n_datasets: int, seed: int) -> str:
    """The lineage benchmark's database name for the same graph: with --reuse, either bench loads it once."""
    return f"{lineage_bench.DB_NAME}_{n_datasets}_{seed}"


def prepare(admin_dsn: str, reuse: bool, n_datasets: int, seed: int) -> tuple[str, dict[str, Any]]:
    """Create (or reuse) the benchmark database on the server and load the graph; returns its URL."""
    db_name = database_name(n_datasets, seed)
    url = make_url(admin_dsn).set(database=db_name).render_as_string(hide_password=False)
    load: dict[str, Any] = {"reused": True}
    with psycopg.connect(libpq_dsn(admin_dsn), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db_name,)).fetchone()
        if exists and not reuse:
            conn.execute(f'DROP DATABASE "{db_name}" WITH (FORCE)')
            exists = None
        if not exists:
            conn.execute(f'CREATE DATABASE "{db_name}"')
    if not exists:
        migrate.upgrade(url)
        events = lineage_bench.generate(n_datasets, seed)
        seconds = asyncio.run(lineage_bench.load(url, events))
        print(f"loaded {len(events)} events in {seconds:.1f}s ({len(events) / seconds:.0f} events/s)")
        load = {"reused": False, "events": len(events), "seconds": round(seconds, 1)}
    return url, load


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--datasets", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--decisions", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dsn", help="an admin DSN on a PostgreSQL server (default: an embedded one)")
    parser.add_argument("--reuse", action="store_true", help="keep (and reuse) the loaded database")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    # A SIGTERM (e.g. `timeout`) unwinds through the finally blocks, so the embedded server is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    embedded: EmbeddedPostgres | None = None
    home: str | None = None
    if args.dsn:
        admin = args.dsn
    else:
        home = tempfile.mkdtemp(prefix="catalog-bench-", dir="/tmp")
        embedded = EmbeddedPostgres(Path(home))
        admin = embedded.start()
    try:
        url, load = prepare(admin, args.reuse, args.datasets, args.seed)
        try:
            results = asyncio.run(measure(url, args.datasets, args.events, args.decisions, args.seed))
        finally:
            if not args.reuse:
                with psycopg.connect(libpq_dsn(admin), autocommit=True) as conn:
                    conn.execute(
                        f'DROP DATABASE IF EXISTS "{database_name(args.datasets, args.seed)}" WITH (FORCE)'
                    )
    finally:
        if embedded is not None:
            embedded.destroy()
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)

    out = {
        "measured_at": dt.datetime.now(dt.UTC).isoformat(),
        "params": {
            "datasets": args.datasets,
            "jobs": args.datasets // 4,
            "events": args.events,
            "decisions": args.decisions,
            "seed": args.seed,
        },
        "load": load,
        **results,
    }
    for name in (
        "ingest_bare",
        "ingest_full",
        "classify",
        "propagate",
        "overhead_vs_bare",
        "steward_decision",
    ):
        row = results[name]
        if row:
            print(f"{name:<18} p50 {row['p50_ms']:>8.2f} ms   p95 {row['p95_ms']:>8.2f} ms   n {row['n']}")
    print(
        f"classification is {results['classify_share_of_ingest_mean']:.0%} of a single event's ingest time; "
        f"propagated rows written per event: mean {results['propagated_rows_written']['mean']}, "
        f"max {results['propagated_rows_written']['max']}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
