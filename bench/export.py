#!/usr/bin/env python3
"""Compliance export at scale: the corpus plus a seeded fintech scenario, exported with `catalog export`
in its own process, reporting wall time and that process's peak RSS (bounded memory = flat RSS as the
catalog grows), then verified with `catalog export verify`.

    python bench/export.py [--sizes 12000] [--datasets 20000] [--dsn postgresql://postgres@127.0.0.1:5432/postgres]

Each size runs on its own database: ingest (corpus + N generated events from ../shared/bench/gen_events.py)
with `catalog ingest`, a few audit rows (keys created and revoked), then the export and its verification.

Seeding (ingest) dominates the run and is not what is measured here, so the seeded database is kept as a
template (`bench_export_seed_<size>_<datasets>_<seed>_<digest of corpus + migrations>`) and later runs
clone it in a second: `--no-cache` always re-ingests; `--drop-cache` drops the templates and exits.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CATALOG_SHARED", ROOT.parent / "shared"))


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


def catalog(args: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Run `catalog …` in a child process: (seconds, peak RSS in MiB, stdout)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "catalog.cli", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    stdout = proc.stdout.read().decode()
    stderr = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"catalog {' '.join(args)} failed ({proc.returncode}):\n{stderr[-3000:]}")
    return elapsed, usage.ru_maxrss // 1024, stdout


def _digest() -> str:
    """Changes whenever the corpus or the schema does, so a cached seed is never stale."""
    sha = hashlib.sha256()
    for path in sorted((SHARED / "corpus" / "events").rglob("*")) + sorted(
        (ROOT / "catalog" / "migrations" / "versions").glob("*.py")
    ):
        if path.is_file():
            sha.update(path.name.encode())
            sha.update(path.read_bytes())
    return sha.hexdigest()[:8]


def _exists(admin_dsn: str, name: str) -> bool:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def _clone(admin_dsn: str, template: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')


def _seed(size: int, n_datasets: int, seed: int, work: Path, env: dict[str, str]) -> float:
    """Ingest the corpus and the generated scenario; leave a few audit rows. Returns seconds."""
    gen = load_module("gen_events", SHARED / "bench" / "gen_events.py")
    events = work / f"events-{size}.jsonl"
    with events.open("w") as handle:
        for event in gen.events(size, n_datasets, seed):
            handle.write(json.dumps(event) + "\n")
    corpus = SHARED / "corpus" / "events"
    print(
        f"  seeding: corpus + {size} generated events ({n_datasets} datasets)…", file=sys.stderr, flush=True
    )
    ingest_s, _, _ = catalog(["ingest", str(corpus), str(events)], env)
    for i in range(5):
        catalog(["keys", "create", "--name", f"bench-{i}", "--role", "engineer"], env)
    return ingest_s


def run(size: int, n_datasets: int, seed: int, admin_dsn: str, work: Path, *, cache: bool) -> dict[str, Any]:
    name = f"bench_export_{secrets.token_hex(4)}"
    template = f"bench_export_seed_{size}_{n_datasets}_{seed}_{_digest()}"
    cached = cache and _exists(admin_dsn, template)
    if cached:
        _clone(admin_dsn, template, name)
        base, _, query = admin_dsn.partition("?")
        dsn = base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")
    else:
        dsn = fresh_database(admin_dsn, name)
    env = dict(
        os.environ, CATALOG_DATABASE_URL=dsn, CATALOG_HOME=str(work / "home"), CATALOG_LOG_LEVEL="WARNING"
    )
    try:
        ingest_s: float | None = None
        if not cached:
            ingest_s = _seed(size, n_datasets, seed, work, env)
            if cache:
                _clone(admin_dsn, name, template)  # no session is left on `name`: the CLIs have exited
                print(f"  kept the seeded database as template {template}", file=sys.stderr, flush=True)
        with psycopg.connect(dsn) as conn:
            stored = conn.execute("SELECT count(*) FROM event_log").fetchone()
            datasets = conn.execute("SELECT count(*) FROM datasets").fetchone()
        bundle = work / f"bundle-{size}.zip"
        print("  exporting…", file=sys.stderr, flush=True)
        export_s, export_rss, _ = catalog(["export", "--out", str(bundle)], env)
        with zipfile.ZipFile(bundle) as zf:
            manifest = json.loads(zf.read("manifest.json"))
            uncompressed = sum(info.file_size for info in zf.infolist())
        key_id = manifest["signature"]["keyId"]
        verify_s, verify_rss, _ = catalog(["export", "verify", str(bundle), "--public-key", key_id], env)
        rows = {k: v["rows"] for k, v in manifest["sections"].items() if v.get("included")}
        return {
            "generated": size,
            "stored_events": stored[0] if stored else 0,
            "datasets": datasets[0] if datasets else 0,
            "seeded_from_cache": cached,
            "ingest_s": round(ingest_s, 1) if ingest_s is not None else None,
            "export_s": round(export_s, 2),
            "export_peak_rss_mib": export_rss,
            "verify_s": round(verify_s, 2),
            "verify_peak_rss_mib": verify_rss,
            "bundle_mib": round(bundle.stat().st_size / 2**20, 2),
            "uncompressed_mib": round(uncompressed / 2**20, 2),
            "rows": rows,
            "total_rows": sum(rows.values()),
        }
    finally:
        drop_database(admin_dsn, name)


def _drop_cache(admin_dsn: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_export\\_seed\\_%'"
            )
        ]
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            print(f"dropped {name}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="12000", help="Generated events per run (comma-separated).")
    parser.add_argument("--datasets", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--dsn", default=os.environ.get("CATALOG_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--no-cache", action="store_true", help="Always re-ingest; keep no template.")
    parser.add_argument("--drop-cache", action="store_true", help="Drop the cached seed templates and exit.")
    args = parser.parse_args()
    if args.drop_cache:
        _drop_cache(args.dsn)
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            result = run(size, args.datasets, args.seed, args.dsn, Path(tmp), cache=not args.no_cache)
            results.append(result)
            print(json.dumps(result), flush=True)
    print()
    print(
        f"{'generated':>10} {'stored':>8} {'datasets':>8} {'rows':>8} {'export s':>9} {'peak RSS MiB':>12} "
        f"{'verify s':>9} {'bundle MiB':>10}"
    )
    for r in results:
        print(
            f"{r['generated']:>10} {r['stored_events']:>8} {r['datasets']:>8} {r['total_rows']:>8} {r['export_s']:>9} "
            f"{r['export_peak_rss_mib']:>12} {r['verify_s']:>9} {r['bundle_mib']:>10}"
        )


if __name__ == "__main__":
    main()
