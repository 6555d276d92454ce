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

Flows are judged per flow — (job, dataset, direction), a column for PII — and only on what that job did:
an unencrypted transfer on the transport the job's own newest event named (`flow_transports`), unmasked
PII on the job's latest column lineage into the target. Another job's newer event can neither open nor
resolve it. Each finding carries a structured subject (catalog/findings/subjects.py) and a product whose
steward sees it: the subject's, else the other end's (see `owned`), else `fallback_product`.
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
from catalog.findings.subjects import (
    Subject,
    dataset_subject,
    display,
    field_subject,
    flow_subject,
    job_ref,
    job_subject,
    namespace_subject,
)
from catalog.openlineage.events import OpenLineageEvent
from catalog.policy.grants import LIVE_GRANTS
from catalog.policy.products import Claim, ProductMap
from catalog.policy.scopes import DatasetRef, GrantScope, covered

NameKey = tuple[str, str]

# Rules whose subject is a dataset (resolution scope: dataset_id) or a job (scope: job_id). Rules judged
# per flow are evaluated, and so resolved, through their job: every flow of a job in scope is judged whole,
# so an open finding that no longer fires is one whose own job fixed it (or stopped using the dataset) —
# never one hidden by another job's newer event. (Any event that changes a flow names its job; judging
# every flow of a dataset on each batch touching it would cost most on the most-read tables.)
DATASET_RULES = ["unlineaged-transfer", "pii-unmasked", "ownership-conflict"]
JOB_RULES = ["unencrypted-transfer", "cross-product-access", "analytics-on-oltp", "ownership-conflict"]

_DATASET_FACTS = """
SELECT d.id, d.namespace_id, n.name AS namespace, d.name, d.last_seen,
       (SELECT jsonb_agg(jsonb_build_array(c.owner, c.emitter, c.first_logged))::text
        FROM ownership_claims c WHERE c.dataset_id = d.id) AS claims
FROM {source}
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

# The latest run of a job (for evidence): a stable choice, so `catalog scan` and ingest agree; by first
# seen, which ix_runs_job_id_first_seen answers with one index probe.
_LATEST_RUN = (
    "(SELECT r.run_uuid FROM runs r WHERE r.job_id = {} ORDER BY r.first_seen DESC, r.run_uuid DESC LIMIT 1)"
)

# For routing a finding to a steward (never for judging a crossing): the product of the jobs that produce a
# dataset no product owns — an analytics table made by another product's job is that product's to answer.
_PRODUCED_BY = (
    "(SELECT min(pa.product) FROM job_io o JOIN product_assignments pa ON pa.subject_kind = 'job' "
    "AND pa.subject_id = o.job_id WHERE o.dataset_id = {} AND o.direction = 'output')"
)

# A dataset is unlineaged when it is written but no producing job has an input and no column lineage
# explains it, or when it sits in a tier whose datasets must be produced (analytics) and nothing does.
# Its product, when the dataset is in none: the producing jobs' (else the consuming jobs') product.
UNLINEAGED = """
SELECT d.id, d.last_seen,
       EXISTS (SELECT 1 FROM job_io o WHERE o.dataset_id = d.id AND o.direction = 'output') AS produced,
       EXISTS (SELECT 1 FROM job_io o JOIN job_io i ON i.job_id = o.job_id AND i.direction = 'input'
               WHERE o.dataset_id = d.id AND o.direction = 'output') AS from_inputs,
       EXISTS (SELECT 1 FROM column_edges e WHERE e.target_dataset_id = d.id) AS column_lineage
