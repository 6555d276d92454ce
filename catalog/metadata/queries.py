"""The read model of the projected catalog: its row types and every statement that reads them.

REST (catalog/metadata/service.py, Marquez's shapes) and GraphQL (catalog/api/graphql, through its
DataLoaders) both read here. Reads by key take many keys at once, one statement per call: a page of
100 datasets asks for the fields, owners or producing jobs of all 100 in one statement each, and every
such function returns rows keyed the way it was asked, so a loader can hand each key its own answer.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT, INTEGER, TEXT, TIMESTAMP
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.classification.reads import EFFECTIVE

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
class DatasetHead(DatasetRow):
    """A dataset with its current (newest) schema version, as Marquez's dataset answers show it."""

    schema_digest: bytes | None
    version_fields: list[Json] | None
    version_time: dt.datetime | None


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


@dataclass(frozen=True, slots=True)
class RunHead(RunRow):
    """A run with its job's name and the parent job its facet names, as Marquez's run answers show it."""

    job_namespace: str
    job_name: str
    parent_job_namespace: str | None
    parent_job_name: str | None


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One schema version of a dataset in a page of them; `total`: the versions the page is taken from."""

    schema_digest: bytes
    fields: list[Json] | None
    first_seen: dt.datetime
    last_seen: dt.datetime
    total: int


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A dataset, job or field whose name matched; `namespace` is the field's dataset's for a field."""

    kind: Literal["dataset", "job", "field"]
    id: int
    name: str
    namespace: str
    last_seen: dt.datetime


@dataclass(frozen=True, slots=True)
class DiscoveredDataset:
    namespace: str
    name: str
    product: str | None
    owners: list[str]


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


SearchOrder = Literal["relevance", "name", "updated"]

_SEARCH_ORDER: dict[SearchOrder, str] = {
    # GraphQL: exact matches first, then prefixes, then shorter names.
    "relevance": "lower(name) = lower(:term) DESC, name ILIKE :prefix DESC, length(name), name, kind, id",
    # Marquez's /search: by name, or most recently updated first.
    "name": "name, kind, namespace",
    "updated": "last_seen DESC, name, kind, namespace",
}

# ILIKE '%q%' is served by the trigram GIN indexes (migration 0002); a kind not asked for is skipped by
# its one-time filter, so one statement serves every combination of kinds. The product/tier/PII filters
# (see `search`) are one-time filters too; `{pii}` is the set of (dataset, field) holding PII, spliced in
# only when `has_pii` is asked for so other searches do not compute it.
# The product and tier filters, the same for every kind: a subject's stored product, its namespace's tier.
_PRODUCT_FILTER = (
    "(CAST(:product AS text) IS NULL OR EXISTS (SELECT 1 FROM product_assignments pa\n"
    "         WHERE pa.subject_kind = '{kind}' AND pa.subject_id = {id} AND pa.product = :product))"
)
_TIER_FILTER = (
    "(CAST(:tier AS text) IS NULL OR EXISTS (SELECT 1 FROM product_assignments pa\n"
    "         WHERE pa.subject_kind = 'namespace' AND pa.subject_id = n.id AND pa.tier = :tier))"
)
_SEARCH = (
    """
WITH pii AS ({pii})
SELECT kind, id, name, namespace, last_seen FROM (
    SELECT 'dataset' AS kind, d.id, d.name, n.name AS namespace, d.last_seen FROM datasets d
    JOIN namespaces n ON n.id = d.namespace_id
    WHERE :datasets AND d.name ILIKE :pattern AND (CAST(:namespace AS text) IS NULL OR n.name = :namespace)
    AND {product_of_d}
    AND {tier}
    AND (CAST(:has_pii AS boolean) IS NULL
         OR EXISTS (SELECT 1 FROM pii WHERE pii.dataset_id = d.id) = CAST(:has_pii AS boolean))
    UNION ALL
    SELECT 'job', j.id, j.name, n.name, j.last_seen FROM jobs j
    JOIN namespaces n ON n.id = j.namespace_id
    WHERE :jobs AND j.name ILIKE :pattern AND (CAST(:namespace AS text) IS NULL OR n.name = :namespace)
    AND {product_of_j}
    AND {tier}
    AND CAST(:has_pii AS boolean) IS NULL
    UNION ALL
    SELECT 'field', f.id, f.path, n.name, f.last_seen FROM dataset_fields f
    JOIN datasets d ON d.id = f.dataset_id JOIN namespaces n ON n.id = d.namespace_id
    WHERE :fields AND f.path ILIKE :pattern AND (CAST(:namespace AS text) IS NULL OR n.name = :namespace)
    AND {product_of_d}
    AND {tier}
    AND (CAST(:has_pii AS boolean) IS NULL
         OR EXISTS (SELECT 1 FROM pii WHERE pii.field_id = f.id) = CAST(:has_pii AS boolean))
) hits ORDER BY {order} LIMIT :limit
""".replace("{tier}", _TIER_FILTER)
    .replace("{product_of_d}", _PRODUCT_FILTER.format(kind="dataset", id="d.id"))
    .replace("{product_of_j}", _PRODUCT_FILTER.format(kind="job", id="j.id"))
)

