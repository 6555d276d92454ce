"""Evaluate the governance rules over a scope of datasets and jobs, set-based, in the caller's transaction.

Used twice: incrementally after each ingest batch's projection (scope = what the batch touched) and by
`catalog scan` (scope = everything, in chunks). A fixed number of statements per call, whatever the
scope's size: fetch the scope's facts, assign products, fetch each rule's firing rows, then one upsert
of every firing finding and one update resolving the scope's open findings that no longer fire.

Lifecycle: a firing finding is inserted open, or has its evidence and last_seen refreshed (a resolved
one reopens; a waived one stays waived). An open finding of the scope that does not fire any more is
resolved — the condition is judged on the stored, newest state (facets keep the newest value by event
time; lineage inputs are the ones seen in the job's latest event with inputs), so an older event
arriving late cannot reopen what a newer one fixed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from catalog.findings.rules import RulesConfig, bump, is_analytics_job, judge_transport
from catalog.openlineage.events import OpenLineageEvent
from catalog.policy.grants import LIVE_GRANTS
from catalog.policy.products import Claim, ProductMap
from catalog.policy.scopes import DatasetRef, GrantScope, covered

NameKey = tuple[str, str]

# Rules whose subject is a dataset (resolution scope: dataset_id) or a job (scope: job_id).
DATASET_RULES = ["unencrypted-transfer", "unlineaged-transfer", "pii-unmasked", "ownership-conflict"]
JOB_RULES = ["cross-product-access", "analytics-on-oltp", "ownership-conflict"]

_DATASET_FACTS = """
SELECT d.id, d.namespace_id, n.name AS namespace, d.name, d.last_seen,
       src.value ->> 'uri' AS uri, src.event_time AS uri_time,
       (SELECT jsonb_agg(jsonb_build_array(c.owner, c.emitter, c.first_logged))::text
        FROM ownership_claims c WHERE c.dataset_id = d.id) AS claims
FROM {source}
LEFT JOIN facets src ON src.subject_kind = 'dataset' AND src.subject_id = d.id AND src.name = 'dataSource'
{where}
"""
DATASET_FACTS_BY_NAME = _DATASET_FACTS.format(
    source="unnest($1::text[], $2::text[]) AS k(ns, nm) "
    "JOIN namespaces n ON n.name = k.ns JOIN datasets d ON d.namespace_id = n.id AND d.name = k.nm",
    where="",
)
DATASET_FACTS_BY_ID = _DATASET_FACTS.format(
    source="datasets d JOIN namespaces n ON n.id = d.namespace_id",
    where="WHERE d.id = ANY($1::bigint[])",
)

_JOB_FACTS = """
SELECT j.id, j.namespace_id, n.name AS namespace, j.name, j.last_seen,
       jt.value ->> 'integration' AS integration,
       (SELECT array_agg(o.name) FROM owners o WHERE o.subject_kind = 'job' AND o.subject_id = j.id) AS owners
