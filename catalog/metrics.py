"""Prometheus metrics of one service process: HTTP requests by route template and status
(prometheus-fastapi-instrumentator), and the catalog's own — events accepted / duplicate / rejected,
authorisation denials, open findings by rule and severity, the projection's lag behind the event log,
the database connection pool, and this process's projector process.

Counters are per process (as Prometheus expects: each process is scraped as its own target). The
findings gauge comes from the database, so every process reports the same catalog-wide numbers; it is
computed at scrape time by one aggregate query, cached for a few seconds, never on the request path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:  # the policy and ingest domains import the counters; they import no web framework
    from starlette.applications import Starlette

log = logging.getLogger("catalog.metrics")

# Module-level like every prometheus_client metric: recorded where the event happens (the ingest route,
# `record_denial` in the policy domain) without an app at hand, and registered into each app's registry
# below (a collector may belong to several registries). Tests read them as differences between scrapes.
INGEST_EVENTS = Counter(
    "catalog_ingest_events",
    "OpenLineage events received by this process, by outcome: accepted (stored), duplicate (already "
    "stored), rejected (refused by validation or authorisation; nothing stored).",
    ["outcome"],
    registry=None,
)
DENIALS = Counter(
    "catalog_authorization_denials",
    "Access decisions that denied and were recorded (REST 403s, GraphQL FORBIDDEN errors, rows "
    "hidden from a many-product result), by Casbin object, action and the rule that denied.",
    ["object", "action", "rule"],
    registry=None,
)
for _outcome in ("accepted", "duplicate", "rejected"):
    INGEST_EVENTS.labels(_outcome)  # exported as 0 from the start, so rate() sees the first event

# Latency buckets (seconds): the ingest path answers in milliseconds, exports take seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
KNOWN_PATHS = 4096  # request paths whose route template is kept (RouteTemplateMiddleware)


def count_events(*, accepted: int = 0, duplicate: int = 0, rejected: int = 0) -> None:
    for outcome, n in (("accepted", accepted), ("duplicate", duplicate), ("rejected", rejected)):
        if n:
            INGEST_EVENTS.labels(outcome).inc(n)


def count_denial(obj: str, act: str, rule: str) -> None:
    # A grant's object is `grant:<id>`: keep the label set bounded by the policy, not by the grants.
    DENIALS.labels(obj.split(":", 1)[0], act, rule).inc()


OPEN_FINDINGS_SQL = text(
    "SELECT rule, severity, count(*) AS n FROM findings WHERE status = 'open' GROUP BY rule, severity"
)


class OpenFindings:
    """`catalog_findings_open{rule, severity}`: one aggregate query at most every `ttl` seconds, whoever
    scrapes (several scrapers, or a scrape storm, share the cached answer)."""

    def __init__(self, engine: Callable[[], AsyncEngine], ttl: float) -> None:
        self._engine = engine
        self._ttl = ttl
        self._rows: list[tuple[str, str, int]] = []
        self._fresh_until = 0.0
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        """Re-read the counts if the cached ones are older than `ttl`. A database that is down keeps the
        last answer (the scrape still shows the HTTP and pool metrics that say why)."""
        if time.monotonic() < self._fresh_until:
            return
        async with self._lock:
            if time.monotonic() < self._fresh_until:
                return
            try:
                async with self._engine().connect() as conn:
                    result = await conn.execute(OPEN_FINDINGS_SQL)
                    self._rows = [(r.rule, r.severity, int(r.n)) for r in result]
            except Exception:
                # Monitoring matters most during an outage: answer with the last counts, try again
                # at the next scrape (readiness and the pool gauges tell what is wrong).
                log.warning("open findings could not be counted; the last counts are exported", exc_info=True)
                return
            self._fresh_until = time.monotonic() + self._ttl

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "catalog_findings_open",
            "Open governance findings, by rule and severity (from the database: the same in every process).",
            labels=["rule", "severity"],
        )
        for rule, severity, n in self._rows:
            family.add_metric([rule, severity], n)
        yield family


class ProjectionLag:
    """`catalog_projection_*`: how far the projector is behind the log (position, lag in events and seconds,
    set-aside events), from `projector_state` at most every `ttl` seconds: the same in every process."""

    def __init__(self, engine: Callable[[], AsyncEngine], ttl: float) -> None:
        self._engine = engine
        self._ttl = ttl
        self.values: dict[str, float] = {}
        self._fresh_until = 0.0
        self._lock = asyncio.Lock()

    async def refresh(self) -> dict[str, float]:
        if time.monotonic() < self._fresh_until:
            return self.values
        async with self._lock:
            if time.monotonic() < self._fresh_until:
                return self.values
            from catalog.db.engine import raw_connection
            from catalog.ingest.projector import status

            try:
                async with self._engine().connect() as conn:
                    state = await status(await raw_connection(conn))
            except Exception:
                log.warning(
                    "the projection lag could not be read; the last values are exported", exc_info=True
                )
                return self.values
            self.values = {
                "position": float(state.position),
                "head": float(state.head),
                "lag_events": float(state.lag_events),
                "lag_seconds": state.lag_seconds,
                "set_aside": float(state.set_aside),
            }
            self._fresh_until = time.monotonic() + self._ttl
        return self.values

    def collect(self) -> Iterable[Metric]:
        described = {
            "position": "The last event-log position the projector folded into the catalog.",
            "head": "The last position in the event log.",
            "lag_events": "Events logged (acknowledged) and not yet projected.",
            "lag_seconds": "How long the oldest event not yet projected has waited (0: none).",
            "set_aside": "Events the projector could not fold, set aside with their error.",
        }
        for name, value in self.values.items():
            family = GaugeMetricFamily(f"catalog_projection_{name}", described[name])
            family.add_metric([], value)
            yield family


class PoolUse:
    """`catalog_db_pool_*`: the SQLAlchemy pool of this process's engine, read at scrape time."""

    def __init__(self, engine: Callable[[], AsyncEngine | None]) -> None:
        self._engine = engine

    def collect(self) -> Iterable[Metric]:
        engine = self._engine()
        if engine is None:
            return
        pool: Any = engine.pool
        size = GaugeMetricFamily("catalog_db_pool_size", "Connections the pool keeps open (its size).")
        size.add_metric([], float(pool.size()))
        used = GaugeMetricFamily(
            "catalog_db_pool_checked_out", "Connections in use by a request or a background task now."
        )
        used.add_metric([], float(pool.checkedout()))
        idle = GaugeMetricFamily("catalog_db_pool_idle", "Open connections waiting in the pool.")
        idle.add_metric([], float(pool.checkedin()))
        overflow = GaugeMetricFamily(
            "catalog_db_pool_overflow", "Connections opened beyond the pool size (negative: not yet opened)."
        )
        overflow.add_metric([], float(pool.overflow()))
        yield from (size, used, idle, overflow)


