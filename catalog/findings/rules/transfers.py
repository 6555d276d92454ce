"""Rules on how a job moves data: in plaintext (`unencrypted-transfer`) or across a product boundary no
grant allows (`cross-product-access`). Judged per flow — (job, dataset, direction) — on the scope's jobs,
and only on what that job did: another job's newer event can neither open nor resolve it."""

from __future__ import annotations

from typing import Any

import asyncpg

from catalog.findings.config import judge_transport
from catalog.findings.facts import FLOW_NAMES, LATEST_RUN, LIVE_FLOWS, PRODUCED_BY
from catalog.findings.rules.base import Finding, Scope, key, run_of
from catalog.findings.subjects import flow_subject, job_ref
from catalog.policy.grants import LIVE_GRANTS
from catalog.policy.scopes import DatasetRef, GrantScope, covered

# The transport that job last used for that dataset in that direction (flow_transports).
UNENCRYPTED = (
    LIVE_FLOWS
    + """
SELECT io.job_id, io.dataset_id, io.direction, io.last_seen, d.namespace_id, dn.name AS namespace, d.name,
       jn.name AS job_namespace, j.name AS job_name, jp.product AS job_product, dp.product AS dataset_product,
       t.uri, t.event_time AS uri_time, t.run_uuid,
       CASE WHEN dp.product IS NULL AND jp.product IS NULL THEN """
    + PRODUCED_BY.format("io.dataset_id")
    + """ END AS producer_product
FROM io
JOIN flow_transports t ON t.job_id = io.job_id AND t.dataset_id = io.dataset_id AND t.direction = io.direction
"""
    + FLOW_NAMES
)

# Product of job A touching a dataset of product B. Whether a live grant of B to A covers an input is
# decided after the query by `GrantScope.covers` (catalog/policy/scopes.py), the enforcer's own
# matcher, so a flow is judged granted exactly when the grantee's read is allowed (grants cover reads; a
# write into another product's dataset is always a boundary crossing).
CROSS_PRODUCT = (
    LIVE_FLOWS
    + f"""
SELECT io.job_id, io.dataset_id, io.direction, io.last_seen, d.namespace_id, jp.product AS job_product,
       dp.product AS dataset_product, dn.name AS namespace, d.name, jn.name AS job_namespace, j.name AS job_name,
       {LATEST_RUN.format("io.job_id")} AS run_uuid
FROM io
"""
    + FLOW_NAMES
    + """
WHERE jp.product IS NOT NULL AND dp.product IS NOT NULL AND jp.product <> dp.product
"""
)


async def unencrypted_transfer(scope: Scope) -> list[Finding]:
    """A flow whose own transport (the dataSource URI its job's newest event named) carries plaintext."""
    if not scope.job_ids:
        return []
    out = []
    for r in await scope.raw.fetch(UNENCRYPTED, scope.job_ids):
        verdict = judge_transport(r["uri"], scope.config.transport)
        if verdict is None or not verdict.plaintext:
            continue
        job = job_ref(r["job_namespace"], r["job_name"])
        out.append(
            Finding(
                flow_subject(r["namespace"], r["name"], job=job, direction=r["direction"]),
                key("flow", r["job_id"], r["dataset_id"], r["direction"]),
                scope.owned(r["dataset_product"], r["job_product"], r["producer_product"]),
                r["dataset_id"],
                r["job_id"],
                r["namespace_id"],
                {
                    "namespace": r["namespace"],
                    "dataset": r["name"],
                    "job": job,
                    "direction": r["direction"],
                    "uri": r["uri"],
                    "reason": verdict.reason,
                    **run_of(r["run_uuid"]),
                    "event_time": r["uri_time"].isoformat(),
                },
                max(r["last_seen"], r["uri_time"]),
            )
        )
    return out


async def _grant_scopes(raw: asyncpg.Connection[Any]) -> dict[tuple[str, str], list[GrantScope]]:
    """The live grants' scopes by (grantor, grantee) product."""
    scopes: dict[tuple[str, str], list[GrantScope]] = {}
    for g in await raw.fetch(LIVE_GRANTS):
        pair = (g["grantor_product"], g["grantee_product"])
        scopes.setdefault(pair, []).append(GrantScope(g["scope"], g["namespace"], g["name"]))
    return scopes


async def cross_product_access(scope: Scope) -> list[Finding]:
    """A job of one product reading (with no grant covering it) or writing another product's dataset."""
    if not scope.job_ids:
        return []
    crossings = await scope.raw.fetch(CROSS_PRODUCT, scope.job_ids)
    grants = await _grant_scopes(scope.raw) if crossings else {}
    out = []
    for r in crossings:
        if r["direction"] == "input" and covered(
            grants.get((r["dataset_product"], r["job_product"]), ()),
            DatasetRef(r["namespace"], r["name"]),
        ):
            continue
        job = job_ref(r["job_namespace"], r["job_name"])
        out.append(
            Finding(
                flow_subject(r["namespace"], r["name"], job=job, direction=r["direction"]),
                f"flow:{r['job_id']}:{r['dataset_id']}:{r['direction']}",
                r["dataset_product"],
                r["dataset_id"],
                r["job_id"],
                r["namespace_id"],
                {
                    "namespace": r["namespace"],
                    "dataset": r["name"],
                    "job": job,
                    "direction": r["direction"],
                    "job_product": r["job_product"],
                    "dataset_product": r["dataset_product"],
                    "reason": "no grant allows it"
                    if r["direction"] == "input"
                    else "writes into another product's dataset",
                    **run_of(r["run_uuid"]),
                },
                r["last_seen"],
            )
        )
    return out