FROM datasets d
WHERE d.id = ANY($1::bigint[])
"""

# The evidence and owners of the (few) datasets an unlineaged finding is about: producing jobs, the latest
# run, and the producing (else any touching) jobs' product for a dataset in no product.
UNLINEAGED_DETAILS = f"""
SELECT d.id,
       (SELECT jsonb_agg(jsonb_build_object('namespace', jn.name, 'name', j.name) ORDER BY jn.name, j.name)
        FROM job_io o JOIN jobs j ON j.id = o.job_id JOIN namespaces jn ON jn.id = j.namespace_id
        WHERE o.dataset_id = d.id AND o.direction = 'output')::text AS producers,
       (SELECT {_LATEST_RUN.format("o.job_id")} FROM job_io o
        WHERE o.dataset_id = d.id AND o.direction = 'output' ORDER BY o.last_seen DESC, o.job_id LIMIT 1)
         AS run_id,
       {_PRODUCED_BY.format("d.id")} AS producer_product,
       (SELECT min(pa.product) FROM job_io o
        JOIN product_assignments pa ON pa.subject_kind = 'job' AND pa.subject_id = o.job_id
        WHERE o.dataset_id = d.id) AS job_product
FROM datasets d
WHERE d.id = ANY($1::bigint[])
"""

# A PII column of a written dataset that no column lineage explains: an unmasked classification that did
# not come along lineage (declared or detected), and no column edge into the column.
UNLINEAGED_PII_COLUMNS = """
SELECT f.id AS field_id, f.dataset_id, f.path, array_agg(DISTINCT c.tag ORDER BY c.tag) AS tags,
       f.last_seen
FROM classifications c
JOIN dataset_fields f ON f.id = c.field_id
WHERE c.dataset_id = ANY($1::bigint[]) AND NOT c.masked AND c.source <> 'propagated'
  AND EXISTS (SELECT 1 FROM job_io o WHERE o.dataset_id = f.dataset_id AND o.direction = 'output')
  -- (target dataset, target field) leads the column-edge identity index
  AND NOT EXISTS (SELECT 1 FROM column_edges e
                  WHERE e.target_dataset_id = f.dataset_id AND e.target_field_id = f.id)
GROUP BY f.id, f.dataset_id, f.path, f.last_seen
"""

# The live flows of the scope's jobs: edges seen in the job's latest event of that direction (an input a
# job's newer runs dropped no longer counts).
_LIVE_FLOWS = """
WITH io AS (
    SELECT io.* FROM (
        SELECT io.*, max(io.last_seen) OVER (PARTITION BY io.job_id, io.direction) AS latest
        FROM job_io io WHERE io.job_id = ANY($1::bigint[])
    ) io
    WHERE io.last_seen >= io.latest
)
"""

_FLOW_NAMES = """
JOIN datasets d ON d.id = io.dataset_id
JOIN namespaces dn ON dn.id = d.namespace_id
JOIN jobs j ON j.id = io.job_id
JOIN namespaces jn ON jn.id = j.namespace_id
LEFT JOIN product_assignments jp ON jp.subject_kind = 'job' AND jp.subject_id = io.job_id
LEFT JOIN product_assignments dp ON dp.subject_kind = 'dataset' AND dp.subject_id = io.dataset_id
"""

# Unencrypted transfer, per flow: the transport that job last used for that dataset in that direction.
UNENCRYPTED = (
    _LIVE_FLOWS
    + """
SELECT io.job_id, io.dataset_id, io.direction, io.last_seen, d.namespace_id, dn.name AS namespace, d.name,
       jn.name AS job_namespace, j.name AS job_name, jp.product AS job_product, dp.product AS dataset_product,
       t.uri, t.event_time AS uri_time, t.run_uuid,
       CASE WHEN dp.product IS NULL AND jp.product IS NULL THEN """
    + _PRODUCED_BY.format("io.dataset_id")
    + """ END AS producer_product
FROM io
JOIN flow_transports t ON t.job_id = io.job_id AND t.dataset_id = io.dataset_id AND t.direction = io.direction
"""
    + _FLOW_NAMES
)

# Product of job A touching a dataset of product B. Whether a live grant of B to A covers an input is
# decided after the query by `GrantScope.covers` (catalog/policy/scopes.py), the enforcer's own
# matcher, so a flow is judged granted exactly when the grantee's read is allowed (grants cover reads; a
# write into another product's dataset is always a boundary crossing).
CROSS_PRODUCT = (
    _LIVE_FLOWS
    + f"""