@runtime_checkable
class ChildProcess(Protocol):
    """What the metrics read of a service process's projector process (catalog/ingest/projector_process.py)."""

    @property
    def pid(self) -> int | None: ...
    @property
    def alive(self) -> bool: ...

    leading: bool
    yielding: bool
    paused_seconds: float
    restarts: int


class ProjectorProcessUse:
    """`catalog_projector_process_*`: this service process's projector process — whether it runs, whether
    it leads, how often it was started again, and prometheus_client's process metrics of it (resident
    memory, CPU seconds, open files: the `process_*` ones are this process's alone). Nothing when the
    projector runs on a thread or not at all."""

    def __init__(self, projector: Callable[[], object | None]) -> None:
        self._projector = projector
        # Read from /proc/<its pid> at scrape time; a pid that is not there (none yet, just ended) yields nothing.
        self._process = ProcessCollector(namespace="catalog_projector", pid=self._pid, registry=None)

    def _pid(self) -> str:
        child = self._projector()
        return str(child.pid) if isinstance(child, ChildProcess) and child.alive else "none"

    def collect(self) -> Iterable[Metric]:
        child = self._projector()
        if not isinstance(child, ChildProcess):
            return
        up = GaugeMetricFamily(
            "catalog_projector_process_up", "1 while this process's projector process runs."
        )
        up.add_metric([], 1.0 if child.alive else 0.0)
        leading = GaugeMetricFamily(
            "catalog_projector_process_leading",
            "1 while this process's projector process is the active projector.",
        )
        leading.add_metric([], 1.0 if child.leading else 0.0)
        restarts = CounterMetricFamily(
            "catalog_projector_process_restarts",
            "Times the projector process died on its own and was started again (a crash loop shows here).",
        )
        restarts.add_metric([], float(child.restarts))
        yielding = GaugeMetricFamily(
            "catalog_projector_process_yielding",
            "1 while the projector process folds only a share of the time, this process being CPU-bound "
            "accepting (CATALOG_PROJECTOR_BUSY_SHARE).",
        )
        yielding.add_metric([], 1.0 if child.yielding else 0.0)
        paused = CounterMetricFamily(
            "catalog_projector_process_paused_seconds",
            "Seconds the projector process paused to leave the CPU to this process's accepting.",
        )
        paused.add_metric([], child.paused_seconds)
        yield from (up, leading, restarts, yielding, paused)
        yield from self._process.collect()


