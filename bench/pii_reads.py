#!/usr/bin/env python3
"""PII reads on the classified lineage-benchmark graph: one dataset's classifications (with their paths),
a column's flow, one namespace's inventory — what a steward or an auditor asks, timed on a large closure.

    .venv/bin/python bench/pii_reads.py [--datasets 100000] [--seed 7] [--samples 30]
                                        [--dsn postgresql://postgres@127.0.0.1:5432/postgres]

Reads the database `bench/classification.py --reuse` (or `bench/lineage.py --reuse`) left loaded with
classification on for the same size and seed; it loads nothing itself. Prints a table and writes
bench/results/pii-reads-latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from catalog.classification import service  # noqa: E402
from catalog.db.engine import create_engine, driver_connection  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "pii-reads-latest.json"


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


async def measure(url: str, samples: int, seed: int) -> dict[str, Any]:
    rnd = random.Random(seed)
    engine = create_engine(url, pool_size=2)
    try:
        # The services take an SQLAlchemy connection (the one idiom); the bench's own lookups go straight
        # to asyncpg on the same connection and transaction.
        async with engine.begin() as sa:
            conn = await driver_connection(sa)
            n_datasets = await conn.fetchval("SELECT count(*) FROM datasets")
            rows = await conn.fetchval("SELECT count(*) FROM classifications WHERE source = 'propagated'")
            if not rows:
                raise SystemExit(
                    "no propagated classifications: load the graph with bench/classification.py first"
                )
            ids = sorted(await conn.fetchval("SELECT array_agg(id) FROM datasets"))
            picked = rnd.sample(ids, min(samples, len(ids)))
            per_dataset: list[float] = []
            depths: list[int] = []
            for dataset_id in picked:
                started = time.perf_counter()
                found = await service.classifications_for_datasets(sa, [dataset_id])
                per_dataset.append(time.perf_counter() - started)
                depths.extend(c["depth"] for c in found.get(dataset_id, []))
            fields = await conn.fetch(
                "SELECT n.name AS ns, d.name AS ds, f.path FROM dataset_fields f "
                "JOIN datasets d ON d.id = f.dataset_id JOIN namespaces n ON n.id = d.namespace_id "
                "WHERE f.dataset_id = ANY($1::bigint[])",
                picked,
            )
            flows: list[float] = []
            hops: list[int] = []
            for f in rnd.sample(list(fields), min(samples, len(fields))):
                started = time.perf_counter()
                flow = await service.pii_flow(
                    sa, namespace=f["ns"], dataset=f["ds"], field=f["path"], max_depth=3
                )
                flows.append(time.perf_counter() - started)
                hops.append(len(flow["hops"]) if flow else 0)
            namespace = rnd.choice(
                [r["name"] for r in await conn.fetch("SELECT name FROM namespaces ORDER BY name")]
            )
            started = time.perf_counter()
            _, total = await service.pii_inventory(sa, namespace=namespace, limit=100)
            inventory_s = time.perf_counter() - started
    finally:
        await engine.dispose()
    return {
        "graph": {"datasets": n_datasets, "propagated_rows": rows},
        "dataset_classifications": summary(per_dataset)
        | {"mean_rows": round(len(depths) / len(picked), 1), "max_depth": max(depths, default=0)},
        "pii_flow_depth3": summary(flows) | {"mean_hops": round(statistics.fmean(hops), 1)},
        "pii_inventory_namespace_page": {
            "namespace": namespace,
            "items": total,
            "ms": round(inventory_s * 1000, 1),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--datasets", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    db_name = f"catalog_bench_lineage_{args.datasets}_{args.seed}"  # bench/lineage.py's DB_NAME scheme
    url = make_url(args.dsn).set(database=db_name).render_as_string(hide_password=False)
    results = asyncio.run(measure(url, args.samples, args.seed))
    out = {"measured_at": dt.datetime.now(dt.UTC).isoformat(), "params": vars(args), **results}
    for name in ("dataset_classifications", "pii_flow_depth3", "pii_inventory_namespace_page"):
        print(f"{name:<30} {results[name]}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"-> {RESULTS}")


if __name__ == "__main__":
    main()