FROM {source}
LEFT JOIN facets jt ON jt.subject_kind = 'job' AND jt.subject_id = j.id AND jt.name = 'jobType'
{where}
"""
JOB_FACTS_BY_NAME = _JOB_FACTS.format(
    source="unnest($1::text[], $2::text[]) AS k(ns, nm) "
    "JOIN namespaces n ON n.name = k.ns JOIN jobs j ON j.namespace_id = n.id AND j.name = k.nm",
    where="",
)
JOB_FACTS_BY_ID = _JOB_FACTS.format(
    source="jobs j JOIN namespaces n ON n.id = j.namespace_id",
    where="WHERE j.id = ANY($1::bigint[])",
)

# Also returns the subjects whose product changed (a reassignment changes who may read them): the
# `prev` snapshot is the table before this statement, so one statement still does the whole batch.
UPSERT_ASSIGNMENTS = """
WITH u AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[])
        AS u(k, i, p, t, s, c)
), prev AS (
    SELECT pa.subject_kind, pa.subject_id, pa.product
    FROM product_assignments pa JOIN u ON pa.subject_kind = u.k AND pa.subject_id = u.i
), up AS (
    INSERT INTO product_assignments (subject_kind, subject_id, product, tier, source, candidates)
    SELECT k, i, p, t, s, c::jsonb FROM u
    ON CONFLICT (subject_kind, subject_id) DO UPDATE
    SET product = excluded.product, tier = excluded.tier, source = excluded.source,
        candidates = excluded.candidates
    WHERE (product_assignments.product, product_assignments.tier, product_assignments.source,
           product_assignments.candidates)
          IS DISTINCT FROM (excluded.product, excluded.tier, excluded.source, excluded.candidates)
    RETURNING subject_kind, subject_id, product, source
)
SELECT up.subject_kind, up.subject_id, prev.product AS was, up.product AS now, up.source
FROM up JOIN prev USING (subject_kind, subject_id)
WHERE prev.product IS DISTINCT FROM up.product
ORDER BY 1, 2
"""

# A dataset is unlineaged when it is written but no producing job has an input and no column lineage
# explains it, or when it sits in a tier whose datasets must be produced (analytics) and nothing does.
UNLINEAGED = """
SELECT d.id, d.last_seen,
       EXISTS (SELECT 1 FROM job_io o WHERE o.dataset_id = d.id AND o.direction = 'output') AS produced,
       EXISTS (SELECT 1 FROM job_io o JOIN job_io i ON i.job_id = o.job_id AND i.direction = 'input'
               WHERE o.dataset_id = d.id AND o.direction = 'output') AS from_inputs,
       EXISTS (SELECT 1 FROM column_edges e WHERE e.target_dataset_id = d.id) AS column_lineage,
       (SELECT array_agg(o.job_id) FROM job_io o WHERE o.dataset_id = d.id AND o.direction = 'output')
         AS producers
FROM datasets d
WHERE d.id = ANY($1::bigint[])
"""

# The live flows of the scope's jobs: edges seen in the job's latest event of that direction (an input
# dropped from a job's newer runs no longer counts).
_LIVE_IO = """
WITH io AS (
    SELECT io.*, max(io.last_seen) OVER (PARTITION BY io.job_id, io.direction) AS latest
    FROM job_io io WHERE io.job_id = ANY($1::bigint[])
)
"""

# Product of job A touching a dataset of product B. Whether a live grant of B to A covers an input is
# decided after the query by `GrantScope.covers` (catalog/policy/scopes.py), the enforcer's own
# matcher, so a flow is judged granted exactly when the grantee's read is allowed (grants cover reads; a
# write into another product's dataset is always a boundary crossing).
CROSS_PRODUCT = (
    _LIVE_IO
    + """
SELECT io.job_id, io.dataset_id, io.direction, io.last_seen, jp.product AS job_product,
       dp.product AS dataset_product, dn.name AS namespace, d.name, jn.name AS job_namespace, j.name AS job_name
FROM io
JOIN product_assignments jp ON jp.subject_kind = 'job' AND jp.subject_id = io.job_id
JOIN product_assignments dp ON dp.subject_kind = 'dataset' AND dp.subject_id = io.dataset_id
JOIN datasets d ON d.id = io.dataset_id
JOIN namespaces dn ON dn.id = d.namespace_id
JOIN jobs j ON j.id = io.job_id
JOIN namespaces jn ON jn.id = j.namespace_id
WHERE io.last_seen >= io.latest
  AND jp.product IS NOT NULL AND dp.product IS NOT NULL AND jp.product <> dp.product
"""
)


async def _grant_scopes(raw: asyncpg.Connection[Any]) -> dict[tuple[str, str], list[GrantScope]]:
    """The live grants' scopes by (grantor, grantee) product."""
    scopes: dict[tuple[str, str], list[GrantScope]] = {}
    for g in await raw.fetch(LIVE_GRANTS):
        key = (g["grantor_product"], g["grantee_product"])
        scopes.setdefault(key, []).append(GrantScope(g["scope"], g["namespace"], g["name"]))
    return scopes


