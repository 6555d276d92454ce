"""`ownership-conflict`: more than one product named for one dataset or job (products.yaml's patterns, or an
ownership claim the file or an earlier placement overrides). The subject's product does not change: the
finding goes to its steward, with every candidate and claim (who sent it) as evidence."""

from __future__ import annotations

from catalog.findings.rules.base import Finding, Scope
from catalog.findings.subjects import dataset_subject, job_subject


async def ownership_conflict(scope: Scope) -> list[Finding]:
    out = []
    for kind, assigned, facts in (
        ("dataset", scope.assigned.datasets, scope.datasets_by_id),
        ("job", scope.assigned.jobs, scope.jobs_by_id),
    ):
        for subject_id, a in assigned.items():
            if not a.conflict:
                continue
            record = facts[subject_id]
            subject = (dataset_subject if kind == "dataset" else job_subject)(
                record["namespace"], record["name"]
            )
            out.append(
                Finding(
                    subject,
                    f"conflict:{kind}:{subject_id}",
                    scope.owned(a.product, *(p for _, p in a.candidates)),
                    subject_id if kind == "dataset" else None,
                    subject_id if kind == "job" else None,
                    record["namespace_id"],
                    {
                        "namespace": record["namespace"],
                        kind: record["name"],
                        "candidates": [{"source": s, "product": p} for s, p in a.candidates],
                        "products": sorted({p for _, p in a.candidates}),
                        "claims": [c.as_json() for c in a.claims],
                        "chosen": a.product,
                        "reason": "more than one product claims it",
                    },
                    record["last_seen"],
                )
            )
    return out