# (dataset, field) pairs holding PII: effective, unmasked classifications (field NULL: the whole dataset).
_PII = "SELECT DISTINCT q.dataset_id, q.field_id FROM ({effective}) q WHERE NOT q.masked".replace(
    "{effective}", EFFECTIVE.replace("{filter_c}", "true").replace("{filter_m}", "true")
)
_NO_PII = "SELECT NULL::bigint AS dataset_id, NULL::bigint AS field_id WHERE false"


async def search(
    conn: AsyncConnection,
    *,
    term: str,
    limit: int,
    kinds: frozenset[str] = frozenset({"dataset", "job", "field"}),
    namespace: str | None = None,
    order: SearchOrder = "relevance",
    product: str | None = None,
    tier: str | None = None,
    has_pii: bool | None = None,
) -> list[SearchHit]:
    """Datasets, jobs and fields (those of `kinds`) whose name contains `term` (case-insensitive, its
    wildcards literal), optionally only in `namespace`, and filtered before the limit:

    `product`: a dataset's or job's stored product assignment (what the projection recorded from
    products.yaml, ownership facets and claims); a field's is its dataset's. A subject the projection
    has not assigned yet matches no product. `tier`: the stored tier of the hit's namespace (a field:
    its dataset's namespace). `has_pii`: a dataset with (True) / without (False) any effective,
    unmasked PII classification on it or its fields; a field that itself holds (True) / does not hold
    (False) one. Jobs hold no data: any `has_pii` leaves them out."""
    sql = _SEARCH.replace("{order}", _SEARCH_ORDER[order]).replace(
        "{pii}", _NO_PII if has_pii is None else _PII
    )
    rows = await conn.execute(
        text(sql),
        {
            "pattern": like_pattern(term),
            "prefix": like_pattern(term)[1:],
            "term": term,
            "datasets": "dataset" in kinds,
            "jobs": "job" in kinds,
            "fields": "field" in kinds,
            "namespace": namespace,
            "product": product,
            "tier": tier,
            "has_pii": has_pii,
            "limit": limit,
        },
    )
    return [SearchHit(r.kind, r.id, r.name, r.namespace, r.last_seen) for r in rows]


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


async def runs_by_uuid(conn: AsyncConnection, run_uuid: uuid.UUID) -> list[RunHead]:
    """The runs with this OpenLineage run id (several when a producer reused it), newest first."""
    rows = await conn.execute(
        text(RUN_HEAD_SELECT + " WHERE r.run_uuid = :id ORDER BY r.last_seen DESC, r.id DESC"),
        {"id": run_uuid},
    )
    return [_run_head(r) for r in rows]


# -- Marquez's pages and single reads (REST) ----------------------------------------------------------

NAMESPACE_COLUMNS = "n.id, n.name, n.first_seen, n.last_seen"

