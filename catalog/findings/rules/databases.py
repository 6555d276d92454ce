"""Rules on how an OLTP database (a namespace whose tier is `oltp`) is used: shared by several products
(`shared-database`, judged per database) or read directly by analytics/BI jobs (`analytics-on-oltp`,
judged per job and database)."""

from __future__ import annotations

from catalog.findings.config import is_analytics_job
from catalog.findings.facts import LATEST_RUN, LIVE_FLOWS
from catalog.findings.rules.base import Finding, Scope, run_of
from catalog.findings.subjects import job_ref, namespace_subject

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

ANALYTICS_ON_OLTP = (
    LIVE_FLOWS
    + f"""
SELECT io.job_id, dn.id AS namespace_id, dn.name AS namespace, max(io.last_seen) AS last_seen,
       array_agg(d.name ORDER BY d.name) AS datasets, nt.product, min(dp.product) AS dataset_product,
       {LATEST_RUN.format("io.job_id")} AS run_uuid
FROM io
JOIN datasets d ON d.id = io.dataset_id
JOIN namespaces dn ON dn.id = d.namespace_id
JOIN product_assignments nt ON nt.subject_kind = 'namespace' AND nt.subject_id = dn.id
LEFT JOIN product_assignments dp ON dp.subject_kind = 'dataset' AND dp.subject_id = io.dataset_id
WHERE io.direction = 'input' AND nt.tier = 'oltp' AND io.job_id = ANY($2::bigint[])
GROUP BY io.job_id, dn.id, dn.name, nt.product
"""
)


async def shared_database(scope: Scope) -> list[Finding]:
    """Datasets of more than one product in one OLTP database: one finding per product with datasets there."""
    if not scope.namespace_ids:
        return []
    shared = {r["id"]: r for r in await scope.raw.fetch(SHARED_DATABASE, scope.namespace_ids)}
    if not shared:
        return []
    out = []
    for part in await scope.raw.fetch(SHARED_DATABASE_PARTS, sorted(shared)):
        r = shared[part["namespace_id"]]
        out.append(
            Finding(
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
    return out


async def analytics_on_oltp(scope: Scope) -> list[Finding]:
    """An analytics/BI job (rules.yaml's `analytics`) reading an OLTP database instead of its CDC copy."""
    analytic = [
        r["id"]
        for r in scope.jobs
        if is_analytics_job(scope.config, r["namespace"], r["name"], r["integration"])
    ]
    if not analytic:
        return []
    out = []
    for r in await scope.raw.fetch(ANALYTICS_ON_OLTP, analytic, analytic):
        record = scope.jobs_by_id[r["job_id"]]
        job = job_ref(record["namespace"], record["name"])
        out.append(
            Finding(
                # the flow is the job reading the database: a namespace, no one dataset
                {**namespace_subject(r["namespace"]), "kind": "flow", "job": job, "direction": "input"},
                f"analytics:{r['job_id']}:{r['namespace_id']}",
                scope.owned(r["product"], r["dataset_product"], scope.assigned.jobs[r["job_id"]].product),
                None,
                r["job_id"],
                r["namespace_id"],
                {
                    "namespace": r["namespace"],
                    "datasets": list(r["datasets"]),
                    "job": job,
                    "direction": "input",
                    "reason": "an analytics/BI job reads the OLTP database instead of its CDC copy",
                    **run_of(r["run_uuid"]),
                },
                r["last_seen"],
            )
        )
    return out
