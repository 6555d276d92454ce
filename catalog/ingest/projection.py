"""Write a batch's rows into the projection: one set-based statement per table, in a fixed order.

Each statement upserts every row of its table for the whole batch from arrays (`unnest`), so a batch
of N events costs about a dozen round trips, not N times that. Rows are sorted by natural key before
they are sent: concurrent writers (several service processes) then lock rows in the same order and
cannot deadlock. Merges are commutative (least/greatest of event times, newest value wins with a
deterministic tie-break), so arrival order does not change the outcome and `rebuild` reproduces it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from catalog.ingest.extract import ClaimKey, NameKey, Rows

UPSERT_NAMESPACES = """
INSERT INTO namespaces (name, first_seen, last_seen)
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[])
ON CONFLICT (name) DO UPDATE
SET first_seen = least(namespaces.first_seen, excluded.first_seen),
    last_seen = greatest(namespaces.last_seen, excluded.last_seen)
RETURNING id, name
"""

UPSERT_DATASETS = """
INSERT INTO datasets (namespace_id, name, first_seen, last_seen)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::timestamptz[])
ON CONFLICT (namespace_id, name) DO UPDATE
SET first_seen = least(datasets.first_seen, excluded.first_seen),
    last_seen = greatest(datasets.last_seen, excluded.last_seen)
RETURNING id, namespace_id, name
"""

UPSERT_JOBS = """
INSERT INTO jobs (namespace_id, name, first_seen, last_seen)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::timestamptz[])
ON CONFLICT (namespace_id, name) DO UPDATE
SET first_seen = least(jobs.first_seen, excluded.first_seen),
    last_seen = greatest(jobs.last_seen, excluded.last_seen)
RETURNING id, namespace_id, name
"""

# The winning state is the greatest (rank, state_time, state): commutative, so arrival order is moot.
_NEWER_STATE = (
    "(excluded.state IS NOT NULL AND (runs.state IS NULL OR (excluded.state_rank, excluded.state_time, "
    'excluded.state COLLATE "C") > (runs.state_rank, runs.state_time, runs.state COLLATE "C")))'
)
UPSERT_RUNS = """
INSERT INTO runs (job_id, run_uuid, state, state_rank, state_time, started_at,
                  parent_run_uuid, parent_job_namespace, parent_job_name, first_seen, last_seen)
SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::smallint[], $5::timestamptz[],
                     $6::timestamptz[], $7::uuid[], $8::text[], $9::text[], $10::timestamptz[],
                     $11::timestamptz[])
ON CONFLICT (job_id, run_uuid) DO UPDATE
SET state = CASE WHEN {newer} THEN excluded.state ELSE runs.state END,
    state_rank = CASE WHEN {newer} THEN excluded.state_rank ELSE runs.state_rank END,
    state_time = CASE WHEN {newer} THEN excluded.state_time ELSE runs.state_time END,
    started_at = least(runs.started_at, excluded.started_at),
    parent_run_uuid = coalesce(excluded.parent_run_uuid, runs.parent_run_uuid),
    parent_job_namespace = coalesce(excluded.parent_job_namespace, runs.parent_job_namespace),
    parent_job_name = coalesce(excluded.parent_job_name, runs.parent_job_name),
    first_seen = least(runs.first_seen, excluded.first_seen),
    last_seen = greatest(runs.last_seen, excluded.last_seen)
RETURNING id, job_id, run_uuid
""".replace("{newer}", _NEWER_STATE)

UPSERT_FIELDS = """
INSERT INTO dataset_fields (dataset_id, path, type, description, attrs_time, attrs_rank, first_seen, last_seen)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::smallint[],
                     $7::timestamptz[], $8::timestamptz[])
