"""`credentials-in-metadata`: a password, token or key in an event. The accepting path redacted the secret
before the event was stored, so only the ingest path (the batch's `Observations`) sees it; the finding says
where it was, and is never resolved by a later event."""

from __future__ import annotations

from typing import Any

from catalog.findings.facts import NameKey
from catalog.findings.rules.base import Finding, Scope, run_of
from catalog.findings.subjects import dataset_subject, job_ref, job_subject


async def credentials_in_metadata(scope: Scope) -> list[Finding]:
    redactions = scope.observations.redactions
    if not redactions:
        return []
    ds_keys = {(r["namespace"], r["name"]): r for r in scope.datasets}
    job_facts = {(r["namespace"], r["name"]): r for r in scope.jobs}

    def ds_product(name: NameKey | None) -> str | None:
        record = ds_keys.get(name) if name is not None else None
        return scope.assigned.datasets[record["id"]].product if record is not None else None

    out = []
    for red in redactions:
        record = (job_facts if red.kind == "job" else ds_keys).get(red.owner)
        if record is None:
            continue
        assigned = (scope.assigned.jobs if red.kind == "job" else scope.assigned.datasets)[record["id"]]
        subject = (job_subject if red.kind == "job" else dataset_subject)(red.owner[0], red.owner[1])
        evidence: dict[str, Any] = {
            "pointer": red.pointer,
            **run_of(red.run_id),
            "event_time": red.at.isoformat(),
            "reason": "a password, token or key in the event; redacted before the event was stored",
        }
        if red.kind == "job":
            evidence["job"] = job_ref(*red.owner)
        if red.dataset is not None or red.kind == "dataset":
            inside = red.dataset or red.owner
            evidence["namespace"], evidence["dataset"] = inside
        out.append(
            Finding(
                subject,
                f"credentials:{red.kind}:{record['id']}:{red.pointer}",
                scope.owned(
                    assigned.product,
                    ds_product(red.dataset),
                    *sorted(p for p in map(ds_product, red.datasets) if p),
                ),
                record["id"] if red.kind == "dataset" else None,
                record["id"] if red.kind == "job" else None,
                record["namespace_id"],
                evidence,
                red.at,
            )
        )
    return out
