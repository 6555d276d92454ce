"""The FastAPI app factory: REST routers, problem+json errors, and the lifespan (engine, writer, auth)."""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from catalog import __version__
from catalog.api.consistency import WritePositionMiddleware
from catalog.api.graphql import PATH as GRAPHQL_PATH
from catalog.api.graphql import mount_graphql
from catalog.api.limits import BodyLimitMiddleware
from catalog.api.paths import routing_path
from catalog.api.rest import audit as audit_routes
from catalog.api.rest import catalog as catalog_routes
from catalog.api.rest import classification as classification_routes
from catalog.api.rest import governance as governance_routes
from catalog.api.rest import ingest as ingest_routes
from catalog.api.rest import lineage as lineage_routes
from catalog.api.rest import marquez as marquez_routes
from catalog.api.rest import operations as operations_routes
from catalog.api.rest import session as session_routes
from catalog.api.rest import tags as tags_routes
from catalog.api.rest.ingest_lane import IngestLaneMiddleware
from catalog.api.rest.problems import install_handlers
from catalog.api.text_guard import ParameterTextMiddleware, reject_marked_path_parameters
from catalog.audit.checkpointer import AuditCheckpointer
from catalog.audit.signing import kek_from_settings
from catalog.auth.service import Authenticator
from catalog.config import Settings
from catalog.db.engine import create_engine
from catalog.db.migrate import head_revisions
from catalog.db.replica import ReadRouter
from catalog.ingest.projector import ProjectorThread, Watermark
from catalog.ingest.projector_process import ProjectorProcess
from catalog.ingest.writer import IngestWriter
from catalog.metrics import CatalogMetrics
from catalog.policies_in_force import Policies
from catalog.policy.bootstrap import create_enforcer
from catalog.policy.files import PolicyFileWatcher
from catalog.policy.grants import GrantWatcher
from catalog.web import mount_web

log = logging.getLogger("catalog.http")


class EncodedSlashMiddleware:
    """Keep `%2F` (and `%25`) encoded while routing, so an OpenLineage name such as
    `postgres://db:5432` sent as one URL-encoded path segment stays one path parameter.
    Handlers receive the parameter still carrying `%2F`/`%25`; `unquote_name` finishes decoding."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw: bytes | None = scope.get("raw_path")
            if raw and b"%" in raw:
                path = routing_path(raw.split(b"?", 1)[0].decode("latin-1"))
                scope = dict(scope, path=path)
        await self.app(scope, receive, send)


class RequestLogMiddleware:
    """A request id on every request (X-Request-ID, echoed back) and one log line per request.

    An id the client did not send is this process's random prefix and a counter: 32 hex digits as a
    UUID's, unique without drawing 16 random bytes a request (uuid4 was 2 % of a single-event ingest's
    CPU under py-spy)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._prefix = secrets.token_hex(8)
        self._numbers = itertools.count()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = (
            headers.get(b"x-request-id", b"").decode("latin-1")[:64]
            or f"{self._prefix}{next(self._numbers):016x}"
        )
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            principal = scope.get("state", {}).get("principal")
            log.info(
                "%s %s %s",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "request_id": request_id,
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                    "key_id": getattr(principal, "key_id", None),
                    "product": getattr(principal, "product", None),
                },
            )


def _read_router(settings: Settings, primary: AsyncEngine) -> ReadRouter:
    replica = None
    if settings.read_database_url:
        # A short connect timeout: an unreachable replica must cost little before the primary answers.
        replica = create_engine(settings.read_database_url, pool_size=settings.pool_size, connect_timeout=2.0)
    return ReadRouter(
        primary,
        replica,
        max_wait_seconds=settings.read_your_writes_wait_seconds,
        retry_seconds=settings.replica_retry_seconds,
    )


def fastapi_telemetry() -> TelemetryConfig:
    """FastAPI's own OpenTelemetry spans and metrics: kept when the process starts with OpenTelemetry set
    up (a provider configured, `OTEL_PYTHON_*_PROVIDER`, `FASTAPI_OTEL_AUTO_CONFIGURE=true`), else off.
    FastAPI asks on every request whether a provider has been configured since, reading the environment
    three times: 2 % of a single-event ingest's CPU (py-spy), for an answer settled at startup. (Its
    helper is private; FastAPI is pinned below its next minor version.)"""
    from fastapi.telemetry._api import _unconfigured
    from opentelemetry import _logs, metrics, trace

    providers = (trace.get_tracer_provider(), metrics.get_meter_provider(), _logs.get_logger_provider())
    if os.environ.get("FASTAPI_OTEL_AUTO_CONFIGURE", "").lower() == "true" or not all(
        _unconfigured(provider) for provider in providers
    ):
        return {}
    return {"tracing": False, "metrics": False, "logs": False}


