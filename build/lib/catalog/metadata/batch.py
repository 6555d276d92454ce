"""Bulk reads of the projected catalog by many keys at once, one SQL statement per call.

They back the GraphQL DataLoaders (and any other caller that must stay free of N+1 queries): a page of
100 datasets asks for the fields, owners or producing jobs of all 100 in one statement each. Every
function returns rows keyed the way it was asked, so a loader can hand each key its own answer.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT, INTEGER, TEXT, TIMESTAMP
from sqlalchemy.ext.asyncio import AsyncConnection

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class NamespaceRow:
    id: int
    name: str
    first_seen: dt.datetime
    last_seen: dt.datetime


@dataclass(frozen=True, slots=True)
class DatasetRow:
    id: int
    namespace: str
    name: str
    first_seen: dt.datetime
    last_seen: dt.datetime


@dataclass(frozen=True, slots=True)
class JobRow:
    id: int
    namespace: str
    name: str
    first_seen: dt.datetime
    last_seen: dt.datetime


@dataclass(frozen=True, slots=True)
class FieldRow:
    id: int
    dataset_id: int
    path: str
    type: str | None
    description: str | None
    first_seen: dt.datetime
    last_seen: dt.datetime


@dataclass(frozen=True, slots=True)
class OwnerRow:
    name: str
    type: str | None


@dataclass(frozen=True, slots=True)
class VersionRow:
    id: int
    dataset_id: int
    schema_digest: bytes
    fields: list[Json]
    first_seen: dt.datetime
    last_seen: dt.datetime


@dataclass(frozen=True, slots=True)
class RunRow:
    id: int
    job_id: int
    run_uuid: uuid.UUID
    state: str | None
    state_rank: int
    state_time: dt.datetime | None
    started_at: dt.datetime | None
    first_seen: dt.datetime
    last_seen: dt.datetime
    parent_run_uuid: uuid.UUID | None


IDS = ARRAY(BIGINT)
TEXTS = ARRAY(TEXT)

DATASET_COLUMNS = "d.id, n.name AS namespace, d.name, d.first_seen, d.last_seen"
JOB_COLUMNS = "j.id, n.name AS namespace, j.name, j.first_seen, j.last_seen"
FIELD_COLUMNS = "f.id, f.dataset_id, f.path, f.type, f.description, f.first_seen, f.last_seen"
RUN_COLUMNS = (
    "r.id, r.job_id, r.run_uuid, r.state, r.state_rank, r.state_time, r.started_at, "
    "r.first_seen, r.last_seen, r.parent_run_uuid"
)


def _dataset(row: Any) -> DatasetRow:
    return DatasetRow(row.id, row.namespace, row.name, row.first_seen, row.last_seen)


def _job(row: Any) -> JobRow:
    return JobRow(row.id, row.namespace, row.name, row.first_seen, row.last_seen)


def _field(row: Any) -> FieldRow:
    return FieldRow(
        row.id, row.dataset_id, row.path, row.type, row.description, row.first_seen, row.last_seen
    )


def _run(row: Any) -> RunRow:
    return RunRow(
        row.id,
        row.job_id,
        row.run_uuid,
        row.state,
        row.state_rank,
        row.state_time,
        row.started_at,
        row.first_seen,
        row.last_seen,
        row.parent_run_uuid,
    )


def like_pattern(term: str) -> str:
    """A case-insensitive substring pattern with LIKE's wildcards in the user's text escaped."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# -- pages ----------------------------------------------------------------------------------------------


async def namespaces_page(conn: AsyncConnection, *, after: str | None, limit: int) -> list[NamespaceRow]:
    """Namespaces by name, the `limit` after the name `after` (keyset, so deep pages stay cheap)."""
    rows = await conn.execute(
        text(
            "SELECT id, name, first_seen, last_seen FROM namespaces "
            "WHERE CAST(:after AS text) IS NULL OR name > :after ORDER BY name LIMIT :limit"
        ),
        {"after": after, "limit": limit},
    )
    return [NamespaceRow(r.id, r.name, r.first_seen, r.last_seen) for r in rows]