SELECT io.job_id, io.dataset_id, io.direction, io.last_seen, d.namespace_id, jp.product AS job_product,
       dp.product AS dataset_product, dn.name AS namespace, d.name, jn.name AS job_namespace, j.name AS job_name,
       {_LATEST_RUN.format("io.job_id")} AS run_uuid
FROM io
"""
    + _FLOW_NAMES
    + """
WHERE jp.product IS NOT NULL AND dp.product IS NOT NULL AND jp.product <> dp.product
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
    _LIVE_FLOWS
    + f"""
SELECT io.job_id, dn.id AS namespace_id, dn.name AS namespace, max(io.last_seen) AS last_seen,
       array_agg(d.name ORDER BY d.name) AS datasets, nt.product, min(dp.product) AS dataset_product,
       {_LATEST_RUN.format("io.job_id")} AS run_uuid
FROM io
JOIN datasets d ON d.id = io.dataset_id
JOIN namespaces dn ON dn.id = d.namespace_id
JOIN product_assignments nt ON nt.subject_kind = 'namespace' AND nt.subject_id = dn.id
LEFT JOIN product_assignments dp ON dp.subject_kind = 'dataset' AND dp.subject_id = io.dataset_id
WHERE io.direction = 'input' AND nt.tier = 'oltp' AND io.job_id = ANY($2::bigint[])
GROUP BY io.job_id, dn.id, dn.name, nt.product
"""
)

# Datasets of two or more products in one OLTP namespace (one database server).
SHARED_DATABASE = """
SELECT n.id, n.name, array_agg(DISTINCT pa.product ORDER BY pa.product) AS products,
       max(d.last_seen) AS last_seen
FROM namespaces n
JOIN product_assignments nt ON nt.subject_kind = 'namespace' AND nt.subject_id = n.id AND nt.tier = 'oltp'
JOIN datasets d ON d.namespace_id = n.id
JOIN product_assignments pa ON pa.subject_kind = 'dataset' AND pa.subject_id = d.id
WHERE n.id = ANY($1::bigint[]) AND pa.product IS NOT NULL
GROUP BY n.id, n.name
HAVING count(DISTINCT pa.product) > 1
"""

# ...one finding per product that has datasets there (each product's steward sees and answers for its own
# part), listing them; asked only for the shared databases found above.
SHARED_DATABASE_PARTS = """
SELECT d.namespace_id, pa.product, count(*) AS n_datasets,
       (array_agg(d.name ORDER BY d.name))[1:50] AS datasets, max(d.last_seen) AS last_seen
FROM datasets d
JOIN product_assignments pa ON pa.subject_kind = 'dataset' AND pa.subject_id = d.id
WHERE d.namespace_id = ANY($1::bigint[]) AND pa.product IS NOT NULL
GROUP BY d.namespace_id, pa.product
"""