ANALYTICS_ON_OLTP = (
    _LIVE_IO
    + """
SELECT io.job_id, dn.id AS namespace_id, dn.name AS namespace, max(io.last_seen) AS last_seen,
       array_agg(d.name ORDER BY d.name) AS datasets, nt.product
FROM io
JOIN datasets d ON d.id = io.dataset_id
JOIN namespaces dn ON dn.id = d.namespace_id
JOIN product_assignments nt ON nt.subject_kind = 'namespace' AND nt.subject_id = dn.id
WHERE io.direction = 'input' AND io.last_seen >= io.latest AND nt.tier = 'oltp'
  AND io.job_id = ANY($2::bigint[])
GROUP BY io.job_id, dn.id, dn.name, nt.product
"""
)

# Datasets of two or more products in one OLTP namespace (one database server).
SHARED_DATABASE = """
SELECT n.id, n.name, array_agg(DISTINCT pa.product ORDER BY pa.product) AS products,
       max(d.last_seen) AS last_seen, nt.product AS namespace_product
FROM namespaces n
JOIN product_assignments nt ON nt.subject_kind = 'namespace' AND nt.subject_id = n.id AND nt.tier = 'oltp'
JOIN datasets d ON d.namespace_id = n.id
JOIN product_assignments pa ON pa.subject_kind = 'dataset' AND pa.subject_id = d.id
WHERE n.id = ANY($1::bigint[]) AND pa.product IS NOT NULL
GROUP BY n.id, n.name, nt.product
HAVING count(DISTINCT pa.product) > 1
"""

# A PII column (an unmasked classification of the source field) copied without masking into another
# product's dataset or into the analytics tier.
PII_UNMASKED = """
SELECT DISTINCT ON (e.target_dataset_id, e.target_field_id)
       e.target_dataset_id, e.target_field_id, tf.path AS target_path, e.source_dataset_id,
       sf.path AS source_path, sn.name AS source_namespace, sd.name AS source_name, c.tag,
       tp.product AS target_product, sp.product AS source_product, tt.tier AS target_tier, e.last_seen
FROM column_edges e
JOIN classifications c ON c.field_id = e.source_field_id AND NOT c.masked
JOIN dataset_fields sf ON sf.id = e.source_field_id
JOIN dataset_fields tf ON tf.id = e.target_field_id
JOIN datasets sd ON sd.id = e.source_dataset_id
JOIN namespaces sn ON sn.id = sd.namespace_id
JOIN datasets td ON td.id = e.target_dataset_id
LEFT JOIN product_assignments tp ON tp.subject_kind = 'dataset' AND tp.subject_id = e.target_dataset_id
LEFT JOIN product_assignments sp ON sp.subject_kind = 'dataset' AND sp.subject_id = e.source_dataset_id
LEFT JOIN product_assignments tt ON tt.subject_kind = 'namespace' AND tt.subject_id = td.namespace_id
WHERE e.target_dataset_id = ANY($1::bigint[]) AND NOT e.masking
  AND ((tp.product IS NOT NULL AND sp.product IS NOT NULL AND tp.product <> sp.product)
       OR tt.tier = 'analytics')
ORDER BY e.target_dataset_id, e.target_field_id, c.tag
"""

PII_DATASETS = """
SELECT DISTINCT dataset_id FROM classifications WHERE dataset_id = ANY($1::bigint[]) AND NOT masked
"""

UPSERT_FINDINGS = """
INSERT INTO findings (rule, severity, subject_kind, subject_key, product, dataset_id, job_id, namespace_id,
                      evidence, first_seen, last_seen)
SELECT r, s, k, sk, p, d, j, n, e::jsonb, t, t
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[],
            $8::bigint[], $9::text[], $10::timestamptz[]) AS u(r, s, k, sk, p, d, j, n, e, t)
ON CONFLICT (rule, subject_key) DO UPDATE
SET severity = excluded.severity, product = excluded.product, evidence = excluded.evidence,
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
       OR (f.rule = 'shared-database' AND f.namespace_id = ANY($5::bigint[])))
  AND (f.rule, f.subject_key) NOT IN (SELECT * FROM unnest($6::text[], $7::text[]))
"""


