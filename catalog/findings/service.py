"""Findings as the rest of the service sees them: the ingest hook, the full scan, queries, waivers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.audit import service as audit
from catalog.audit.state import waiver_action
from catalog.findings.assignments import assign_products, audit_reassignments
from catalog.findings.engine import evaluate
from catalog.findings.facts import DATASET_FACTS_BY_ID, JOB_FACTS_BY_ID, Facts
from catalog.policies_in_force import Policies


async def evaluate_batch(raw: asyncpg.Connection[Any], facts: Facts, policies: Policies) -> None:
    """The ingest hook: evaluate every rule for what a batch of events (already projected, products
    assigned: `facts` is what the assignment read) touched — unless the policies turn incremental
    evaluation off (the benchmark's baseline; `catalog scan` then catches up)."""
    if not policies.findings_incremental or not (facts.observations.datasets or facts.observations.jobs):
        return
    await evaluate(
        raw,
        products=policies.products.current,
        rules=policies.rules.current,
        datasets=facts.datasets,
        jobs=facts.jobs,
        observations=facts.observations,
    )


async def scan(raw: asyncpg.Connection[Any], policies: Policies, *, chunk: int = 2000) -> int:
    """Re-assign products and re-evaluate every rule over the whole catalog; returns findings firing.

    Chunked by dataset and job ids so memory stays bounded; the caller owns the transaction.
    """
    products = policies.products.current
    rules = policies.rules.current
    dataset_ids = [r["id"] for r in await raw.fetch("SELECT id FROM datasets ORDER BY id")]
    job_ids = [r["id"] for r in await raw.fetch("SELECT id FROM jobs ORDER BY id")]
    fired: set[tuple[str, str]] = set()
    # Every subject's product before any rule runs: the dataset rules route findings by their jobs' products
    # too. A product that moved (products.yaml changed) is chained before any finding row is written: the
    # audit append lock comes before finding rows on every path (see `_audit_lock_first`).
    moves: list[tuple[Sequence[asyncpg.Record], Sequence[asyncpg.Record], Sequence[asyncpg.Record]]] = []
    for start in range(0, len(dataset_ids), chunk):
        datasets = await raw.fetch(DATASET_FACTS_BY_ID, dataset_ids[start : start + chunk])
        moved = (await assign_products(raw, products, datasets, []))[1]
        if moved:
            moves.append((moved, datasets, []))
    for start in range(0, len(job_ids), chunk):
        jobs = await raw.fetch(JOB_FACTS_BY_ID, job_ids[start : start + chunk])
        moved = (await assign_products(raw, products, [], jobs))[1]
        if moved:
            moves.append((moved, [], jobs))
    for moved_subjects, their_datasets, their_jobs in moves:
        await audit_reassignments(raw, moved_subjects, their_datasets, their_jobs)
    # Datasets first (assignments of every dataset exist before flows between products are judged).
    for start in range(0, len(dataset_ids), chunk):
        datasets = await raw.fetch(DATASET_FACTS_BY_ID, dataset_ids[start : start + chunk])
        fired |= await evaluate(raw, products=products, rules=rules, datasets=datasets, jobs=[])
    for start in range(0, len(job_ids), chunk):
        jobs = await raw.fetch(JOB_FACTS_BY_ID, job_ids[start : start + chunk])
        fired |= await evaluate(raw, products=products, rules=rules, datasets=[], jobs=jobs)
    return len(fired)


async def reevaluate_flows_of(raw: asyncpg.Connection[Any], policies: Policies, *, product: str) -> None:
    """Re-judge the flows of every job touching `product`'s datasets (after a grant changed)."""
    job_ids = [
        r["job_id"]
        for r in await raw.fetch(
            "SELECT DISTINCT io.job_id FROM job_io io JOIN product_assignments pa "
            "ON pa.subject_kind = 'dataset' AND pa.subject_id = io.dataset_id WHERE pa.product = $1 "
            "ORDER BY 1",
            product,
        )
    ]
    if not job_ids:
        return
    products = policies.products.current
    jobs = await raw.fetch(JOB_FACTS_BY_ID, job_ids)
    moved = (await assign_products(raw, products, [], jobs))[1]
    if moved:  # before the finding rows (see `_audit_lock_first`)
        await audit_reassignments(raw, moved, [], jobs)
    await evaluate(raw, products=products, rules=policies.rules.current, datasets=[], jobs=jobs)


# -- reads ---------------------------------------------------------------------------------------------

# A waiver past its expiry counts as open again.
EFFECTIVE_STATUS = (
    "CASE WHEN f.status = 'waived' AND f.waived_until IS NOT NULL AND f.waived_until <= now() "
    "THEN 'open' ELSE f.status END"
)

FINDING_COLUMNS = f"""
f.id, f.rule, f.severity, f.subject_kind, f.subject_key, f.subject, f.subject_display, f.product, f.evidence,
f.first_seen, f.last_seen,
{EFFECTIVE_STATUS} AS status, f.status_changed_at, f.waived_by, f.waiver_reason, f.waived_until,
f.dataset_id, f.job_id, f.namespace_id
"""


@dataclass(frozen=True, slots=True)
class FindingFilter:
    product: str | None = None
    rule: str | None = None
    severity: str | None = None
    status: str | None = None
    dataset_id: int | None = None
    job_id: int | None = None


def _row(mapping: Any) -> dict[str, Any]:
    out = dict(mapping)
    for key in ("first_seen", "last_seen", "status_changed_at", "waived_until"):
        if isinstance(out.get(key), dt.datetime):
            out[key] = out[key].isoformat()
    return out


async def list_findings(
    conn: AsyncConnection, *, where: FindingFilter, limit: int = 100, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """Findings matching every given filter, most severe and most recent first, with the total count."""
    clauses = ["TRUE"]
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    for column, value in (
        ("f.product", where.product),
        ("f.rule", where.rule),
        ("f.severity", where.severity),
        ("f.dataset_id", where.dataset_id),
        ("f.job_id", where.job_id),
    ):
        if value is not None:
            name = column.split(".")[1]
            clauses.append(f"{column} = :{name}")
            params[name] = value
    if where.status is not None:
        clauses.append(f"{EFFECTIVE_STATUS} = :status")
        params["status"] = where.status
    condition = " AND ".join(clauses)
    rows = (
        await conn.execute(
            text(
                f"SELECT {FINDING_COLUMNS}, count(*) OVER () AS total FROM findings f WHERE {condition} "
                "ORDER BY array_position(ARRAY['critical','high','medium','low'], f.severity), f.last_seen DESC, "
                "f.id LIMIT :limit OFFSET :offset"
            ),
            params,
        )
    ).mappings()
    out = [_row(r) for r in rows]
    total = out[0].pop("total") if out else 0
    for r in out[1:]:
        r.pop("total", None)
    return out, int(total)


async def get_finding(conn: AsyncConnection, finding_id: int) -> dict[str, Any] | None:
    row = (
        (
            await conn.execute(
                text(f"SELECT {FINDING_COLUMNS} FROM findings f WHERE f.id = :id"), {"id": finding_id}
            )
        )
        .mappings()
        .first()
    )
    return _row(row) if row is not None else None


async def summary(conn: AsyncConnection, *, product: str | None = None) -> list[dict[str, Any]]:
    """Per product: counts by effective status, and open findings by rule and severity."""
    rows = (
        await conn.execute(
            text(
                f"SELECT f.product, {EFFECTIVE_STATUS} AS status, f.rule, f.severity, count(*) AS n "
                "FROM findings f WHERE (CAST(:product AS text) IS NULL OR f.product = :product) "
                "GROUP BY 1, 2, 3, 4 ORDER BY 1 NULLS LAST, 2, 3, 4"
            ),
            {"product": product},
        )
    ).all()
    by_product: dict[str | None, dict[str, Any]] = {}
    for r in rows:
        entry = by_product.setdefault(
            r.product,
            {"product": r.product, "status": {}, "open_by_rule": {}, "open_by_severity": {}},
        )
        entry["status"][r.status] = entry["status"].get(r.status, 0) + r.n
        if r.status == "open":
            entry["open_by_rule"][r.rule] = entry["open_by_rule"].get(r.rule, 0) + r.n
            entry["open_by_severity"][r.severity] = entry["open_by_severity"].get(r.severity, 0) + r.n
    return list(by_product.values())


class FindingNotFound(LookupError):
    pass


async def _audit_lock_first(conn: AsyncConnection) -> None:
    """Take the audit append lock before the finding row. Every path that does both takes them in this
    order — ingest appends (a claim, a product reassignment) before it upserts findings, `scan` and a
    grant's re-evaluation chain a reassignment before judging — so none can deadlock with another."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": audit.AUDIT_LOCK_KEY})


async def waive(
    conn: AsyncConnection, *, finding_id: int, actor: str, reason: str, until: dt.datetime | None
) -> dict[str, Any]:
    """Waive a finding (reason required, optional expiry); the change is recorded."""
    await _audit_lock_first(conn)
    updated = (
        await conn.execute(
            text(
                "UPDATE findings SET status = 'waived', status_changed_at = now(), waived_by = :actor, "
                "waiver_reason = :reason, waived_until = :until WHERE id = :id RETURNING id"
            ),
            {"id": finding_id, "actor": actor, "reason": reason, "until": until},
        )
    ).first()
    if updated is None:
        raise FindingNotFound(finding_id)
    await _record(conn, finding_id, "waive", actor, reason, until)
    found = await get_finding(conn, finding_id)
    assert found is not None
    return found


async def unwaive(
    conn: AsyncConnection, *, finding_id: int, actor: str, reason: str | None
) -> dict[str, Any]:
    """Lift a waiver: the finding is open again until the next evaluation resolves it."""
    await _audit_lock_first(conn)
    updated = (
        await conn.execute(
            text(
                "UPDATE findings SET status = 'open', status_changed_at = now(), waived_by = NULL, "
                "waiver_reason = NULL, waived_until = NULL WHERE id = :id RETURNING id"
            ),
            {"id": finding_id},
        )
    ).first()
    if updated is None:
        raise FindingNotFound(finding_id)
    await _record(conn, finding_id, "unwaive", actor, reason, None)
    found = await get_finding(conn, finding_id)
    assert found is not None
    return found


async def _record(
    conn: AsyncConnection,
    finding_id: int,
    action: str,
    actor: str,
    reason: str | None,
    until: dt.datetime | None,
) -> None:
    await conn.execute(
        text(
            "INSERT INTO finding_changes (finding_id, action, actor, reason, until) "
            "VALUES (:id, :action, :actor, :reason, :until)"
        ),
        {"id": finding_id, "action": action, "actor": actor, "reason": reason, "until": until},
    )
    # Chained in the same transaction; `catalog audit verify` holds the waived findings against it.
    await audit.record(
        conn,
        action=waiver_action(action),
        actor=actor,
        subject=f"finding:{finding_id}",
        details={"finding_id": finding_id, "actor": actor, "reason": reason, "until": until},
    )


async def finding_product(conn: AsyncConnection, finding_id: int) -> tuple[bool, str | None]:
    """(exists, product) of a finding: what the enforcer needs to decide on it."""
    row = (
        await conn.execute(text("SELECT product FROM findings WHERE id = :id"), {"id": finding_id})
    ).first()
    return (row is not None, row.product if row is not None else None)