# A PII column (an unmasked classification of the source field) copied without masking into another
# product's dataset or into the analytics tier: one finding per (job, target column), judged on the
# edges of that job's latest column lineage into the dataset (a job that starts masking resolves its own).
PII_UNMASKED = f"""
WITH edges AS (
    SELECT e.*, max(e.last_seen) OVER (PARTITION BY e.job_id, e.target_dataset_id) AS latest
    FROM column_edges e WHERE e.target_dataset_id = ANY($1::bigint[])
)
SELECT DISTINCT ON (e.job_id, e.target_field_id)
       e.job_id, e.target_dataset_id, e.target_field_id, tf.path AS target_path, e.source_dataset_id,
       sf.path AS source_path, sn.name AS source_namespace, sd.name AS source_name, c.tag,
       tp.product AS target_product, sp.product AS source_product, jp.product AS job_product,
       tt.tier AS target_tier, e.last_seen, jn.name AS job_namespace, j.name AS job_name,
       {_LATEST_RUN.format("e.job_id")} AS run_uuid,
       CASE WHEN sp.product IS NULL AND tp.product IS NULL AND jp.product IS NULL
            THEN {_PRODUCED_BY.format("e.source_dataset_id")} END AS source_producer_product
FROM edges e
JOIN classifications c ON c.field_id = e.source_field_id AND NOT c.masked
JOIN dataset_fields sf ON sf.id = e.source_field_id
JOIN dataset_fields tf ON tf.id = e.target_field_id
JOIN datasets sd ON sd.id = e.source_dataset_id
JOIN namespaces sn ON sn.id = sd.namespace_id
JOIN datasets td ON td.id = e.target_dataset_id
LEFT JOIN jobs j ON j.id = e.job_id
LEFT JOIN namespaces jn ON jn.id = j.namespace_id
LEFT JOIN product_assignments tp ON tp.subject_kind = 'dataset' AND tp.subject_id = e.target_dataset_id
LEFT JOIN product_assignments sp ON sp.subject_kind = 'dataset' AND sp.subject_id = e.source_dataset_id
LEFT JOIN product_assignments jp ON jp.subject_kind = 'job' AND jp.subject_id = e.job_id
LEFT JOIN product_assignments tt ON tt.subject_kind = 'namespace' AND tt.subject_id = td.namespace_id
WHERE e.last_seen >= e.latest AND NOT e.masking
  AND ((tp.product IS NOT NULL AND sp.product IS NOT NULL AND tp.product <> sp.product)
       OR tt.tier = 'analytics')
ORDER BY e.job_id, e.target_field_id, c.tag, sn.name, sd.name, sf.path
"""

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
       OR (f.rule = 'shared-database' AND f.namespace_id = ANY($5::bigint[])))
  AND (f.rule, f.subject_key) NOT IN (SELECT * FROM unnest($6::text[], $7::text[]))
"""


@dataclass(slots=True)
class FindingRow:
    rule: str
    severity: str
    subject: Subject
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
            self.subject["kind"],
            self.subject_key,
            self.product,
            self.dataset_id,
            self.job_id,
            self.namespace_id,
            orjson.dumps(self.evidence, default=str).decode(),
            self.seen,
            orjson.dumps(self.subject).decode(),
            display(self.subject),
        )


@dataclass(frozen=True, slots=True)
class Redaction:
    """A secret the accepting path redacted: whose event (job or dataset), where, when, which run, and the
    dataset the pointer is inside of (if any) and every dataset the event named (to find a product)."""

    owner: NameKey
    kind: str
    pointer: str
    at: dt.datetime
    run_id: uuid.UUID | None
    dataset: NameKey | None
    datasets: tuple[NameKey, ...]


@dataclass(slots=True)
class Observations:
    """What a batch of events says beyond the projection: the subjects touched, and redacted secrets."""

    datasets: set[NameKey] = field(default_factory=set)
    jobs: set[NameKey] = field(default_factory=set)
    redactions: list[Redaction] = field(default_factory=list)

    @classmethod
    def of(cls, events: Iterable[OpenLineageEvent]) -> Observations:
        seen = cls()
        for event in events:
            refs = [*event.inputs, *event.outputs]
            if event.dataset is not None:
                refs.append(event.dataset)
            keys = tuple((ref.namespace, ref.name) for ref in refs)
            seen.datasets.update(keys)
            job: NameKey | None = None
            if event.job_namespace is not None and event.job_name is not None:
                job = (event.job_namespace, event.job_name)
                seen.jobs.add(job)
            if not event.redactions:
                continue
            if job is not None:
                owner, kind = job, "job"
            elif event.dataset is not None:
                owner, kind = (event.dataset.namespace, event.dataset.name), "dataset"
            else:
                continue
            for pointer in event.redactions:
                seen.redactions.append(
                    Redaction(
                        owner, kind, pointer, event.event_time, event.run_id, _pointed(event, pointer), keys
                    )
                )
        return seen


def _pointed(event: OpenLineageEvent, pointer: str) -> NameKey | None:
    """The dataset a JSON pointer such as `/inputs/0/facets/dataSource/uri` lies inside of, if any."""
    parts = pointer.split("/")
    if len(parts) < 3 or not parts[2].isdigit():
        return None
    refs = {"inputs": event.inputs, "outputs": event.outputs}.get(parts[1])
    index = int(parts[2])
    if refs is None or index >= len(refs):
        return None
    return (refs[index].namespace, refs[index].name)


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


def _owners(value: Any) -> list[str]:
    return [o for o in value or [] if isinstance(o, str)]


def _claims(value: str | None) -> list[Claim]:
    """A dataset's ownership claims (catalog/policy/products.py), as the facts query aggregates them."""
    return [Claim(owner, emitter, logged) for owner, emitter, logged in orjson.loads(value or "[]")]