DATASET_HEAD_SELECT = """
SELECT d.id, n.name AS namespace, d.name, d.first_seen, d.last_seen,
       v.schema_digest, v.fields AS version_fields, v.last_seen AS version_time
FROM datasets d
JOIN namespaces n ON n.id = d.namespace_id
LEFT JOIN LATERAL (
    SELECT schema_digest, fields, last_seen FROM dataset_versions dv
    WHERE dv.dataset_id = d.id ORDER BY dv.last_seen DESC, dv.id DESC LIMIT 1
) v ON true
"""

JOB_SELECT = f"SELECT {JOB_COLUMNS} FROM jobs j JOIN namespaces n ON n.id = j.namespace_id"

RUN_HEAD_SELECT = """
SELECT r.id, r.job_id, r.run_uuid, r.state, r.state_rank, r.state_time, r.started_at, r.first_seen,
       r.last_seen, r.parent_run_uuid, jn.name AS job_namespace, j.name AS job_name,
       r.parent_job_namespace, r.parent_job_name
FROM runs r JOIN jobs j ON j.id = r.job_id JOIN namespaces jn ON jn.id = j.namespace_id
"""


def _head(row: Any) -> DatasetHead:
    digest = bytes(row.schema_digest) if row.schema_digest is not None else None
    return DatasetHead(
        row.id,
        row.namespace,
        row.name,
        row.first_seen,
        row.last_seen,
        digest,
        row.version_fields,
        row.version_time,
    )


def _run_head(row: Any) -> RunHead:
    return RunHead(
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
        row.job_namespace,
        row.job_name,
        row.parent_job_namespace,
        row.parent_job_name,
    )


async def namespace_id(conn: AsyncConnection, name: str) -> int | None:
    return (await conn.execute(text("SELECT id FROM namespaces WHERE name = :n"), {"n": name})).scalar()


async def namespaces_at(conn: AsyncConnection, *, limit: int, offset: int) -> tuple[list[NamespaceRow], int]:
    """A page of namespaces by name, and how many there are."""
    rows = await conn.execute(
        text(f"SELECT {NAMESPACE_COLUMNS} FROM namespaces n ORDER BY n.name LIMIT :limit OFFSET :offset"),
        {"limit": limit, "offset": offset},
    )
    page = [NamespaceRow(r.id, r.name, r.first_seen, r.last_seen) for r in rows]
    total = (await conn.execute(text("SELECT count(*) FROM namespaces"))).scalar_one()
    return page, total


async def namespace_by_name(conn: AsyncConnection, name: str) -> NamespaceRow | None:
    r = (
        await conn.execute(
            text(f"SELECT {NAMESPACE_COLUMNS} FROM namespaces n WHERE n.name = :name"), {"name": name}
        )
    ).first()
    return NamespaceRow(r.id, r.name, r.first_seen, r.last_seen) if r else None


async def _namespace_page(
    conn: AsyncConnection, namespace: str, select: str, alias: str, table: str, *, limit: int, offset: int
) -> tuple[Sequence[Any], int] | None:
    """One page of a namespace's datasets or jobs (by name) and their total; None if no such namespace."""
    ns = await namespace_id(conn, namespace)
    if ns is None:
        return None
    rows = (
        await conn.execute(
            text(
                f"{select} WHERE {alias}.namespace_id = :ns ORDER BY {alias}.name LIMIT :limit OFFSET :offset"
            ),
            {"ns": ns, "limit": limit, "offset": offset},
        )
    ).all()
    total = (
        await conn.execute(text(f"SELECT count(*) FROM {table} WHERE namespace_id = :ns"), {"ns": ns})
    ).scalar_one()
    return rows, total


async def dataset_heads_in(
    conn: AsyncConnection, namespace: str, *, limit: int, offset: int
) -> tuple[list[DatasetHead], int] | None:
    """A page of a namespace's datasets by name and their total; None if there is no such namespace."""
    page = await _namespace_page(
        conn, namespace, DATASET_HEAD_SELECT, "d", "datasets", limit=limit, offset=offset
    )
    return None if page is None else ([_head(r) for r in page[0]], page[1])


