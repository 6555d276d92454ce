"""Keep the planner's statistics up with a fast-growing catalog.

The incremental statements that follow each ingest (propagation of classifications, findings) are only
cheap with index plans, and PostgreSQL picks those only when it knows the tables are big. Autovacuum
re-analyzes a table once 10% of it changed, but it wakes once a minute: during a backfill or the first
minutes of a new catalog the tables grow tenfold between two naps, the planner still believes they are
empty, and a 2 ms statement turns into a 200 ms sequential scan per transaction (measured on the ingest
benchmark). So the ingest path counts what it wrote and runs ANALYZE itself whenever the catalog has
grown by half since the last time; on a steady-state catalog that almost never happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.db.engine import raw_connection

log = logging.getLogger(__name__)

# The tables whose size the ingest-time statements depend on (projection, classification, findings).
ANALYZED_TABLES = (
    "namespaces",
    "datasets",
    "dataset_fields",
    "jobs",
    "job_io",
    "runs",
    "facets",
    "column_edges",
    "classifications",
    "findings",
    "product_assignments",
    "ownership_claims",
    "lineage_observations",
)


async def analyze_catalog(raw: asyncpg.Connection[Any]) -> None:
    """ANALYZE the catalog's tables; inside a transaction it sees that transaction's own rows (rebuild).

    ANALYZE takes no lock that blocks ingest (SHARE UPDATE EXCLUSIVE). Tables that do not exist (an
    older schema revision) are skipped.
    """
    existing = await raw.fetchval(
        "SELECT coalesce(array_agg(relname::text), '{}') FROM pg_class "
        "WHERE relkind = 'r' AND relname = ANY($1::text[]) AND pg_table_is_visible(oid)",
        list(ANALYZED_TABLES),
    )
    if existing:
        await raw.execute("ANALYZE " + ", ".join(f'"{name}"' for name in sorted(existing)))


class GrowthAnalyzer:
    """Counts ingested events; ANALYZEs the catalog when it has grown by `growth` since the last run."""

    def __init__(self, engine: AsyncEngine, *, growth: float = 0.5, minimum: int = 200) -> None:
        self._engine = engine
        self._growth = growth
        self._minimum = minimum
        self._since = 0  # events stored since the last ANALYZE by this process
        self._baseline = 0  # events stored in total when it ran
        self._behind: asyncio.Task[None] | None = None

    def start_from(self, events: int) -> None:
        """The catalog already holds about `events` events: ANALYZE only once it has grown from there."""
        self._baseline = max(self._baseline, events)

    def due(self, stored: int) -> bool:
        self._since += stored
        return self._since >= max(self._minimum, self._growth * self._baseline)

    async def maybe_analyze(self, stored: int) -> None:
        if self.due(stored):
            await self._analyze(self._since)

    def analyze_behind(self, stored: int) -> None:
        """`maybe_analyze` without holding up the caller: ANALYZE runs on its own connection while the
        projector goes on (inline, each run stalled the projector for its duration: the first seconds of
        a live stream on a new catalog showed a lag of 4 s). One run at a time; failures are logged
        (statistics are an optimisation)."""
        if self._behind is not None and not self._behind.done():
            self._since += stored  # counted toward the next run
        elif self.due(stored):
            self._behind = asyncio.create_task(self._logged(self._analyze(self._since)), name="analyze")

    async def _analyze(self, counted: int) -> None:
        """ANALYZE now; `counted` of the events since the last run are covered by it."""
        started = time.perf_counter()
        async with self._engine.connect() as conn:
            await analyze_catalog(await raw_connection(conn))
        self._baseline += counted
        self._since -= counted
        log.info(
            "analyzed the catalog after %d events (%.0f ms)",
            self._baseline,
            1000 * (time.perf_counter() - started),
        )

    @staticmethod
    async def _logged(run: Coroutine[Any, Any, None]) -> None:
        try:
            await run
        except Exception as exc:
            log.warning("ANALYZE behind the projector failed: %s", exc)

    async def stop(self) -> None:
        if self._behind is not None:
            self._behind.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._behind
            self._behind = None