@dataclass(slots=True)
class FindingRow:
    rule: str
    severity: str
    subject_kind: str
    subject_key: str
    product: str | None
    dataset_id: int | None
    job_id: int | None
    namespace_id: int | None
    evidence: dict[str, Any]
    seen: dt.datetime

    def as_tuple(self) -> tuple[Any, ...]:
        return (
            self.rule,
            self.severity,
            self.subject_kind,
            self.subject_key,
            self.product,
            self.dataset_id,
            self.job_id,
            self.namespace_id,
            orjson.dumps(self.evidence, default=str).decode(),
            self.seen,
        )


@dataclass(slots=True)
class Observations:
    """What a batch of events says beyond the projection: runs per dataset/job, and redacted secrets."""

    datasets: set[NameKey] = field(default_factory=set)
    jobs: set[NameKey] = field(default_factory=set)
    last_run: dict[NameKey, tuple[dt.datetime, uuid.UUID]] = field(default_factory=dict)
    # (job or dataset key, kind, pointer, event time, run id)
    redactions: list[tuple[NameKey, str, str, dt.datetime, uuid.UUID | None]] = field(default_factory=list)

    @classmethod
    def of(cls, events: Iterable[OpenLineageEvent]) -> Observations:
        seen = cls()
        for event in events:
            refs = [*event.inputs, *event.outputs]
            if event.dataset is not None:
                refs.append(event.dataset)
            for ref in refs:
                key = (ref.namespace, ref.name)
                seen.datasets.add(key)
                if event.run_id is not None:
                    previous = seen.last_run.get(key)
                    if previous is None or previous[0] < event.event_time:
                        seen.last_run[key] = (event.event_time, event.run_id)
            job: NameKey | None = None
            if event.job_namespace is not None and event.job_name is not None:
                job = (event.job_namespace, event.job_name)
                seen.jobs.add(job)
            if event.redactions:
                if job is not None:
                    owner, kind = job, "job"
                elif event.dataset is not None:
                    owner, kind = (event.dataset.namespace, event.dataset.name), "dataset"
                else:
                    continue
                seen.redactions.extend(
                    (owner, kind, pointer, event.event_time, event.run_id) for pointer in event.redactions
                )
        return seen


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


def _owners(value: Any) -> list[str]:
    return [o for o in value or [] if isinstance(o, str)]


def _claims(value: str | None) -> list[Claim]:
    """A dataset's ownership claims (catalog/policy/products.py), as the facts query aggregates them."""
    return [Claim(owner, emitter, logged) for owner, emitter, logged in orjson.loads(value or "[]")]


async def assign_products(
    raw: asyncpg.Connection[Any],
    products: ProductMap,
    datasets: Sequence[asyncpg.Record],
    jobs: Sequence[asyncpg.Record],
) -> tuple[dict[int, Any], dict[int, Any], dict[int, Any], list[asyncpg.Record]]:
    """Assign products/tiers to the given datasets, jobs and their namespaces; one upsert statement.
    Also returns the subjects whose product changed (for the audit log)."""
    rows: list[tuple[Any, ...]] = []
    ds_assign: dict[int, Any] = {}
    job_assign: dict[int, Any] = {}
    ns_assign: dict[int, Any] = {}
    for record in datasets:
        ds_assign[record["id"]] = products.assign(
            "dataset", record["namespace"], record["name"], claims=_claims(record["claims"])
        )
        if record["namespace_id"] not in ns_assign:
            ns_assign[record["namespace_id"]] = products.assign("namespace", record["namespace"], None)
    for record in jobs:
        job_assign[record["id"]] = products.assign(
            "job", record["namespace"], record["name"], _owners(record["owners"])
        )
        if record["namespace_id"] not in ns_assign:
            ns_assign[record["namespace_id"]] = products.assign("namespace", record["namespace"], None)
    for kind, assigned in (("namespace", ns_assign), ("dataset", ds_assign), ("job", job_assign)):
        for subject_id, a in assigned.items():
            candidates = orjson.dumps([list(c) for c in a.candidates]).decode()
            rows.append((kind, subject_id, a.product, a.tier, a.source, candidates))
    if rows:
        rows.sort(key=lambda r: (r[0], r[1]))  # a fixed lock order across concurrent writers
        moved = await raw.fetch(UPSERT_ASSIGNMENTS, *_columns(rows, 6))
    else:
        moved = []
    return ns_assign, ds_assign, job_assign, moved