async def datasets_page(
    conn: AsyncConnection,
    *,
    namespace: str | None,
    search: str | None,
    after: tuple[str, str] | None,
    limit: int,
) -> list[DatasetRow]:
    """Datasets ordered by (namespace, name), the `limit` after the key `after`, optionally in one
    namespace and/or with `search` in their name."""
    where = ["true"]
    params: dict[str, Any] = {"limit": limit}
    if namespace is not None:
        where.append("n.name = :namespace")
        params["namespace"] = namespace
    if search:
        where.append("d.name ILIKE :pattern")
        params["pattern"] = like_pattern(search)
    if after is not None:
        where.append("(n.name, d.name) > (:after_ns, :after_name)")
        params["after_ns"], params["after_name"] = after
    rows = await conn.execute(
        text(
            f"SELECT {DATASET_COLUMNS} FROM datasets d JOIN namespaces n ON n.id = d.namespace_id "
            f"WHERE {' AND '.join(where)} ORDER BY n.name, d.name LIMIT :limit"
        ),
        params,
    )
    return [_dataset(r) for r in rows]


async def runs_pages(
    conn: AsyncConnection, keys: Sequence[tuple[int, int, tuple[dt.datetime, int] | None]]
) -> list[list[RunRow]]:
    """For each (job id, limit, after key) the job's runs newest first (by first seen, then id), at most
    `limit` of them after the key — all the pages in one statement (a LATERAL per key)."""
    if not keys:
        return []
    rows = await conn.execute(
        text(
            "SELECT k.ord, page.* FROM unnest(:job_ids, :limits, :after_times, :after_ids) "
            "WITH ORDINALITY AS k(job_id, lim, after_time, after_id, ord) "
            f"CROSS JOIN LATERAL (SELECT {RUN_COLUMNS} FROM runs r WHERE r.job_id = k.job_id "
            "AND (k.after_time IS NULL OR (r.first_seen, r.id) < (k.after_time, k.after_id)) "
            "ORDER BY r.first_seen DESC, r.id DESC LIMIT k.lim) page ORDER BY k.ord"
        ).bindparams(
            bindparam("job_ids", type_=IDS),
            bindparam("limits", type_=ARRAY(INTEGER)),
            bindparam("after_times", type_=ARRAY(TIMESTAMP(timezone=True))),
            bindparam("after_ids", type_=IDS),
        ),
        {
            "job_ids": [k[0] for k in keys],
            "limits": [k[1] for k in keys],
            "after_times": [k[2][0] if k[2] else None for k in keys],
            "after_ids": [k[2][1] if k[2] else None for k in keys],
        },
    )
    out: list[list[RunRow]] = [[] for _ in keys]
    for r in rows:
        out[r.ord - 1].append(_run(r))
    return out


async def search(conn: AsyncConnection, *, term: str, limit: int) -> list[tuple[str, int]]:
    """(kind, id) of datasets, jobs and fields whose name contains `term`: exact matches first, then
    prefixes, then shorter names."""
    rows = await conn.execute(
        text(
            "SELECT kind, id FROM ("
            " SELECT 'dataset' AS kind, d.id, d.name AS label FROM datasets d WHERE d.name ILIKE :pattern"
            " UNION ALL"
            " SELECT 'job', j.id, j.name FROM jobs j WHERE j.name ILIKE :pattern"
            " UNION ALL"
            " SELECT 'field', f.id, f.path FROM dataset_fields f WHERE f.path ILIKE :pattern"
            ") hits ORDER BY lower(label) = lower(:term) DESC, label ILIKE :prefix DESC, "
            "length(label), label, kind, id LIMIT :limit"
        ),
        {
            "pattern": like_pattern(term),
            "prefix": like_pattern(term)[1:],
            "term": term,
            "limit": limit,
        },
    )
    return [(r.kind, r.id) for r in rows]


# -- by key (DataLoader batches) ----------------------------------------------------------------------


async def datasets_by_id(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, DatasetRow]:
    rows = await conn.execute(
        text(
            f"SELECT {DATASET_COLUMNS} FROM datasets d JOIN namespaces n ON n.id = d.namespace_id "
            "WHERE d.id = ANY(:ids)"
        ).bindparams(bindparam("ids", type_=IDS)),
        {"ids": list(ids)},
    )
    return {r.id: _dataset(r) for r in rows}