async def dataset_head(conn: AsyncConnection, namespace: str, name: str) -> DatasetHead | None:
    row = (
        await conn.execute(
            text(DATASET_HEAD_SELECT + " WHERE n.name = :ns AND d.name = :name"),
            {"ns": namespace, "name": name},
        )
    ).first()
    return _head(row) if row else None


async def dataset_heads_by_name(conn: AsyncConnection, keys: Sequence[tuple[str, str]]) -> list[DatasetHead]:
    """The datasets of (namespace, name) keys that exist, with their current versions."""
    if not keys:
        return []
    rows = await conn.execute(
        text(
            DATASET_HEAD_SELECT + " JOIN unnest(CAST(:ns AS text[]), CAST(:names AS text[])) AS k(ns, name) "
            "ON n.name = k.ns AND d.name = k.name"
        ),
        {"ns": [k[0] for k in keys], "names": [k[1] for k in keys]},
    )
    return [_head(r) for r in rows]


async def subject_id(
    conn: AsyncConnection, kind: Literal["dataset", "job"], namespace: str, name: str
) -> int | None:
    """The id of a dataset or job by name."""
    table = "datasets" if kind == "dataset" else "jobs"
    return (
        await conn.execute(
            text(
                f"SELECT t.id FROM {table} t JOIN namespaces n ON n.id = t.namespace_id "
                "WHERE n.name = :ns AND t.name = :name"
            ),
            {"ns": namespace, "name": name},
        )
    ).scalar()


async def discover_datasets(
    conn: AsyncConnection,
    *,
    product: str | None,
    contains: str | None,
    owner: str | None,
    limit: int,
    offset: int,
) -> list[DiscoveredDataset]:
    """Datasets by name with their stored product and owners (what anyone may discover), optionally of
    one product, with `contains` in their name, or owned by `owner`."""
    rows = await conn.execute(
        text(
            "SELECT n.name AS namespace, d.name, pa.product, "
            "coalesce((SELECT array_agg(o.name ORDER BY o.name) FROM owners o "
            "          WHERE o.subject_kind = 'dataset' AND o.subject_id = d.id), '{}') AS owners "
            "FROM datasets d JOIN namespaces n ON n.id = d.namespace_id "
            "LEFT JOIN product_assignments pa ON pa.subject_kind = 'dataset' AND pa.subject_id = d.id "
            "WHERE (CAST(:product AS text) IS NULL OR pa.product = :product) "
            "AND (CAST(:q AS text) IS NULL OR strpos(d.name, :q) > 0) "
            "AND (CAST(:owner AS text) IS NULL OR EXISTS (SELECT 1 FROM owners o WHERE o.subject_kind = "
            "'dataset' AND o.subject_id = d.id AND o.name = :owner)) "
            "ORDER BY n.name, d.name LIMIT :limit OFFSET :offset"
        ),
        {"product": product, "q": contains, "owner": owner, "limit": limit, "offset": offset},
    )
    return [DiscoveredDataset(r.namespace, r.name, r.product, list(r.owners)) for r in rows]


async def schema_versions(
    conn: AsyncConnection, namespace: str, name: str, *, prefix: bytes | None, limit: int, offset: int
) -> list[SchemaVersion]:
    """A page of a dataset's schema versions, newest first; `prefix`: only the version whose digest
    starts with these 16 bytes (its UUID)."""
    rows = await conn.execute(
        text(
            "SELECT v.schema_digest, v.fields, v.first_seen, v.last_seen, count(*) OVER () AS total "
            "FROM dataset_versions v JOIN datasets d ON d.id = v.dataset_id "
            "JOIN namespaces n ON n.id = d.namespace_id "
            "WHERE n.name = :ns AND d.name = :name AND (CAST(:prefix AS bytea) IS NULL "
            "OR substring(v.schema_digest FROM 1 FOR 16) = :prefix) "
            "ORDER BY v.last_seen DESC, v.id DESC LIMIT :limit OFFSET :offset"
        ),
        {"ns": namespace, "name": name, "prefix": prefix, "limit": limit, "offset": offset},
    )
    return [SchemaVersion(bytes(r.schema_digest), r.fields, r.first_seen, r.last_seen, r.total) for r in rows]


