"""Operator endpoints: `/metrics` (Prometheus, needs a credential) and `/ready` (readiness, open like
`/health`). `/health` says "this process is alive"; `/ready` says "send me traffic": the database
answers and its schema is at the revision this code expects."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from catalog import __version__
from catalog.api.rest.problems import problem_responses
from catalog.api.rest.requires import Requires
from catalog.auth.service import Principal
from catalog.db.readiness import applied_revisions
from catalog.metrics import CatalogMetrics

router = APIRouter(tags=["operations"])

METRICS_PATH = "/metrics"
READY_PATH = "/ready"


@router.get(
    METRICS_PATH,
    summary="Prometheus metrics of this process (admin, auditor, or CATALOG_METRICS_TOKEN)",
    description=(
        "The Prometheus text format: HTTP requests by route template, method and status; events accepted, "
        "duplicate and rejected; authorisation denials; open findings by rule and severity; database pool "
        "use; process CPU and memory. Per process: scrape every service process."
    ),
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}},
        **problem_responses(401, 403),
    },
)
async def metrics(request: Request, principal: Annotated[Principal, Requires("metrics", "read")]) -> Response:
    registry: CatalogMetrics = request.app.state.metrics
    return Response(await registry.render(), media_type=CONTENT_TYPE_LATEST)


@router.get(
    READY_PATH,
    summary="Readiness: database reachable and migrated to this version's head (no credential)",
    description=(
        "200 when this process can serve: the database answers and its schema is at the migration head "
        "this code was built for. Otherwise 503 with `Retry-After` and the reason, so an orchestrator "
        "holds traffic back without restarting the process (that is `/health`'s answer)."
    ),
    responses={503: {"description": "Not ready; `reasons` says why."}},
)
async def ready(request: Request) -> JSONResponse:
    reasons: list[str] = []
    expected: frozenset[str] = request.app.state.migration_heads
    current: frozenset[str] = frozenset()
    try:
        current = await applied_revisions(request.app.state.engine)
    except Exception:
        reasons.append("database unreachable")
    else:
        if current != expected:
            at = ", ".join(sorted(current)) or "none"
            reasons.append(
                f"database schema at revision {at}; this version needs {', '.join(sorted(expected))} "
                "(run `catalog migrate`)"
            )
    body: dict[str, object] = {
        "status": "ready" if not reasons else "not ready",
        "version": __version__,
        "migrations": {"current": sorted(current), "expected": sorted(expected)},
        "reasons": reasons,
    }
    if not reasons:
        # Freshness, not readiness: a lagging projector does not stop this process accepting events.
        lag = await request.app.state.metrics.projection.refresh()
        if lag:
            body["projection"] = {
                "position": int(lag["position"]),
                "lagEvents": int(lag["lag_events"]),
                "lagSeconds": round(lag["lag_seconds"], 3),
                "setAside": int(lag["set_aside"]),
            }
    if reasons:
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})
    return JSONResponse(body)