def create_app(settings: Settings, database_url: str) -> FastAPI:
    """Build the app for one database; nothing is read from the environment here."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(database_url, pool_size=settings.pool_size)
        # Every process accepts (the writer appends to the log); one of them projects (catalog/ingest).
        watermark = Watermark(engine)
        projector: ProjectorProcess | ProjectorThread
        if settings.projector_process:
            # In a child process of its own, woken by the NOTIFY of every append (nothing to call here).
            projector = ProjectorProcess(settings, database_url, watermark)
            appended = None
        else:
            projector = ProjectorThread(
                database_url,
                watermark,
                app.state.policies,
                batch_size=settings.projector_batch_size,
                standby_poll=settings.projector_standby_seconds,
            )
            appended = projector.wake
        writer = IngestWriter(
            engine,
            max_group=settings.ingest_group_max,
            appended=appended if settings.projector_enabled else None,
        )
        admin = settings.admin_token.get_secret_value() if settings.admin_token else None
        app.state.engine = engine
        # Plain reads may go to a streaming replica; access decisions never do (catalog/db/replica.py).
        app.state.read = _read_router(settings, engine)
        app.state.writer = writer
        app.state.watermark = watermark
        app.state.projector = projector
        app.state.authenticator = Authenticator(
            engine,
            admin_token=admin,
            ttl=settings.auth_cache_seconds,
            metrics_token=settings.metrics_token.get_secret_value() if settings.metrics_token else None,
        )
        grant_watcher = GrantWatcher(engine, app.state.enforcer, interval=settings.grants_poll_seconds)
        checkpointer = AuditCheckpointer(
            engine, lambda: kek_from_settings(settings), interval=settings.audit_checkpoint_seconds
        )
        await writer.start()
        if settings.projector_enabled:
            await projector.start()
        await grant_watcher.start()  # runtime grants follow the database (catalog/policy/grants.py)
        policy_watcher = PolicyFileWatcher(engine, app.state.policies.directory)
        await checkpointer.start()  # the chain's unanchored tail stays short (catalog/audit/checkpointer.py)
        await policy_watcher.start()  # policy file edits are chained too (catalog/policy/files.py)
        try:
            yield
        finally:
            await policy_watcher.stop()
            await checkpointer.stop()
            await grant_watcher.stop()
            await writer.stop()
            await projector.stop()
            await app.state.read.dispose()
            await engine.dispose()

    app = FastAPI(
        title="Lineage & governance catalog",
        version=__version__,
        description=(
            "OpenLineage ingestion into an event-sourced PostgreSQL catalog, with Marquez-compatible reads. "
            "Every endpoint except `/health` and `/ready` needs an API key: `Authorization: Bearer <key>`."
        ),
        lifespan=lifespan,
        telemetry=fastapi_telemetry(),
        docs_url=None,  # /docs and /redoc on vendored assets: catalog/web
        redoc_url=None,
        # Before any other dependency of a route (authentication included): path parameters that are
        # not storable text are a 400 naming the parameter (catalog/api/text_guard.py).
        # Then a read carrying `Catalog-Position` waits (bounded) for the projector (read-your-writes).
        dependencies=[
            Depends(reject_marked_path_parameters),
            Depends(ingest_routes.await_requested_position),
        ],
    )
    app.state.settings = settings
    # Built once from the settings and passed down (catalog/policies_in_force.py): the projector, the
    # enforcer, the findings rules and the reload endpoint share it.
    app.state.policies = Policies.from_settings(settings)
    app.state.enforcer = create_enforcer(app.state.policies)
    install_handlers(app)
    app.include_router(ingest_routes.router)
    app.include_router(lineage_routes.router)  # first: catalog's `{dataset:path}` would swallow `/versions`
    app.include_router(tags_routes.router)  # and `/tags/{tag}`
    app.include_router(catalog_routes.router)
    # after catalog's: `/events/lineage` is matched before `/events/{namespace}`
    app.include_router(marquez_routes.router)
    app.include_router(governance_routes.router)
    app.include_router(audit_routes.router)
    app.include_router(classification_routes.router)
    app.include_router(session_routes.router)
    app.include_router(operations_routes.router)  # /metrics (a credential) and /ready (open)
    app.state.migration_heads = frozenset(head_revisions())  # what /ready holds the database to
    app.state.metrics = CatalogMetrics(
        lambda: getattr(app.state, "engine", None),
        findings_ttl=settings.metrics_cache_seconds,
        projector=lambda: getattr(app.state, "projector", None),
    )
    mount_graphql(app, settings)
    mount_web(app)  # last: `/ui` and its SPA fallback, `/`, `/docs`, `/redoc`

    @app.get("/health", tags=["operations"], summary="Liveness and database reachability (no credential)")
    async def health() -> JSONResponse:
        try:
            async with app.state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return JSONResponse(
                {"status": "degraded", "database": "unavailable", "version": __version__},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        return JSONResponse({"status": "ok", "database": "ok", "version": __version__})

    # Innermost of all: single-event ingests skip FastAPI's routing (catalog/api/rest/ingest_lane.py).
    if settings.ingest_lane:
        app.add_middleware(IngestLaneMiddleware)
    # Next: it resolves the route template from the path EncodedSlashMiddleware has prepared.
    app.state.metrics.instrument(app)
    app.add_middleware(EncodedSlashMiddleware)
    app.add_middleware(WritePositionMiddleware)  # Catalog-LSN on write answers (catalog/api/consistency.py)
    app.add_middleware(ParameterTextMiddleware)  # before routing; outside EncodedSlash (see text_guard.py)
    app.add_middleware(
        BodyLimitMiddleware,
        limits={
            ingest_routes.SINGLE_PATH: settings.max_body_bytes,
            ingest_routes.BATCH_PATH: settings.max_batch_bytes,
            GRAPHQL_PATH: settings.graphql_max_body_bytes,
        },
        default=settings.max_json_body_bytes,
    )
    app.add_middleware(RequestLogMiddleware)  # outermost: every answer has a request id and a log line
    return app