def _run(value: Any) -> dict[str, Any]:
    return {"run_id": str(value)} if value is not None else {}


def _key(*parts: Any) -> str:
    return ":".join("-" if p is None else str(p) for p in parts)


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


async def audit_reassignments(
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
) -> set[tuple[str, str]]:
    """Assign products, then evaluate every rule over `datasets` and `jobs` (fact rows); returns the
    (rule, subject key) of every finding that fires in the scope."""
    seen = observations or Observations()
    ns_assign, ds_assign, job_assign, moved = await assign_products(raw, products, datasets, jobs)
    dataset_ids = [r["id"] for r in datasets]
    job_ids = [r["id"] for r in jobs]
    namespace_ids = sorted({r["namespace_id"] for r in datasets})
    ds_by_id = {r["id"]: r for r in datasets}
    fired: list[FindingRow] = []

    def owned(*candidates: str | None) -> str | None:
        """The first product among the candidates (the subject's, then the other end's), else the fallback:
        every finding belongs to a product whose steward sees it."""
        return next((c for c in candidates if c), rules.fallback_product)

    # unencrypted transfer, per flow: the transport *that* job used for that dataset in that direction.
    if job_ids:
        for r in await raw.fetch(UNENCRYPTED, job_ids):
            verdict = judge_transport(r["uri"], rules.transport)
            if verdict is None or not verdict.plaintext:
                continue
            job = job_ref(r["job_namespace"], r["job_name"])
            fired.append(
                FindingRow(
                    "unencrypted-transfer",
                    rules.severity["unencrypted-transfer"],
                    flow_subject(r["namespace"], r["name"], job=job, direction=r["direction"]),
                    _key("flow", r["job_id"], r["dataset_id"], r["direction"]),
                    owned(r["dataset_product"], r["job_product"], r["producer_product"]),
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
                        **_run(r["run_uuid"]),
                        "event_time": r["uri_time"].isoformat(),
                    },
                    max(r["last_seen"], r["uri_time"]),
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
            subject = (dataset_subject if kind == "dataset" else job_subject)(
                record["namespace"], record["name"]
            )
            fired.append(
                FindingRow(
                    "ownership-conflict",
                    rules.severity["ownership-conflict"],
                    subject,
                    f"conflict:{kind}:{subject_id}",
                    owned(a.product, *(p for _, p in a.candidates)),
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

    if dataset_ids:
        unlineaged: dict[int, tuple[str, Any]] = {}  # dataset id -> (reason, last seen)
        explained: list[int] = []
        for r in await raw.fetch(UNLINEAGED, dataset_ids):
            tier = ns_assign[ds_by_id[r["id"]]["namespace_id"]].tier
            if r["produced"] and not r["from_inputs"] and not r["column_lineage"]:
                unlineaged[r["id"]] = (
                    "written by jobs that read nothing: no lineage to its origin",
                    r["last_seen"],
                )
            elif not r["produced"] and tier in rules.produced_tiers:
                unlineaged[r["id"]] = (f"a dataset in the {tier} tier that no job produces", r["last_seen"])
            else:
                explained.append(r["id"])
        # ...and at column level: a PII column in an output that no column lineage explains (when the
        # dataset itself has lineage; otherwise the dataset's finding already says it all).
        columns = await raw.fetch(UNLINEAGED_PII_COLUMNS, explained) if explained else []
        # Evidence and owners only for the datasets that fire (a few), not for the whole scope.
        about = sorted({*unlineaged, *(c["dataset_id"] for c in columns)})
        details = {d["id"]: d for d in await raw.fetch(UNLINEAGED_DETAILS, about)} if about else {}

        def unlineaged_finding(
            dataset_id: int, subject: Subject, key: str, facts: dict[str, Any], seen_at: dt.datetime
        ) -> FindingRow:
            record, d = ds_by_id[dataset_id], details[dataset_id]
            return FindingRow(
                "unlineaged-transfer",
                rules.severity["unlineaged-transfer"],
                subject,
                key,
                owned(ds_assign[dataset_id].product, d["producer_product"], d["job_product"]),
                dataset_id,
                None,
                record["namespace_id"],
                {
                    "namespace": record["namespace"],
                    "dataset": record["name"],
                    **facts,
                    "producing_jobs": orjson.loads(d["producers"]) if d["producers"] else [],
                    **_run(d["run_id"]),
                },
                seen_at,
            )

        for dataset_id, (reason, last_seen) in unlineaged.items():
            record = ds_by_id[dataset_id]
            subject = dataset_subject(record["namespace"], record["name"])
            fired.append(
                unlineaged_finding(
                    dataset_id, subject, f"dataset:{dataset_id}", {"reason": reason}, last_seen
                )
            )
        for c in columns:
            record = ds_by_id[c["dataset_id"]]
            facts = {
                "field": c["path"],
                "tags": list(c["tags"]),
                "reason": "a PII column in an output that no column lineage explains",
            }
            subject = field_subject(record["namespace"], record["name"], c["path"])
            column_key = f"column:{c['dataset_id']}:{c['field_id']}"
            fired.append(unlineaged_finding(c["dataset_id"], subject, column_key, facts, c["last_seen"]))

        for r in await raw.fetch(PII_UNMASKED, dataset_ids):
            record = ds_by_id[r["target_dataset_id"]]
            where = (
                "the analytics tier" if r["target_tier"] == "analytics" else f"product {r['target_product']}"
            )
            job = job_ref(r["job_namespace"], r["job_name"])
            fired.append(
                FindingRow(
                    "pii-unmasked",
                    rules.severity["pii-unmasked"],
                    flow_subject(
                        record["namespace"],
                        record["name"],
                        job=job,
                        direction="output",
                        field=r["target_path"],
                    ),
                    _key("pii", r["job_id"], r["target_dataset_id"], r["target_field_id"]),
                    owned(
                        r["source_product"],
                        r["target_product"],
                        r["job_product"],
                        r["source_producer_product"],
                    ),
                    r["target_dataset_id"],
                    r["job_id"],
                    record["namespace_id"],
                    {
                        "namespace": record["namespace"],
                        "dataset": record["name"],
                        "field": r["target_path"],
                        "job": job,
                        "source": {
                            "namespace": r["source_namespace"],
                            "dataset": r["source_name"],
                            "field": r["source_path"],
                        },
                        "tag": r["tag"],
                        "source_product": r["source_product"],
                        "target_product": r["target_product"],
                        "reason": f"PII copied unmasked into {where}",
                        **_run(r["run_uuid"]),
                    },
                    r["last_seen"],
                )
            )

    if namespace_ids:
        shared = {r["id"]: r for r in await raw.fetch(SHARED_DATABASE, namespace_ids)}
        for part in await raw.fetch(SHARED_DATABASE_PARTS, sorted(shared)) if shared else []:
            r = shared[part["namespace_id"]]
            fired.append(
                FindingRow(
                    "shared-database",
                    rules.severity["shared-database"],
                    namespace_subject(r["name"]),
                    f"namespace:{r['id']}:{part['product']}",
                    part["product"],
                    None,
                    None,
                    r["id"],
                    {
                        "namespace": r["name"],
                        "products": list(r["products"]),
                        "product": part["product"],
                        "datasets": list(part["datasets"]),
                        "dataset_count": part["n_datasets"],
                        "reason": f"datasets of {len(r['products'])} products share this OLTP database",
                    },
                    part["last_seen"],
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
            job = job_ref(r["job_namespace"], r["job_name"])
            fired.append(
                FindingRow(
                    "cross-product-access",
                    rules.severity["cross-product-access"],
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
                        **_run(r["run_uuid"]),
                    },
                    r["last_seen"],
                )
            )
        jobs_by_id = {r["id"]: r for r in jobs}
        analytic = [
            r["id"] for r in jobs if is_analytics_job(rules, r["namespace"], r["name"], r["integration"])
        ]
        if analytic:
            for r in await raw.fetch(ANALYTICS_ON_OLTP, analytic, analytic):
                record = jobs_by_id[r["job_id"]]
                job = job_ref(record["namespace"], record["name"])
                fired.append(
                    FindingRow(
                        "analytics-on-oltp",
                        rules.severity["analytics-on-oltp"],
                        # the flow is the job reading the database: a namespace, no one dataset
                        {
                            **namespace_subject(r["namespace"]),
                            "kind": "flow",
                            "job": job,
                            "direction": "input",
                        },
                        f"analytics:{r['job_id']}:{r['namespace_id']}",
                        owned(r["product"], r["dataset_product"], job_assign[r["job_id"]].product),
                        None,
                        r["job_id"],
                        r["namespace_id"],
                        {
                            "namespace": r["namespace"],
                            "datasets": list(r["datasets"]),
                            "job": job,
                            "direction": "input",
                            "reason": "an analytics/BI job reads the OLTP database instead of its CDC copy",
                            **_run(r["run_uuid"]),
                        },
                        r["last_seen"],
                    )
                )

    # credentials in metadata: the secret was redacted before storage; the finding says where it was.
    if seen.redactions:
        ds_keys = {(r["namespace"], r["name"]): r for r in datasets}
        job_facts = {(r["namespace"], r["name"]): r for r in jobs}

        def ds_product(key: NameKey | None) -> str | None:
            record = ds_keys.get(key) if key is not None else None
            return ds_assign[record["id"]].product if record is not None else None

        for red in seen.redactions:
            record = (job_facts if red.kind == "job" else ds_keys).get(red.owner)
            if record is None:
                continue
            assigned = (job_assign if red.kind == "job" else ds_assign)[record["id"]]
            subject = (job_subject if red.kind == "job" else dataset_subject)(red.owner[0], red.owner[1])
            evidence: dict[str, Any] = {
                "pointer": red.pointer,
                **_run(red.run_id),
                "event_time": red.at.isoformat(),
                "reason": "a password, token or key in the event; redacted before the event was stored",
            }
            if red.kind == "job":
                evidence["job"] = job_ref(*red.owner)
            if red.dataset is not None or red.kind == "dataset":
                inside = red.dataset or red.owner
                evidence["namespace"], evidence["dataset"] = inside
            fired.append(
                FindingRow(
                    "credentials-in-metadata",
                    rules.severity["credentials-in-metadata"],
                    subject,
                    f"credentials:{red.kind}:{record['id']}:{red.pointer}",
                    owned(
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

    # PII raises severity (classifications from catalog/classification, when present for the dataset).
    pii_candidates = sorted({f.dataset_id for f in fired if f.dataset_id is not None})
    if rules.pii_bump and pii_candidates:
        pii = {r["dataset_id"] for r in await raw.fetch(PII_DATASETS, pii_candidates)}
        for finding in fired:
            if finding.dataset_id in pii:
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
        await raw.execute(UPSERT_FINDINGS, *_columns(rows, 12))
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
        await audit_reassignments(raw, moved, datasets, jobs)
    return set(unique)