async def job_rows_in(
    conn: AsyncConnection, namespace: str, *, limit: int, offset: int
) -> tuple[list[JobRow], int] | None:
    """A page of a namespace's jobs by name and their total; None if there is no such namespace."""
    page = await _namespace_page(conn, namespace, JOB_SELECT, "j", "jobs", limit=limit, offset=offset)
    return None if page is None else ([_job(r) for r in page[0]], page[1])


# A job's latest run's state (its newest run by first seen).
LATEST_STATE = (
    "(SELECT r.state FROM runs r WHERE r.job_id = j.id ORDER BY r.first_seen DESC, r.id DESC LIMIT 1)"
)


async def all_jobs(
    conn: AsyncConnection,
    *,
    limit: int,
    offset: int,
    latest_states: Sequence[str] | None = None,
    never_run: bool = False,
) -> tuple[list[JobRow], int]:
    """A page of the jobs of every namespace by (namespace, name) and their total; `latest_states`: only
    those whose latest run's stored state is one of these (or, with `never_run`, that have no run)."""
    where = ""
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    if latest_states is not None:
        params["states"] = list(latest_states)
        params["never"] = never_run
        where = (
            f" WHERE ({LATEST_STATE} = ANY(CAST(:states AS text[])) "
            "OR (:never AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.job_id = j.id)))"
        )
    rows = await conn.execute(
        text(JOB_SELECT + where + " ORDER BY n.name, j.name LIMIT :limit OFFSET :offset"), params
    )
    page = [_job(r) for r in rows]
    total = (
        await conn.execute(
            text("SELECT count(*) FROM jobs j" + where),
            {k: v for k, v in params.items() if k not in ("limit", "offset")},
        )
    ).scalar_one()
    return page, total


async def job_by_name(conn: AsyncConnection, namespace: str, name: str) -> JobRow | None:
    row = (
        await conn.execute(
            text(JOB_SELECT + " WHERE n.name = :ns AND j.name = :name"), {"ns": namespace, "name": name}
        )
    ).first()
    return _job(row) if row else None


async def job_outputs(conn: AsyncConnection, namespace: str, name: str) -> list[tuple[str, str]]:
    """(namespace, name) of the datasets a job writes, by name."""
    rows = await conn.execute(
        text(
            "SELECT dn.name AS namespace, d.name FROM jobs j JOIN namespaces n ON n.id = j.namespace_id "
            "JOIN job_io io ON io.job_id = j.id AND io.direction = 'output' "
            "JOIN datasets d ON d.id = io.dataset_id JOIN namespaces dn ON dn.id = d.namespace_id "
            "WHERE n.name = :ns AND j.name = :name ORDER BY 1, 2"
        ),
        {"ns": namespace, "name": name},
    )
    return [(r.namespace, r.name) for r in rows]


async def job_io(conn: AsyncConnection, job_ids: Sequence[int]) -> dict[int, dict[str, list[Json]]]:
    """Each job's inputs and outputs as Marquez names them ({namespace, name}), by name."""
    if not job_ids:
        return {}
    rows = await conn.execute(
        text(
            "SELECT io.job_id, io.direction, n.name AS namespace, d.name FROM job_io io "
            "JOIN datasets d ON d.id = io.dataset_id JOIN namespaces n ON n.id = d.namespace_id "
            "WHERE io.job_id = ANY(:ids) ORDER BY n.name, d.name"
        ).bindparams(bindparam("ids", type_=IDS)),
        {"ids": list(job_ids)},
    )
    out: dict[int, dict[str, list[Json]]] = defaultdict(lambda: {"input": [], "output": []})
    for r in rows:
        out[r.job_id][r.direction].append({"namespace": r.namespace, "name": r.name})
    return out