async def _audit_reassignments(
    raw: asyncpg.Connection[Any],
    moved: Sequence[asyncpg.Record],
    datasets: Sequence[asyncpg.Record],
    jobs: Sequence[asyncpg.Record],
) -> None:
    """One audit row for the batch's product changes, in its transaction (a first assignment is not a
    change: it follows from products.yaml and the event log, which `catalog rebuild` replays)."""
    from catalog.audit.service import record_raw

    names: dict[tuple[str, int], tuple[str, str | None]] = {}
    for kind, records in (("dataset", datasets), ("job", jobs)):
        for r in records:
            names[(kind, r["id"])] = (r["namespace"], r["name"])
            names.setdefault(("namespace", r["namespace_id"]), (r["namespace"], None))
    changes = []
    for m in moved:
        namespace, name = names.get((m["subject_kind"], m["subject_id"]), (None, None))
        changes.append(
            {
                "kind": m["subject_kind"],
                "namespace": namespace,
                "name": name,
                "from": m["was"],
                "to": m["now"],
                "source": m["source"],
            }
        )
    await record_raw(
        raw,
        action="product_assignment.changed",
        actor=None,
        subject="product_assignments",
        details={"changes": changes},
    )


async def evaluate(
    raw: asyncpg.Connection[Any],
    *,
    products: ProductMap,
    rules: RulesConfig,
    datasets: Sequence[asyncpg.Record],
    jobs: Sequence[asyncpg.Record],
    observations: Observations | None = None,
) -> int:
    """Assign products, then evaluate every rule over `datasets` and `jobs` (fact rows); returns the
    number of findings that fire in the scope."""
    seen = observations or Observations()
    ns_assign, ds_assign, job_assign, moved = await assign_products(raw, products, datasets, jobs)
    dataset_ids = [r["id"] for r in datasets]
    job_ids = [r["id"] for r in jobs]
    namespace_ids = sorted({r["namespace_id"] for r in datasets})
    ds_by_id = {r["id"]: r for r in datasets}
    fired: list[FindingRow] = []

    def run_evidence(key: NameKey) -> dict[str, Any]:
        last = seen.last_run.get(key)
        return {"run_id": str(last[1]), "event_time": last[0].isoformat()} if last else {}

    # unencrypted transfer: judged on the newest dataSource URI (stored redacted).
    for record in datasets:
        uri = record["uri"]
        if not uri:
            continue
        verdict = judge_transport(uri, rules.transport)
        if verdict is None or not verdict.plaintext:
            continue
        key = (record["namespace"], record["name"])
        fired.append(
            FindingRow(
                "unencrypted-transfer",
                rules.severity["unencrypted-transfer"],
                "dataset",
                f"dataset:{record['id']}",
                ds_assign[record["id"]].product,
                record["id"],
                None,
                record["namespace_id"],
                {
                    "dataset": {"namespace": record["namespace"], "name": record["name"]},
                    "uri": uri,
                    "reason": verdict.reason,
                    **run_evidence(key),
                },
                record["uri_time"] or record["last_seen"],
            )
        )

    # ownership conflicts: more than one product named for one subject (products.yaml's patterns, or an
    # ownership claim the file or an earlier placement overrides). The subject's product does not change:
    # the finding goes to its steward, with every candidate and claim (who sent it) as evidence.
    for kind, assigned, facts in (
        ("dataset", ds_assign, ds_by_id),
        ("job", job_assign, {r["id"]: r for r in jobs}),
    ):
        for subject_id, a in assigned.items():
            if not a.conflict:
                continue
            record = facts[subject_id]
            fired.append(
                FindingRow(
                    "ownership-conflict",
                    rules.severity["ownership-conflict"],
                    kind,
                    f"conflict:{kind}:{subject_id}",
                    a.product,
                    subject_id if kind == "dataset" else None,
                    subject_id if kind == "job" else None,
                    record["namespace_id"],
                    {
                        kind: {"namespace": record["namespace"], "name": record["name"]},
                        "candidates": [{"source": s, "product": p} for s, p in a.candidates],
                        "products": sorted({p for _, p in a.candidates}),
                        "claims": [c.as_json() for c in a.claims],
                        "chosen": a.product,
                    },
                    record["last_seen"],
                )
            )

    if dataset_ids:
        for r in await raw.fetch(UNLINEAGED, dataset_ids):
            tier = ns_assign[ds_by_id[r["id"]]["namespace_id"]].tier
            reason = None
            if r["produced"] and not r["from_inputs"] and not r["column_lineage"]:
                reason = "written by jobs that read nothing: no lineage to its origin"
            elif not r["produced"] and tier in rules.produced_tiers:
                reason = f"a dataset in the {tier} tier that no job produces"
            if reason is None:
                continue
            record = ds_by_id[r["id"]]
            fired.append(
                FindingRow(
                    "unlineaged-transfer",
                    rules.severity["unlineaged-transfer"],
                    "dataset",
                    f"dataset:{r['id']}",
                    ds_assign[r["id"]].product,
                    r["id"],
                    None,
                    record["namespace_id"],
                    {
                        "dataset": {"namespace": record["namespace"], "name": record["name"]},
                        "reason": reason,
                        "producing_job_ids": r["producers"] or [],
                        **run_evidence((record["namespace"], record["name"])),
                    },
                    r["last_seen"],
                )
            )

        for r in await raw.fetch(PII_UNMASKED, dataset_ids):
            record = ds_by_id[r["target_dataset_id"]]
            where = (
                "the analytics tier" if r["target_tier"] == "analytics" else f"product {r['target_product']}"
            )
            fired.append(
                FindingRow(
                    "pii-unmasked",
                    rules.severity.get("pii-unmasked", "high"),
                    "field",
                    f"field:{r['target_dataset_id']}:{r['target_field_id']}",
                    r["source_product"] or r["target_product"],
                    r["target_dataset_id"],
                    None,
                    record["namespace_id"],
                    {
                        "column": f"{record['namespace']}/{record['name']}#{r['target_path']}",
                        "from": f"{r['source_namespace']}/{r['source_name']}#{r['source_path']}",
                        "tag": r["tag"],
                        "reason": f"PII copied unmasked into {where}",
                    },
                    r["last_seen"],
                )
            )

    if namespace_ids:
        for r in await raw.fetch(SHARED_DATABASE, namespace_ids):
            fired.append(
                FindingRow(
                    "shared-database",
                    rules.severity["shared-database"],
                    "namespace",
                    f"namespace:{r['id']}",
                    r["namespace_product"],
                    None,
                    None,
                    r["id"],
                    {"namespace": r["name"], "products": list(r["products"])},
                    r["last_seen"],
                )
            )

    if job_ids:
        crossings = await raw.fetch(CROSS_PRODUCT, job_ids)
        grants = await _grant_scopes(raw) if crossings else {}
        for r in crossings:
            if r["direction"] == "input" and covered(
                grants.get((r["dataset_product"], r["job_product"]), ()),
                DatasetRef(r["namespace"], r["name"]),
            ):
                continue
            fired.append(
                FindingRow(
                    "cross-product-access",
                    rules.severity["cross-product-access"],
                    "flow",
                    f"flow:{r['job_id']}:{r['dataset_id']}:{r['direction']}",
                    r["dataset_product"],
                    r["dataset_id"],
                    r["job_id"],
                    None,
                    {
                        "job": {"namespace": r["job_namespace"], "name": r["job_name"]},
                        "dataset": {"namespace": r["namespace"], "name": r["name"]},
                        "direction": r["direction"],
                        "job_product": r["job_product"],
                        "dataset_product": r["dataset_product"],
                        "reason": "no grant allows it"
                        if r["direction"] == "input"
                        else "writes into another product's dataset",
                    },
                    r["last_seen"],
                )
            )
        jobs_by_id = {r["id"]: r for r in jobs}
        analytic = [
            r["id"] for r in jobs if is_analytics_job(rules, r["namespace"], r["name"], r["integration"])
        ]
        if analytic:
            for r in await raw.fetch(ANALYTICS_ON_OLTP, job_ids, analytic):
                job = jobs_by_id[r["job_id"]]
                fired.append(
                    FindingRow(
                        "analytics-on-oltp",
                        rules.severity["analytics-on-oltp"],
                        "flow",
                        f"analytics:{r['job_id']}:{r['namespace_id']}",
                        r["product"] or job_assign[r["job_id"]].product,
                        None,
                        r["job_id"],
                        r["namespace_id"],
                        {
                            "job": {"namespace": job["namespace"], "name": job["name"]},
                            "namespace": r["namespace"],
                            "datasets": list(r["datasets"]),
                            "reason": "an analytics/BI job reads the OLTP database instead of its CDC copy",
                        },
                        r["last_seen"],
                    )
                )

    # credentials in metadata: the secret was redacted before storage; the finding says where it was.
    if seen.redactions:
        ds_ids = {(r["namespace"], r["name"]): r for r in datasets}
        job_facts = {(r["namespace"], r["name"]): r for r in jobs}
        for owner, kind, pointer, at, run_id in seen.redactions:
            record = (job_facts if kind == "job" else ds_ids).get(owner)
            if record is None:
                continue
            assigned = (job_assign if kind == "job" else ds_assign)[record["id"]]
            fired.append(
                FindingRow(
                    "credentials-in-metadata",
                    rules.severity["credentials-in-metadata"],
                    kind,
                    f"credentials:{kind}:{record['id']}:{pointer}",
                    assigned.product,
                    record["id"] if kind == "dataset" else None,
                    record["id"] if kind == "job" else None,
                    record["namespace_id"],
                    {
                        kind: {"namespace": owner[0], "name": owner[1]},
                        "pointer": pointer,
                        "run_id": str(run_id) if run_id else None,
                        "event_time": at.isoformat(),
                        "note": "the value was redacted before the event was stored",
                    },
                    at,
                )
            )

    # PII raises severity (classifications from catalog/classification, when present for the dataset).
    pii_candidates = sorted({f.dataset_id for f in fired if f.dataset_id is not None})
    if rules.pii_bump and pii_candidates:
        pii = {r["dataset_id"] for r in await raw.fetch(PII_DATASETS, pii_candidates)}
        for finding in fired:
            if finding.dataset_id in pii and finding.rule != "pii-unmasked":
                finding.severity = bump(finding.severity)
                finding.evidence["pii"] = True

    # One finding per key (a credentials pointer may repeat within a batch: keep the newest).
    unique: dict[tuple[str, str], FindingRow] = {}
    for finding in fired:
        key = (finding.rule, finding.subject_key)
        if key not in unique or unique[key].seen < finding.seen:
            unique[key] = finding
    rows = sorted((f.as_tuple() for f in unique.values()), key=lambda r: (r[0], r[3]))
    if rows:
        await raw.execute(UPSERT_FINDINGS, *_columns(rows, 10))
    await raw.execute(
        RESOLVE_FINDINGS,
        DATASET_RULES,
        dataset_ids,
        JOB_RULES,
        job_ids,
        namespace_ids,
        [r[0] for r in rows],
        [r[3] for r in rows],
    )
    if moved:
        # Last: the audit append lock is then held only to the commit, never while waiting for a
        # finding row that a waiver (which appends too) has locked — no lock-order deadlock.
        await _audit_reassignments(raw, moved, datasets, jobs)
    return len(rows)