ON CONFLICT (dataset_id, path) DO UPDATE
SET type = CASE WHEN {newer} THEN excluded.type ELSE dataset_fields.type END,
    description = CASE WHEN {newer} THEN excluded.description ELSE dataset_fields.description END,
    attrs_rank = CASE WHEN {newer} THEN excluded.attrs_rank ELSE dataset_fields.attrs_rank END,
    attrs_time = CASE WHEN {newer} THEN excluded.attrs_time ELSE dataset_fields.attrs_time END,
    first_seen = least(dataset_fields.first_seen, excluded.first_seen),
    last_seen = greatest(dataset_fields.last_seen, excluded.last_seen)
RETURNING id, dataset_id, path
""".replace(
    "{newer}",
    # The owner's attributes outrank another product's (attrs_rank), then the newest schema wins; equal
    # times are settled by comparing the values (byte order, as Python does).
    "(excluded.attrs_time IS NOT NULL AND (dataset_fields.attrs_time IS NULL "
    "OR (excluded.attrs_rank, excluded.attrs_time, coalesce(excluded.type, '') COLLATE \"C\", "
    "coalesce(excluded.description, '') COLLATE \"C\") > (dataset_fields.attrs_rank, dataset_fields.attrs_time, "
    "coalesce(dataset_fields.type, '') COLLATE \"C\", coalesce(dataset_fields.description, '') COLLATE \"C\")))",
)

UPSERT_VERSIONS = """
INSERT INTO dataset_versions (dataset_id, schema_digest, fields, first_seen, last_seen)
SELECT d, s, f::jsonb, a, b FROM unnest($1::bigint[], $2::bytea[], $3::text[], $4::timestamptz[],
                                       $5::timestamptz[]) AS u(d, s, f, a, b)
ON CONFLICT (dataset_id, schema_digest) DO UPDATE
SET first_seen = least(dataset_versions.first_seen, excluded.first_seen),
    last_seen = greatest(dataset_versions.last_seen, excluded.last_seen)
"""

# Newest event time wins; equal times are settled by the value's digest, never by arrival order.
UPSERT_FACETS = """
INSERT INTO facets (subject_kind, subject_id, name, event_time, value_digest, value)
SELECT k, i, n, t, d, v::jsonb FROM unnest($1::text[], $2::bigint[], $3::text[], $4::timestamptz[],
                                          $5::bytea[], $6::text[]) AS u(k, i, n, t, d, v)
ON CONFLICT (subject_kind, subject_id, name) DO UPDATE
SET event_time = excluded.event_time, value = excluded.value, value_digest = excluded.value_digest
WHERE (excluded.event_time, excluded.value_digest) > (facets.event_time, facets.value_digest)
"""

UPSERT_JOB_IO = """
INSERT INTO job_io (job_id, direction, dataset_id, first_seen, last_seen)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::timestamptz[], $5::timestamptz[])
ON CONFLICT (job_id, direction, dataset_id) DO UPDATE
SET first_seen = least(job_io.first_seen, excluded.first_seen),
    last_seen = greatest(job_io.last_seen, excluded.last_seen)
"""

UPSERT_EDGES = """
INSERT INTO column_edges (target_dataset_id, target_field_id, source_dataset_id, source_field_id, job_id,
                          transformation_type, transformation_subtype, masking, description,
                          first_seen, last_seen)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[],
                     $7::text[], $8::boolean[], $9::text[], $10::timestamptz[], $11::timestamptz[])
ON CONFLICT (target_dataset_id, target_field_id, source_dataset_id, source_field_id, job_id,
             transformation_type, transformation_subtype, masking) DO UPDATE
SET description = CASE WHEN (excluded.last_seen, coalesce(excluded.description, '') COLLATE "C")
                            > (column_edges.last_seen, coalesce(column_edges.description, '') COLLATE "C")
                       THEN excluded.description ELSE column_edges.description END,
    first_seen = least(column_edges.first_seen, excluded.first_seen),
    last_seen = greatest(column_edges.last_seen, excluded.last_seen)