async def datasets_by_name(
    conn: AsyncConnection, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], DatasetRow]:
    rows = await conn.execute(
        text(
            f"SELECT {DATASET_COLUMNS} FROM unnest(:namespaces, :names) AS k(namespace, name) "
            "JOIN namespaces n ON n.name = k.namespace "
            "JOIN datasets d ON d.namespace_id = n.id AND d.name = k.name"
        ).bindparams(bindparam("namespaces", type_=TEXTS), bindparam("names", type_=TEXTS)),
        {"namespaces": [k[0] for k in keys], "names": [k[1] for k in keys]},
    )
    return {(r.namespace, r.name): _dataset(r) for r in rows}


async def jobs_by_id(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, JobRow]:
    rows = await conn.execute(
        text(
            f"SELECT {JOB_COLUMNS} FROM jobs j JOIN namespaces n ON n.id = j.namespace_id "
            "WHERE j.id = ANY(:ids)"
        ).bindparams(bindparam("ids", type_=IDS)),
        {"ids": list(ids)},
    )
    return {r.id: _job(r) for r in rows}


async def jobs_by_name(
    conn: AsyncConnection, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], JobRow]:
    rows = await conn.execute(
        text(
            f"SELECT {JOB_COLUMNS} FROM unnest(:namespaces, :names) AS k(namespace, name) "
            "JOIN namespaces n ON n.name = k.namespace "
            "JOIN jobs j ON j.namespace_id = n.id AND j.name = k.name"
        ).bindparams(bindparam("namespaces", type_=TEXTS), bindparam("names", type_=TEXTS)),
        {"namespaces": [k[0] for k in keys], "names": [k[1] for k in keys]},
    )
    return {(r.namespace, r.name): _job(r) for r in rows}


async def fields_by_id(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, FieldRow]:
    rows = await conn.execute(
        text(f"SELECT {FIELD_COLUMNS} FROM dataset_fields f WHERE f.id = ANY(:ids)").bindparams(
            bindparam("ids", type_=IDS)
        ),
        {"ids": list(ids)},
    )
    return {r.id: _field(r) for r in rows}


async def fields_of_datasets(conn: AsyncConnection, dataset_ids: Sequence[int]) -> dict[int, list[FieldRow]]:
    """Every field of each dataset (nested ones as dotted paths), by path."""
    rows = await conn.execute(
        text(
            f"SELECT {FIELD_COLUMNS} FROM dataset_fields f WHERE f.dataset_id = ANY(:ids) "
            "ORDER BY f.dataset_id, f.path"
        ).bindparams(bindparam("ids", type_=IDS)),
        {"ids": list(dataset_ids)},
    )
    out: dict[int, list[FieldRow]] = defaultdict(list)
    for r in rows:
        out[r.dataset_id].append(_field(r))
    return out


async def owners_of(
    conn: AsyncConnection, subjects: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], list[OwnerRow]]:
    """Owners (from the ownership facet, through the `owners` view) of ('dataset'|'job', id) subjects."""
    rows = await conn.execute(
        text(
            "SELECT o.subject_kind, o.subject_id, o.name, o.type FROM owners o "
            "JOIN unnest(:kinds, :ids) AS k(kind, id) ON o.subject_kind = k.kind AND o.subject_id = k.id "
            "ORDER BY o.subject_kind, o.subject_id, o.name"
        ).bindparams(bindparam("kinds", type_=TEXTS), bindparam("ids", type_=IDS)),
        {"kinds": [s[0] for s in subjects], "ids": [s[1] for s in subjects]},
    )
    out: dict[tuple[str, int], list[OwnerRow]] = defaultdict(list)
    for r in rows:
        out[(r.subject_kind, r.subject_id)].append(OwnerRow(r.name, r.type))
    return out


async def facets_of(
    conn: AsyncConnection, subjects: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], Json]:
    """The current facets ({name: value}, removed ones left out) of ('dataset'|'job'|'run', id) subjects."""
    rows = await conn.execute(
        text(
            "SELECT f.subject_kind, f.subject_id, f.name, f.value FROM facets f "
            "JOIN unnest(:kinds, :ids) AS k(kind, id) ON f.subject_kind = k.kind AND f.subject_id = k.id "
            "WHERE f.value IS NOT NULL ORDER BY f.name"
        ).bindparams(bindparam("kinds", type_=TEXTS), bindparam("ids", type_=IDS)),
        {"kinds": [s[0] for s in subjects], "ids": [s[1] for s in subjects]},
    )
    out: dict[tuple[str, int], Json] = defaultdict(dict)
    for r in rows:
        out[(r.subject_kind, r.subject_id)][r.name] = r.value
    return out