class CatalogMetrics:
    """The registry of one app: HTTP metrics, the catalog's counters, findings and pool gauges, and the
    process collectors (CPU, memory, file descriptors, GC). One per app, so tests may build many apps in
    one process."""

    def __init__(
        self,
        engine: Callable[[], AsyncEngine | None],
        *,
        findings_ttl: float,
        projector: Callable[[], object | None] = lambda: None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR, INGEST_EVENTS, DENIALS):
            self.registry.register(collector)

        def required() -> AsyncEngine:
            found = engine()
            if found is None:
                raise RuntimeError("the app has not started")
            return found

        self.findings = OpenFindings(required, findings_ttl)
        self.registry.register(self._as_collector(self.findings))
        # A second at most: the lag is what operators watch for freshness.
        self.projection = ProjectionLag(required, min(findings_ttl, 1.0))
        self.registry.register(self._as_collector(self.projection))
        self.registry.register(self._as_collector(PoolUse(engine)))
        self.registry.register(self._as_collector(ProjectorProcessUse(projector)))

    @staticmethod
    def _as_collector(source: OpenFindings | ProjectionLag | PoolUse | ProjectorProcessUse) -> Collector:
        class _Adapter(Collector):
            def collect(self) -> Iterable[Metric]:
                return source.collect()

        return _Adapter()

    def instrument(self, app: Starlette) -> None:
        """Count and time every request by route template (`/api/v1/namespaces/{namespace}`, never the
        raw path, so the label set stays bounded), method and exact status (a 403 is not a 2xx)."""
        from prometheus_fastapi_instrumentator import metrics as http_metrics
        from prometheus_fastapi_instrumentator import routing
        from prometheus_fastapi_instrumentator.middleware import PrometheusInstrumentatorMiddleware
        from starlette.requests import Request

        class RouteTemplateMiddleware(PrometheusInstrumentatorMiddleware):
            """The library flattens FastAPI's included routers again on every request to find the route
            template: 103 µs for `POST /api/v1/lineage` here, on the ingest path. The routes are fixed
            once the app serves, so flatten them once: 7 µs. And a path's template never changes, so
            the latest paths' answers are kept (the ingest paths are always among them: ~3 % of a
            single-event ingest's CPU was this lookup). (Its two helpers are module-private; the
            dependency is pinned below the next major version.)"""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.routes: list[Any] = []  # flattened on the first request (the app is complete then)
                self.known: dict[tuple[str, str, str], tuple[str, bool]] = {}

            def _get_handler(self, request: Request) -> tuple[str, bool]:
                if not self.routes:
                    self.routes = routing._effective_routes(request.app.routes)
                scope = request.scope
                key = (scope["method"], scope.get("root_path", ""), scope["path"])
                found = self.known.get(key)
                if found is None:
                    name = routing._get_route_name(scope, self.routes)
                    found = (name, True) if name else (request.url.path, False)
                    if len(self.known) >= KNOWN_PATHS:  # bounded: paths carry names without end
                        self.known.clear()
                    self.known[key] = found
                return found

        instrumentations = [
            http_metrics.requests(registry=self.registry),
            http_metrics.latency(buckets=LATENCY_BUCKETS, registry=self.registry),
        ]
        app.add_middleware(
            RouteTemplateMiddleware,
            should_group_status_codes=False,
            should_group_untemplated=True,  # unknown paths count as handler "none"
            instrumentations=[i for i in instrumentations if i is not None],
            registry=self.registry,
        )

    async def render(self) -> bytes:
        """The exposition text, database-derived gauges refreshed first (within their cache)."""
        await self.findings.refresh()
        await self.projection.refresh()
        return generate_latest(self.registry)