RETURNING source_field_id, target_field_id, (xmax = 0) AS inserted
"""

UPSERT_SYMLINKS = """
INSERT INTO dataset_symlinks (dataset_id, namespace, name, type, first_seen, last_seen)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[])
ON CONFLICT (dataset_id, namespace, name) DO UPDATE
SET type = greatest(excluded.type COLLATE "C", dataset_symlinks.type COLLATE "C"),
    first_seen = least(dataset_symlinks.first_seen, excluded.first_seen),
    last_seen = greatest(dataset_symlinks.last_seen, excluded.last_seen)
"""


# Claims place datasets in log order: the first event that made a claim (first_logged) is kept.
UPSERT_CLAIMS = """
INSERT INTO ownership_claims (dataset_id, owner, emitter, first_logged, first_seen, last_seen)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::timestamptz[], $6::timestamptz[])
ON CONFLICT (dataset_id, owner, emitter) DO UPDATE
SET first_logged = least(ownership_claims.first_logged, excluded.first_logged),
    first_seen = least(ownership_claims.first_seen, excluded.first_seen),
    last_seen = greatest(ownership_claims.last_seen, excluded.last_seen)
RETURNING dataset_id, owner, emitter, (xmax = 0) AS inserted
"""

UPSERT_OBSERVATIONS = """
INSERT INTO lineage_observations (owner_kind, owner_id, observed_at)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::timestamptz[])
ON CONFLICT DO NOTHING
"""


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Transpose rows into the per-column arrays `unnest` takes."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


@dataclass(frozen=True, slots=True)
class Projected:
    """Surrogate ids of what a batch touched, for the steps that follow in the same transaction."""

    dataset_ids: dict[NameKey, int] = field(default_factory=dict)
    job_ids: dict[NameKey, int] = field(default_factory=dict)
    field_ids: dict[tuple[int, str], int] = field(default_factory=dict)
    # (source field, target field) of field-to-field edges this batch inserted (not merely re-saw):
    # only those can open a new path for PII propagation.
    new_field_edges: list[tuple[int, int]] = field(default_factory=list)
    # Ownership claims this batch made for the first time (for the audit log; `Rows.claims` says more).
    new_claims: list[ClaimKey] = field(default_factory=list)


async def project(conn: asyncpg.Connection[Any], rows: Rows) -> Projected:
    """Upsert everything in `rows`; the caller owns the transaction."""
    if not rows.namespaces:
        return Projected()
    ns_rows = sorted((name, s.first, s.last) for name, s in rows.namespaces.items())
    ns_ids = {r["name"]: r["id"] for r in await conn.fetch(UPSERT_NAMESPACES, *_columns(ns_rows, 3))}

    dataset_ids: dict[NameKey, int] = {}
    if rows.datasets:
        ds_rows = sorted((ns_ids[k[0]], k[1], s.first, s.last) for k, s in rows.datasets.items())
        id_to_ns = {v: k for k, v in ns_ids.items()}
        for r in await conn.fetch(UPSERT_DATASETS, *_columns(ds_rows, 4)):
            dataset_ids[(id_to_ns[r["namespace_id"]], r["name"])] = r["id"]

    job_ids: dict[NameKey, int] = {}
    if rows.jobs:
        job_rows = sorted((ns_ids[k[0]], k[1], s.first, s.last) for k, s in rows.jobs.items())
        id_to_ns = {v: k for k, v in ns_ids.items()}
        for r in await conn.fetch(UPSERT_JOBS, *_columns(job_rows, 4)):
            job_ids[(id_to_ns[r["namespace_id"]], r["name"])] = r["id"]

    run_ids: dict[tuple[NameKey, uuid.UUID], int] = {}
    if rows.runs:
        run_rows = sorted(
            (
                job_ids[job],
                run_uuid,
                run.state,
                run.rank,
                run.state_time,
                run.started_at,
                run.parent_run,
                run.parent_job[0] if run.parent_job else None,
                run.parent_job[1] if run.parent_job else None,
                run.span.first,
                run.span.last,
            )
            for (job, run_uuid), run in rows.runs.items()
        )
        job_of_id = {v: k for k, v in job_ids.items()}
        for r in await conn.fetch(UPSERT_RUNS, *_columns(run_rows, 11)):
            run_ids[(job_of_id[r["job_id"]], r["run_uuid"])] = r["id"]

    field_ids: dict[tuple[int, str], int] = {}
    if rows.fields:
        field_rows = sorted(
            (dataset_ids[ds], path, f.type, f.description, f.attrs_time, f.rank, f.span.first, f.span.last)
            for (ds, path), f in rows.fields.items()
        )
        for r in await conn.fetch(UPSERT_FIELDS, *_columns(field_rows, 8)):
            field_ids[(r["dataset_id"], r["path"])] = r["id"]

    if rows.versions:
        version_rows = sorted(
            (dataset_ids[ds], digest, blob, span.first, span.last)
            for (ds, digest), (span, blob) in rows.versions.items()
        )
        await conn.execute(UPSERT_VERSIONS, *_columns(version_rows, 5))

    if rows.facets:
        facet_rows = []
        for (kind, subject, name), seen in rows.facets.items():
            if kind == "dataset":
                subject_id = dataset_ids[subject]
            elif kind == "job":
                subject_id = job_ids[subject]
            else:
                subject_id = run_ids[subject]
            digest, value = seen.encoded()
            facet_rows.append((kind, subject_id, name, seen.at, digest, value))
        facet_rows.sort(key=lambda r: (r[0], r[1], r[2]))
        await conn.execute(UPSERT_FACETS, *_columns(facet_rows, 6))

    if rows.job_io:
        io_rows = sorted(
            (job_ids[job], direction, dataset_ids[ds], span.first, span.last)
            for (job, direction, ds), span in rows.job_io.items()
        )
        await conn.execute(UPSERT_JOB_IO, *_columns(io_rows, 5))

    new_field_edges: list[tuple[int, int]] = []
    if rows.edges:
        edge_rows = []
        for (target, target_field, source, source_field, job, ttype, subtype, masking), (
            span,
            description,
        ) in rows.edges.items():
            target_id, source_id = dataset_ids[target], dataset_ids[source]
            edge_rows.append(
                (
                    target_id,
                    field_ids[(target_id, target_field)] if target_field is not None else None,
                    source_id,
                    field_ids[(source_id, source_field)] if source_field is not None else None,
                    job_ids[job] if job is not None else None,
                    ttype,
                    subtype,
                    masking,
                    description,
                    span.first,
                    span.last,
                )
            )
        edge_rows.sort(key=lambda r: tuple(-1 if v is None else v for v in r[:8]))
        new_field_edges = [
            (r["source_field_id"], r["target_field_id"])
            for r in await conn.fetch(UPSERT_EDGES, *_columns(edge_rows, 11))
            if r["inserted"] and r["source_field_id"] is not None and r["target_field_id"] is not None
        ]

    if rows.symlinks:
        link_rows = sorted(
            (dataset_ids[ds], namespace, name, stype, span.first, span.last)
            for (ds, namespace, name), (span, stype) in rows.symlinks.items()
        )
        await conn.execute(UPSERT_SYMLINKS, *_columns(link_rows, 6))

    new_claims: list[ClaimKey] = []
    if rows.claims:
        claim_rows = sorted(
            (dataset_ids[ds], owner, emitter, c.first_logged, c.span.first, c.span.last)
            for (ds, owner, emitter), c in rows.claims.items()
        )
        dataset_of_id = {v: k for k, v in dataset_ids.items()}
        new_claims = [
            (dataset_of_id[r["dataset_id"]], r["owner"], r["emitter"])
            for r in await conn.fetch(UPSERT_CLAIMS, *_columns(claim_rows, 6))
            if r["inserted"]
        ]

    if rows.observations:
        observation_rows = sorted(
            (kind, job_ids[owner] if kind == "job" else dataset_ids[owner], at)
            for kind, owner, at in rows.observations
        )
        await conn.execute(UPSERT_OBSERVATIONS, *_columns(observation_rows, 3))
    return Projected(dataset_ids, job_ids, field_ids, new_field_edges, new_claims)