async def latest_runs(conn: AsyncConnection, job_ids: Sequence[int]) -> dict[int, RunHead]:
    """Each job's newest run (by first seen)."""
    if not job_ids:
        return {}
    rows = await conn.execute(
        text(
            "SELECT latest.* FROM unnest(:ids) AS ids(job_id) CROSS JOIN LATERAL ("
            + RUN_HEAD_SELECT
            + " WHERE r.job_id = ids.job_id ORDER BY r.first_seen DESC, r.id DESC LIMIT 1) latest"
        ).bindparams(bindparam("ids", type_=IDS)),
        {"ids": list(job_ids)},
    )
    return {r.job_id: _run_head(r) for r in rows}


async def runs_of_job(
    conn: AsyncConnection, namespace: str, job: str, *, limit: int, offset: int
) -> tuple[list[RunHead], int] | None:
    """A page of a job's runs, newest first, and their total; None if there is no such job."""
    job_id = await subject_id(conn, "job", namespace, job)
    if job_id is None:
        return None
    rows = await conn.execute(
        text(
            RUN_HEAD_SELECT
            + " WHERE r.job_id = :job ORDER BY r.first_seen DESC, r.id DESC LIMIT :limit OFFSET :offset"
        ),
        {"job": job_id, "limit": limit, "offset": offset},
    )
    page = [_run_head(r) for r in rows]
    total = (
        await conn.execute(text("SELECT count(*) FROM runs WHERE job_id = :job"), {"job": job_id})
    ).scalar_one()
    return page, total


async def facets_by_id(conn: AsyncConnection, kind: str, ids: Sequence[int]) -> dict[int, Json]:
    """The current facets of subjects of one kind, by id (`facets_of` for one kind)."""
    if not ids:
        return {}
    found = await facets_of(conn, [(kind, i) for i in ids])
    return {subject_id: facets for (_kind, subject_id), facets in found.items()}


# -- the event log ------------------------------------------------------------------------------------

# An event of `event_log e` the caller may read: of a job stored as belonging to one of `:products` (or
# to none, with `:unowned`), or of no job (a DatasetEvent). The job's stored product (written as the
# projection assigns it): a job not assigned yet is left out until it is, rather than judged by name here.
READABLE_EVENT = (
    "(e.job_name IS NULL OR EXISTS (SELECT 1 FROM namespaces jn "
    "JOIN jobs j ON j.namespace_id = jn.id AND j.name = e.job_name "
    "JOIN product_assignments pa ON pa.subject_kind = 'job' AND pa.subject_id = j.id "
    "WHERE jn.name = e.job_namespace "
    "AND (pa.product = ANY(CAST(:products AS text[])) OR (pa.product IS NULL AND :unowned))))"
)


async def events(
    conn: AsyncConnection,
    *,
    before: dt.datetime | None,
    after: dt.datetime | None,
    limit: int,
    offset: int,
    ascending: bool = False,
    job_products: Sequence[str] | None = None,
    unowned_jobs: bool = False,
    job_namespace: str | None = None,
) -> tuple[list[Json], int]:
    """Raw events from the log by event time (newest first by default), as stored, and their total.
    `job_products`: only events of jobs stored as belonging to one of these products (and, with
    `unowned_jobs`, to none), and events without a job (DatasetEvents); None: every event.
    `job_namespace`: only events of jobs of that namespace."""
    where = []
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    if job_namespace is not None:
        where.append("e.job_namespace = :job_namespace")
        params["job_namespace"] = job_namespace
    if before is not None:
        where.append("event_time < :before")
        params["before"] = before
    if after is not None:
        where.append("event_time > :after")
        params["after"] = after
    if job_products is not None:
        where.append(READABLE_EVENT)
        params["products"] = list(job_products)
        params["unowned"] = unowned_jobs
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    order = "ASC" if ascending else "DESC"
    rows = await conn.execute(
        text(
            f"SELECT payload FROM event_log e{clause} ORDER BY event_time {order}, id {order} "
            "LIMIT :limit OFFSET :offset"
        ),
        params,
    )
    total = (await conn.execute(text(f"SELECT count(*) FROM event_log e{clause}"), params)).scalar_one()
    return [r.payload for r in rows], total
