"""Rules on lineage and PII: data whose origin no lineage explains (`unlineaged-transfer`, judged for a
dataset and, for PII, per column) and PII copied unmasked across a product boundary or into the analytics
tier (`pii-unmasked`, judged per job and target column). All judged on the scope's datasets."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from catalog.findings.facts import LATEST_RUN, PRODUCED_BY, TOUCHED_BY, Record
from catalog.findings.rules.base import Finding, Scope, key, run_of
from catalog.findings.subjects import Subject, dataset_subject, field_subject, flow_subject, job_ref

# A dataset is unlineaged when it is written but no producing job has an input and no column lineage
# explains it, or when it sits in a tier whose datasets must be produced (analytics) and nothing does.
UNLINEAGED = """
SELECT d.id, d.last_seen,
       EXISTS (SELECT 1 FROM job_io o WHERE o.dataset_id = d.id AND o.direction = 'output') AS produced,
       EXISTS (SELECT 1 FROM job_io o JOIN job_io i ON i.job_id = o.job_id AND i.direction = 'input'
               WHERE o.dataset_id = d.id AND o.direction = 'output') AS from_inputs,
       EXISTS (SELECT 1 FROM column_edges e WHERE e.target_dataset_id = d.id) AS column_lineage
FROM datasets d
WHERE d.id = ANY($1::bigint[])
"""


def _details(dataset: str) -> str:
    """The evidence and owners of an unlineaged dataset: producing jobs, the latest run, and the producing
    (else any touching) jobs' product for a dataset in no product. Select-list columns, so computed only
    for the rows that fire."""
    return f"""
       (SELECT jsonb_agg(jsonb_build_object('namespace', jn.name, 'name', j.name) ORDER BY jn.name, j.name)
        FROM job_io o JOIN jobs j ON j.id = o.job_id JOIN namespaces jn ON jn.id = j.namespace_id
        WHERE o.dataset_id = {dataset} AND o.direction = 'output')::text AS producers,
       (SELECT {LATEST_RUN.format("o.job_id")} FROM job_io o
        WHERE o.dataset_id = {dataset} AND o.direction = 'output' ORDER BY o.last_seen DESC, o.job_id LIMIT 1)
         AS run_id,
       {PRODUCED_BY.format(dataset)} AS producer_product,
       {TOUCHED_BY.format(dataset)} AS job_product"""


UNLINEAGED_DETAILS = f"SELECT d.id, {_details('d.id')} FROM datasets d WHERE d.id = ANY($1::bigint[])"

# A PII column of a dataset that has lineage (written by a job with inputs, or with column lineage into
# it: otherwise the dataset's own finding already says it all) that no column lineage explains: an
# unmasked classification that did not come along lineage (declared or detected), no column edge into it.
UNLINEAGED_PII_COLUMNS = f"""
SELECT u.*, {_details("u.dataset_id")}
FROM (
    SELECT f.id AS field_id, f.dataset_id, f.path, array_agg(DISTINCT c.tag ORDER BY c.tag) AS tags,
           f.last_seen
    FROM classifications c
    JOIN dataset_fields f ON f.id = c.field_id
    WHERE c.dataset_id = ANY($1::bigint[]) AND NOT c.masked AND c.source <> 'propagated'
      AND EXISTS (SELECT 1 FROM job_io o WHERE o.dataset_id = f.dataset_id AND o.direction = 'output')
      AND (EXISTS (SELECT 1 FROM job_io o JOIN job_io i ON i.job_id = o.job_id AND i.direction = 'input'
                   WHERE o.dataset_id = f.dataset_id AND o.direction = 'output')
           OR EXISTS (SELECT 1 FROM column_edges e WHERE e.target_dataset_id = f.dataset_id))
      -- (target dataset, target field) leads the column-edge identity index
      AND NOT EXISTS (SELECT 1 FROM column_edges e
                      WHERE e.target_dataset_id = f.dataset_id AND e.target_field_id = f.id)
    GROUP BY f.id, f.dataset_id, f.path, f.last_seen
) u
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
       {LATEST_RUN.format("e.job_id")} AS run_uuid,
       CASE WHEN sp.product IS NULL AND tp.product IS NULL AND jp.product IS NULL
            THEN {PRODUCED_BY.format("e.source_dataset_id")} END AS source_producer_product
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


