"""What the rules judge: the scope's datasets and jobs (one row each, by name or by id), what a batch of
events says beyond the projection (`Observations`), and the SQL fragments several rules share.

Everything here reads; nothing writes. The engine (catalog/findings/engine.py) fetches the facts once per
call and hands them to every rule in the registry (catalog/findings/rules/).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import asyncpg

from catalog.openlineage.events import OpenLineageEvent

NameKey = tuple[str, str]
Record: TypeAlias = asyncpg.Record

_DATASET_FACTS = """
SELECT d.id, d.namespace_id, n.name AS namespace, d.name, d.last_seen,
       (SELECT jsonb_agg(jsonb_build_array(c.owner, c.emitter, c.first_logged))::text
        FROM ownership_claims c WHERE c.dataset_id = d.id) AS claims
FROM {source}
{where}
"""
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
JOB_FACTS_BY_ID = _JOB_FACTS.format(
    source="jobs j JOIN namespaces n ON n.id = j.namespace_id",
    where="WHERE j.id = ANY($1::bigint[])",
)

# -- fragments the rules' SQL shares -------------------------------------------------------------------

# The latest run of a job (for evidence): a stable choice, so `catalog scan` and ingest agree; by first
# seen, then run id: ix_runs_job_id_first_seen_run_uuid gives that order, so it is one backward index
# probe (with the index on (job_id, first_seen) alone it sorted all the job's runs: migration 0012).
LATEST_RUN = (
    "(SELECT r.run_uuid FROM runs r WHERE r.job_id = {} ORDER BY r.first_seen DESC, r.run_uuid DESC LIMIT 1)"
)

# The product of the jobs that touch a dataset ({0}), those in direction {1} or, with {1} empty, either.
# Written as a lookup per job_io row, not a join: the join let the planner start from every job's
# assignment and probe job_io for each (625,000 probes for 500 datasets, 490 ms, on a catalog not yet
# ANALYZEd); this form always starts from the dataset's own job_io rows.
_JOBS_PRODUCT = (
    "(SELECT min((SELECT pa.product FROM product_assignments pa WHERE pa.subject_kind = 'job' "
    "AND pa.subject_id = o.job_id)) FROM job_io o WHERE o.dataset_id = {0}{1})"
)
# For routing a finding to a steward (never for judging a crossing): the product of the jobs that produce a
# dataset no product owns — an analytics table made by another product's job is that product's to answer.
PRODUCED_BY = _JOBS_PRODUCT.replace("{1}", " AND o.direction = 'output'")
# The product of any job reading or writing the dataset.
TOUCHED_BY = _JOBS_PRODUCT.replace("{1}", "")

# The live flows of the scope's jobs ($1): edges seen in the job's latest event of that direction (an
# input a job's newer runs dropped no longer counts).
LIVE_FLOWS = """
WITH io AS (
    SELECT io.* FROM (
        SELECT io.*, max(io.last_seen) OVER (PARTITION BY io.job_id, io.direction) AS latest
        FROM job_io io WHERE io.job_id = ANY($1::bigint[])
    ) io
    WHERE io.last_seen >= io.latest
)
"""

# The names and products of both ends of a live flow.
FLOW_NAMES = """
JOIN datasets d ON d.id = io.dataset_id
JOIN namespaces dn ON dn.id = d.namespace_id
JOIN jobs j ON j.id = io.job_id
JOIN namespaces jn ON jn.id = j.namespace_id
LEFT JOIN product_assignments jp ON jp.subject_kind = 'job' AND jp.subject_id = io.job_id
LEFT JOIN product_assignments dp ON dp.subject_kind = 'dataset' AND dp.subject_id = io.dataset_id
"""


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


async def facts_by_id(
    raw: asyncpg.Connection[Any], dataset_ids: Iterable[int], job_ids: Iterable[int]
) -> tuple[Sequence[Record], Sequence[Record]]:
    """The fact rows of datasets and jobs by surrogate id (at most two statements): what the projector
    uses, having just resolved the ids (a lookup by names can be planned on the trigram search index)."""
    datasets = sorted(set(dataset_ids))
    jobs = sorted(set(job_ids))
    return (
        await raw.fetch(DATASET_FACTS_BY_ID, datasets) if datasets else [],
        await raw.fetch(JOB_FACTS_BY_ID, jobs) if jobs else [],
    )


@dataclass(frozen=True, slots=True)
class Facts:
    """A batch's observations and the fact rows of what it touched, read once per projector step (by the
    product assignment) and judged by the rules in the same transaction."""

    observations: Observations
    datasets: Sequence[Record]
    jobs: Sequence[Record]
