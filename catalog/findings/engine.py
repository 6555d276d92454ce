"""Evaluate the registered rules over a scope of datasets and jobs, set-based, in the caller's transaction.

Used twice: incrementally after each ingest batch's projection (scope = what the batch touched) and by
`catalog scan` (scope = everything, in chunks). The engine knows no rule: it hands the scope's facts
(catalog/findings/facts.py) and products (catalog/findings/assignments.py) to every rule of the registry
(catalog/findings/rules/), raises severity where PII is involved, then writes one upsert of every firing
finding and one update resolving the scope's open findings that no longer fire. A fixed number of
statements per call, whatever the scope's size.

Lifecycle: a firing finding is inserted open, or has its evidence and last_seen refreshed (a resolved
one reopens; a waived one stays waived). An open finding of the scope that does not fire any more is
resolved — the condition is judged on the stored, newest state (facets keep the newest value by event
time; lineage inputs are the ones seen in the job's latest event with inputs), so an older event
arriving late cannot reopen what a newer one fixed. Which open findings a scope can resolve follows from
each rule's `resolved_per` grains: dataset, job or namespace ids of the scope.

Each finding carries a structured subject (catalog/findings/subjects.py) and a product whose steward sees
it: the subject's, else the other end's (`Scope.owned`), else rules.yaml's `fallback_product`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from catalog.findings.assignments import assign
from catalog.findings.config import RulesConfig, bump
from catalog.findings.facts import Observations, Record
from catalog.findings.rules import REGISTRY, Finding, Scope, resolved_per
from catalog.findings.subjects import display
from catalog.policy.products import ProductMap

PII_DATASETS = """
SELECT DISTINCT dataset_id FROM classifications WHERE dataset_id = ANY($1::bigint[]) AND NOT masked
"""

UPSERT_FINDINGS = """
INSERT INTO findings (rule, severity, subject_kind, subject_key, product, dataset_id, job_id, namespace_id,
                      evidence, first_seen, last_seen, subject, subject_display)
SELECT r, s, k, sk, p, d, j, n, e::jsonb, t, t, sj::jsonb, sd
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[],
            $8::bigint[], $9::text[], $10::timestamptz[], $11::text[], $12::text[])
     AS u(r, s, k, sk, p, d, j, n, e, t, sj, sd)
ON CONFLICT (rule, subject_key) DO UPDATE
SET severity = excluded.severity, product = excluded.product, evidence = excluded.evidence,
    subject = excluded.subject, subject_display = excluded.subject_display,
    dataset_id = excluded.dataset_id, job_id = excluded.job_id, namespace_id = excluded.namespace_id,
    first_seen = least(findings.first_seen, excluded.first_seen),
    last_seen = greatest(findings.last_seen, excluded.last_seen),
    status = CASE WHEN findings.status = 'resolved' THEN 'open' ELSE findings.status END,
    status_changed_at = CASE WHEN findings.status = 'resolved' THEN now() ELSE findings.status_changed_at END
"""

RESOLVE_FINDINGS = """
UPDATE findings f SET status = 'resolved', status_changed_at = now()
WHERE f.status = 'open'
  AND ((f.rule = ANY($1::text[]) AND f.dataset_id = ANY($2::bigint[]))
       OR (f.rule = ANY($3::text[]) AND f.job_id = ANY($4::bigint[]))
       OR (f.rule = ANY($5::text[]) AND f.namespace_id = ANY($6::bigint[])))
  AND (f.rule, f.subject_key) NOT IN (SELECT * FROM unnest($7::text[], $8::text[]))
"""

# Derived once from the registry: the rules each grain of a scope resolves.
_RESOLVED_PER_DATASET = resolved_per("dataset")
_RESOLVED_PER_JOB = resolved_per("job")
_RESOLVED_PER_NAMESPACE = resolved_per("namespace")


@dataclass(slots=True)
class FindingRow:
    """A rule's `Finding` with the rule's name and severity: one row of the findings table."""

    rule: str
    severity: str
    found: Finding

    def as_tuple(self) -> tuple[Any, ...]:
        f = self.found
        return (
            self.rule,
            self.severity,
            f.subject["kind"],
            f.key,
            f.product,
            f.dataset_id,
            f.job_id,
            f.namespace_id,
            orjson.dumps(f.evidence, default=str).decode(),
            f.seen,
            orjson.dumps(f.subject).decode(),
            display(f.subject),
        )


async def evaluate(
    raw: asyncpg.Connection[Any],
    *,
    products: ProductMap,
    rules: RulesConfig,
    datasets: Sequence[Record],
    jobs: Sequence[Record],
    observations: Observations | None = None,
) -> set[tuple[str, str]]:
    """Evaluate every registered rule over `datasets` and `jobs` (fact rows) and store the outcome; returns
    the (rule, subject key) of every finding that fires in the scope.

    The subjects' products must already be stored (the projection does it, and `catalog scan` before it
    judges): the rules' SQL reads `product_assignments`; the assignments computed here only route
    findings and report conflicts."""
    scope = Scope(
        raw, rules, datasets, jobs, assign(products, datasets, jobs), observations or Observations()
    )
    fired = [
        FindingRow(r.name, rules.severity[r.name], found) for r in REGISTRY for found in await r.judge(scope)
    ]
    await _raise_for_pii(raw, rules, fired)

    # One finding per key (a credentials pointer may repeat within a batch: keep the newest).
    unique: dict[tuple[str, str], FindingRow] = {}
    for finding in fired:
        identity = (finding.rule, finding.found.key)
        if identity not in unique or unique[identity].found.seen < finding.found.seen:
            unique[identity] = finding
    rows = sorted((f.as_tuple() for f in unique.values()), key=lambda r: (r[0], r[3]))
    if rows:
        await raw.execute(UPSERT_FINDINGS, *[list(column) for column in zip(*rows, strict=True)])
    await raw.execute(
        RESOLVE_FINDINGS,
        _RESOLVED_PER_DATASET,
        scope.dataset_ids,
        _RESOLVED_PER_JOB,
        scope.job_ids,
        _RESOLVED_PER_NAMESPACE,
        scope.namespace_ids,
        [r[0] for r in rows],
        [r[3] for r in rows],
    )
    return set(unique)


async def _raise_for_pii(raw: asyncpg.Connection[Any], rules: RulesConfig, fired: list[FindingRow]) -> None:
    """PII raises severity one level (classifications from catalog/classification, when the finding's
    dataset has any unmasked), and says so in the evidence."""
    candidates = sorted({f.found.dataset_id for f in fired if f.found.dataset_id is not None})
    if not rules.pii_bump or not candidates:
        return
    pii = {r["dataset_id"] for r in await raw.fetch(PII_DATASETS, candidates)}
    for finding in fired:
        if finding.found.dataset_id in pii:
            finding.severity = bump(finding.severity)
            finding.found.evidence["pii"] = True