def _unlineaged(
    scope: Scope,
    dataset_id: int,
    subject: Subject,
    subject_key: str,
    facts: dict[str, Any],
    details: Record,
    seen: dt.datetime,
) -> Finding:
    record = scope.datasets_by_id[dataset_id]
    return Finding(
        subject,
        subject_key,
        scope.owned(
            scope.assigned.datasets[dataset_id].product, details["producer_product"], details["job_product"]
        ),
        dataset_id,
        None,
        record["namespace_id"],
        {
            "namespace": record["namespace"],
            "dataset": record["name"],
            **facts,
            "producing_jobs": orjson.loads(details["producers"]) if details["producers"] else [],
            **run_of(details["run_id"]),
        },
        seen,
    )


async def unlineaged_dataset(scope: Scope) -> list[Finding]:
    """A written dataset no input or column lineage explains, or one of a produced tier nothing produces."""
    if not scope.dataset_ids:
        return []
    fired: dict[int, tuple[str, dt.datetime]] = {}  # dataset id -> (reason, last seen)
    for r in await scope.raw.fetch(UNLINEAGED, scope.dataset_ids):
        tier = scope.assigned.namespaces[scope.datasets_by_id[r["id"]]["namespace_id"]].tier
        if r["produced"] and not r["from_inputs"] and not r["column_lineage"]:
            fired[r["id"]] = ("written by jobs that read nothing: no lineage to its origin", r["last_seen"])
        elif not r["produced"] and tier in scope.config.produced_tiers:
            fired[r["id"]] = (f"a dataset in the {tier} tier that no job produces", r["last_seen"])
    if not fired:
        return []
    # Evidence and owners only for the datasets that fire (a few), not for the whole scope.
    details = {d["id"]: d for d in await scope.raw.fetch(UNLINEAGED_DETAILS, sorted(fired))}
    out = []
    for dataset_id, (reason, last_seen) in fired.items():
        record = scope.datasets_by_id[dataset_id]
        subject = dataset_subject(record["namespace"], record["name"])
        facts = {"reason": reason}
        out.append(
            _unlineaged(
                scope, dataset_id, subject, f"dataset:{dataset_id}", facts, details[dataset_id], last_seen
            )
        )
    return out


async def unlineaged_pii_column(scope: Scope) -> list[Finding]:
    """A PII column of an output that no column lineage explains, in a dataset that has lineage."""
    if not scope.dataset_ids:
        return []
    out = []
    for c in await scope.raw.fetch(UNLINEAGED_PII_COLUMNS, scope.dataset_ids):
        record = scope.datasets_by_id[c["dataset_id"]]
        facts = {
            "field": c["path"],
            "tags": list(c["tags"]),
            "reason": "a PII column in an output that no column lineage explains",
        }
        subject = field_subject(record["namespace"], record["name"], c["path"])
        column_key = f"column:{c['dataset_id']}:{c['field_id']}"
        out.append(_unlineaged(scope, c["dataset_id"], subject, column_key, facts, c, c["last_seen"]))
    return out


async def pii_unmasked(scope: Scope) -> list[Finding]:
    """PII copied unmasked into another product's dataset or into the analytics tier."""
    if not scope.dataset_ids:
        return []
    out = []
    for r in await scope.raw.fetch(PII_UNMASKED, scope.dataset_ids):
        record = scope.datasets_by_id[r["target_dataset_id"]]
        where = "the analytics tier" if r["target_tier"] == "analytics" else f"product {r['target_product']}"
        job = job_ref(r["job_namespace"], r["job_name"])
        out.append(
            Finding(
                flow_subject(
                    record["namespace"], record["name"], job=job, direction="output", field=r["target_path"]
                ),
                key("pii", r["job_id"], r["target_dataset_id"], r["target_field_id"]),
                scope.owned(
                    r["source_product"], r["target_product"], r["job_product"], r["source_producer_product"]
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
                    **run_of(r["run_uuid"]),
                },
                r["last_seen"],
            )
        )
    return out