async def jobs_of_datasets(
    conn: AsyncConnection, keys: Sequence[tuple[int, str]]
) -> dict[tuple[int, str], list[JobRow]]:
    """For (dataset id, 'input'|'output'): the jobs that read ('input') or write ('output') it."""
    rows = await conn.execute(
        text(
            f"SELECT io.dataset_id, io.direction, {JOB_COLUMNS} FROM unnest(:ids, :directions) "
            "AS k(id, direction) JOIN job_io io ON io.dataset_id = k.id AND io.direction = k.direction "
            "JOIN jobs j ON j.id = io.job_id JOIN namespaces n ON n.id = j.namespace_id "
            "ORDER BY n.name, j.name"
        ).bindparams(bindparam("ids", type_=IDS), bindparam("directions", type_=TEXTS)),
        {"ids": [k[0] for k in keys], "directions": [k[1] for k in keys]},
    )
    out: dict[tuple[int, str], list[JobRow]] = defaultdict(list)
    for r in rows:
        out[(r.dataset_id, r.direction)].append(_job(r))
    return out


async def datasets_of_jobs(
    conn: AsyncConnection, keys: Sequence[tuple[int, str]]
) -> dict[tuple[int, str], list[DatasetRow]]:
    """For (job id, 'input'|'output'): the datasets the job reads or writes."""
    rows = await conn.execute(
        text(
            f"SELECT io.job_id, io.direction, {DATASET_COLUMNS} FROM unnest(:ids, :directions) "
            "AS k(id, direction) JOIN job_io io ON io.job_id = k.id AND io.direction = k.direction "
            "JOIN datasets d ON d.id = io.dataset_id JOIN namespaces n ON n.id = d.namespace_id "
            "ORDER BY n.name, d.name"
        ).bindparams(bindparam("ids", type_=IDS), bindparam("directions", type_=TEXTS)),
        {"ids": [k[0] for k in keys], "directions": [k[1] for k in keys]},
    )
    out: dict[tuple[int, str], list[DatasetRow]] = defaultdict(list)
    for r in rows:
        out[(r.job_id, r.direction)].append(_dataset(r))
    return out


async def versions_of_datasets(
    conn: AsyncConnection, keys: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], list[VersionRow]]:
    """For (dataset id, limit): its newest `limit` schema versions, newest (current) first."""
    rows = await conn.execute(
        text(
            "SELECT k.id AS key_id, k.lim, v.* FROM unnest(:ids, :limits) AS k(id, lim) "
            "CROSS JOIN LATERAL (SELECT dv.id, dv.dataset_id, dv.schema_digest, dv.fields, dv.first_seen, "
            "dv.last_seen FROM dataset_versions dv WHERE dv.dataset_id = k.id "
            "ORDER BY dv.last_seen DESC, dv.id DESC LIMIT k.lim) v"
        ).bindparams(bindparam("ids", type_=IDS), bindparam("limits", type_=ARRAY(INTEGER))),
        {"ids": [k[0] for k in keys], "limits": [k[1] for k in keys]},
    )
    out: dict[tuple[int, int], list[VersionRow]] = defaultdict(list)
    for r in rows:
        out[(r.key_id, r.lim)].append(
            VersionRow(r.id, r.dataset_id, bytes(r.schema_digest), r.fields, r.first_seen, r.last_seen)
        )
    return out


async def runs_by_uuid(conn: AsyncConnection, run_uuid: uuid.UUID) -> list[RunRow]:
    """The runs with this OpenLineage run id (several when a producer reused it), newest first."""
    rows = await conn.execute(
        text(f"SELECT {RUN_COLUMNS} FROM runs r WHERE r.run_uuid = :id ORDER BY r.last_seen DESC, r.id DESC"),
        {"id": run_uuid},
    )
    return [_run(r) for r in rows]
