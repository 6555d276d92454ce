#!/usr/bin/env python3
"""Per-statement cost of one array-typed statement sent through SQLAlchemy `text()` versus straight to
asyncpg, on the same connection in the same transaction: the reason ingest's hot path (and services'
fixed, array-typed SQL, through `catalog.db.engine.driver_connection`) talks to asyncpg directly.

    .venv/bin/python bench/driver_overhead.py [--statements 3000] [--rounds 5]

An embedded PostgreSQL is started in a temporary directory and stopped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from catalog.db.embedded import EmbeddedPostgres  # noqa: E402
from catalog.db.engine import create_engine, raw_connection  # noqa: E402

IDS = list(range(100))
STATEMENT = "SELECT count(*) FROM unnest({ids}) AS u(id) WHERE u.id % 7 = 0"


async def measure(url: str, statements: int, rounds: int) -> dict[str, float]:
    """Median microseconds per statement for each way, the order alternating between rounds."""
    engine = create_engine(url, pool_size=1)
    through_sqlalchemy = text(STATEMENT.format(ids="CAST(:ids AS bigint[])")).bindparams(
        bindparam("ids", type_=ARRAY(BIGINT))
    )
    straight = STATEMENT.format(ids="$1::bigint[]")
    samples: dict[str, list[float]] = {"sqlalchemy": [], "asyncpg": []}
    try:
        async with engine.connect() as conn, conn.begin():
            await conn.execute(text("SELECT 1"))  # begins the transaction both ways then share
            raw = await raw_connection(conn)
            for n in range(rounds):
                for way in ("sqlalchemy", "asyncpg") if n % 2 == 0 else ("asyncpg", "sqlalchemy"):
                    started = time.perf_counter()
                    for _ in range(statements):
                        if way == "sqlalchemy":
                            (await conn.execute(through_sqlalchemy, {"ids": IDS})).scalar_one()
                        else:
                            await raw.fetchval(straight, IDS)
                    samples[way].append((time.perf_counter() - started) / statements * 1e6)
    finally:
        await engine.dispose()
    return {way: statistics.median(values) for way, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--statements", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="catalog-bench-", dir="/tmp"))
    embedded = EmbeddedPostgres(home)
    try:
        result = asyncio.run(measure(embedded.start(), args.statements, args.rounds))
    finally:
        embedded.stop()
        shutil.rmtree(home, ignore_errors=True)
    for way, micros in result.items():
        print(f"{way}: {micros:.0f} µs a statement (median of {args.rounds} rounds of {args.statements})")


if __name__ == "__main__":
    main()
