"""Read the projected catalog in Marquez-compatible shapes: namespaces, datasets, jobs, runs, events.

Pages are fetched with a fixed number of statements whatever their size (the page, then its facets,
versions and edges in bulk by id), never one query per row.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.classification.service import pii_tags_by_dataset
from catalog.policy.masking import redact_dataset

Json = dict[str, Any]


def iso(at: dt.datetime | None) -> str | None:
    """Marquez renders instants as ISO-8601 UTC with a `Z`."""
    if at is None:
        return None
    return at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def version_uuid(digest: bytes | None) -> str | None:
    """A stable UUID for a schema version (Marquez clients expect UUID versions)."""
    return str(uuid.UUID(bytes=bytes(digest[:16]))) if digest else None


async def _facets(conn: AsyncConnection, kind: str, ids: Sequence[int]) -> dict[int, Json]:
    if not ids:
        return {}
    rows = await conn.execute(
        text(
            "SELECT subject_id, name, value FROM facets "
            "WHERE subject_kind = :kind AND subject_id = ANY(:ids) AND value IS NOT NULL"
        ).bindparams(bindparam("ids", type_=ARRAY(BIGINT))),
        {"kind": kind, "ids": list(ids)},
    )
    out: dict[int, Json] = defaultdict(dict)
    for subject_id, name, value in rows:
        out[subject_id][name] = value
    return out


async def _namespace_page(
    conn: AsyncConnection, namespace: str, select: str, alias: str, table: str, *, limit: int, offset: int
) -> tuple[Sequence[Any], int] | None:
    """One page of a namespace's datasets or jobs (by name) and their total; None if no such namespace."""
    ns = (await conn.execute(text("SELECT id FROM namespaces WHERE name = :n"), {"n": namespace})).scalar()
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


# -- namespaces ---------------------------------------------------------------------------------------

NAMESPACE_COLUMNS = "n.id, n.name, n.first_seen, n.last_seen"


def _namespace(row: Any) -> Json:
    return {
        "name": row.name,
        "createdAt": iso(row.first_seen),
        "updatedAt": iso(row.last_seen),
        "ownerName": "anonymous",
        "description": None,
        "isHidden": False,
    }


async def list_namespaces(conn: AsyncConnection, *, limit: int, offset: int) -> tuple[list[Json], int]:
    rows = await conn.execute(
        text(f"SELECT {NAMESPACE_COLUMNS} FROM namespaces n ORDER BY n.name LIMIT :limit OFFSET :offset"),
        {"limit": limit, "offset": offset},
    )
    total = (await conn.execute(text("SELECT count(*) FROM namespaces"))).scalar_one()
    return [_namespace(r) for r in rows], total


async def get_namespace(conn: AsyncConnection, name: str) -> Json | None:
    row = (
        await conn.execute(
            text(f"SELECT {NAMESPACE_COLUMNS} FROM namespaces n WHERE n.name = :name"), {"name": name}
        )
    ).first()
    return _namespace(row) if row else None


# -- datasets -----------------------------------------------------------------------------------------

DATASET_SELECT = """
SELECT d.id, n.name AS namespace, d.name, d.first_seen, d.last_seen,
       v.schema_digest, v.fields AS version_fields, v.last_seen AS version_time
FROM datasets d
JOIN namespaces n ON n.id = d.namespace_id
LEFT JOIN LATERAL (
    SELECT schema_digest, fields, last_seen FROM dataset_versions dv
    WHERE dv.dataset_id = d.id ORDER BY dv.last_seen DESC, dv.id DESC LIMIT 1
) v ON true
"""


def _field_list(
    fields: list[Json] | None, prefix: str = "", pii: dict[str | None, list[str]] | None = None
) -> list[Json]:
    out: list[Json] = []
    for f in fields or []:
        out.append(
            {
                "name": prefix + f["name"],
                "type": f.get("type"),
                "tags": (pii or {}).get(prefix + f["name"], []),
                "description": f.get("description"),
            }
        )
        if f.get("fields"):
            out.extend(_field_list(f["fields"], prefix + f["name"] + ".", pii))
    return out


def _dataset(row: Any, facets: Json, pii: dict[str | None, list[str]] | None = None) -> Json:
    """`pii`: effective PII tags by field path (None = the dataset itself), see catalog/classification."""
    source = facets.get("dataSource") or {}
    lifecycle = (facets.get("lifecycleStateChange") or {}).get("lifecycleStateChange")
    documentation = facets.get("documentation") or {}
    dataset_type = (facets.get("datasetType") or {}).get("datasetType")
    deleted = lifecycle == "DROP"
    return {
        "id": {"namespace": row.namespace, "name": row.name},
        "type": "DB_TABLE"
        if not dataset_type or str(dataset_type).upper() == "TABLE"
        else str(dataset_type).upper(),
        "name": row.name,
        "physicalName": row.name,
        "createdAt": iso(row.first_seen),
        "updatedAt": iso(row.last_seen),
        "namespace": row.namespace,
        "sourceName": source.get("name") if isinstance(source, dict) else None,
        "sourceUri": source.get("uri") if isinstance(source, dict) else None,
        "fields": _field_list(row.version_fields, pii=pii),
        "tags": (pii or {}).get(None, []),
        "lastModifiedAt": iso(row.version_time),
        "lastLifecycleState": lifecycle,
        "description": documentation.get("description") if isinstance(documentation, dict) else None,
        "currentVersion": version_uuid(row.schema_digest),
        "facets": facets,
        "deleted": deleted,
    }


def _masked(body: Json, pii: dict[str | None, list[str]] | None) -> Json:
    """The body as a masked-columns-only grantee sees it: the columns with unmasked PII tags (the same
    effective classifications `pii` holds) redacted, see catalog/policy/masking.py."""
    return redact_dataset(body, {path for path, tags in (pii or {}).items() if path is not None and tags})


async def list_datasets(
    conn: AsyncConnection, *, namespace: str, limit: int, offset: int, masked: bool = False
) -> tuple[list[Json], int] | None:
    page = await _namespace_page(conn, namespace, DATASET_SELECT, "d", "datasets", limit=limit, offset=offset)
    if page is None:
        return None
    rows, total = page
    facets = await _facets(conn, "dataset", [r.id for r in rows])
    pii = await pii_tags_by_dataset(conn, [r.id for r in rows])
    bodies = [_dataset(r, facets.get(r.id, {}), pii.get(r.id)) for r in rows]
    if masked:
        bodies = [_masked(b, pii.get(r.id)) for r, b in zip(rows, bodies, strict=True)]
    return bodies, total


async def get_dataset(
    conn: AsyncConnection, *, namespace: str, name: str, masked: bool = False
) -> Json | None:
    """One dataset; `masked`: read through a masked-columns-only grant (PII columns redacted)."""
    row = (
        await conn.execute(
            text(DATASET_SELECT + " WHERE n.name = :ns AND d.name = :name"), {"ns": namespace, "name": name}
        )
    ).first()
    if row is None:
        return None
    facets = await _facets(conn, "dataset", [row.id])
    pii = await pii_tags_by_dataset(conn, [row.id])
    body = _dataset(row, facets.get(row.id, {}), pii.get(row.id))
    return _masked(body, pii.get(row.id)) if masked else body


# -- jobs ---------------------------------------------------------------------------------------------

JOB_SELECT = """
SELECT j.id, n.name AS namespace, j.name, j.first_seen, j.last_seen
FROM jobs j JOIN namespaces n ON n.id = j.namespace_id
"""

RUN_SELECT = """
SELECT r.id, r.run_uuid, r.state, r.state_rank, r.state_time, r.started_at, r.first_seen, r.last_seen,
       r.parent_run_uuid, r.parent_job_namespace, r.parent_job_name,
       jn.name AS job_namespace, j.name AS job_name, j.id AS job_id
FROM runs r JOIN jobs j ON j.id = r.job_id JOIN namespaces jn ON jn.id = j.namespace_id
"""


def _run(row: Any, facets: Json) -> Json:
    nominal = facets.get("nominalTime") or {}
    ended = row.state_time if row.state_rank == 3 else None
    duration = int((ended - row.started_at).total_seconds() * 1000) if ended and row.started_at else None
    return {
        "id": str(row.run_uuid),
        "createdAt": iso(row.first_seen),
        "updatedAt": iso(row.last_seen),
        "nominalStartTime": nominal.get("nominalStartTime") if isinstance(nominal, dict) else None,
        "nominalEndTime": nominal.get("nominalEndTime") if isinstance(nominal, dict) else None,
        "state": row.state or "NEW",
        "startedAt": iso(row.started_at),
        "endedAt": iso(ended),
        "durationMs": duration,
        "args": {},
        "jobVersion": {"namespace": row.job_namespace, "name": row.job_name},
        "parentRun": (
            {
                "id": str(row.parent_run_uuid),
                "jobNamespace": row.parent_job_namespace,
                "jobName": row.parent_job_name,
            }
            if row.parent_run_uuid
            else None
        ),
        "inputDatasetVersions": [],
        "outputDatasetVersions": [],
        "context": {},
        "facets": facets,
    }


async def _job_io(conn: AsyncConnection, job_ids: Sequence[int]) -> dict[int, dict[str, list[Json]]]:
    if not job_ids:
        return {}
    rows = await conn.execute(
        text(
            "SELECT io.job_id, io.direction, n.name AS namespace, d.name FROM job_io io "
            "JOIN datasets d ON d.id = io.dataset_id JOIN namespaces n ON n.id = d.namespace_id "
            "WHERE io.job_id = ANY(:ids) ORDER BY n.name, d.name"
        ).bindparams(bindparam("ids", type_=ARRAY(BIGINT))),
        {"ids": list(job_ids)},
    )
    out: dict[int, dict[str, list[Json]]] = defaultdict(lambda: {"input": [], "output": []})
    for r in rows:
        out[r.job_id][r.direction].append({"namespace": r.namespace, "name": r.name})
    return out


async def _latest_runs(conn: AsyncConnection, job_ids: Sequence[int]) -> dict[int, Json]:
    if not job_ids:
        return {}
    rows = (
        await conn.execute(
            text(
                "SELECT latest.* FROM unnest(:ids) AS ids(job_id) CROSS JOIN LATERAL ("
                + RUN_SELECT
                + " WHERE r.job_id = ids.job_id ORDER BY r.first_seen DESC, r.id DESC LIMIT 1) latest"
            ).bindparams(bindparam("ids", type_=ARRAY(BIGINT))),
            {"ids": list(job_ids)},
        )
    ).all()
    facets = await _facets(conn, "run", [r.id for r in rows])
    return {r.job_id: _run(r, facets.get(r.id, {})) for r in rows}


def _job(row: Any, facets: Json, io: dict[str, list[Json]], latest: Json | None) -> Json:
    job_type = facets.get("jobType") or {}
    location = facets.get("sourceCodeLocation") or {}
    sql = facets.get("sql") or {}
    documentation = facets.get("documentation") or {}
    processing = job_type.get("processingType") if isinstance(job_type, dict) else None
    return {
        "id": {"namespace": row.namespace, "name": row.name},
        "type": str(processing or "BATCH").upper(),
        "name": row.name,
        "simpleName": row.name.rsplit(".", 1)[-1],
        "createdAt": iso(row.first_seen),
        "updatedAt": iso(row.last_seen),
        "namespace": row.namespace,
        "inputs": io["input"],
        "outputs": io["output"],
        "location": location.get("url") if isinstance(location, dict) else None,
        "description": documentation.get("description") if isinstance(documentation, dict) else None,
        "sql": sql.get("query") if isinstance(sql, dict) else None,
        "jobType": job_type if job_type else None,
        "facets": facets,
        "latestRun": latest,
    }


async def _jobs_page(conn: AsyncConnection, rows: Sequence[Any]) -> list[Json]:
    ids = [r.id for r in rows]
    facets = await _facets(conn, "job", ids)
    io = await _job_io(conn, ids)
    latest = await _latest_runs(conn, ids)
    empty: dict[str, list[Json]] = {"input": [], "output": []}
    return [_job(r, facets.get(r.id, {}), io.get(r.id, empty), latest.get(r.id)) for r in rows]


async def list_jobs(
    conn: AsyncConnection, *, namespace: str, limit: int, offset: int
) -> tuple[list[Json], int] | None:
    page = await _namespace_page(conn, namespace, JOB_SELECT, "j", "jobs", limit=limit, offset=offset)
    if page is None:
        return None
    rows, total = page
    return await _jobs_page(conn, rows), total


async def get_job(conn: AsyncConnection, *, namespace: str, name: str) -> Json | None:
    row = (
        await conn.execute(
            text(JOB_SELECT + " WHERE n.name = :ns AND j.name = :name"), {"ns": namespace, "name": name}
        )
    ).first()
    if row is None:
        return None
    return (await _jobs_page(conn, [row]))[0]


# -- runs ---------------------------------------------------------------------------------------------


async def list_runs(
    conn: AsyncConnection, *, namespace: str, job: str, limit: int, offset: int
) -> tuple[list[Json], int] | None:
    job_id = (
        await conn.execute(
            text(
                "SELECT j.id FROM jobs j JOIN namespaces n ON n.id = j.namespace_id WHERE n.name = :ns AND j.name = :j"
            ),
            {"ns": namespace, "j": job},
        )
    ).scalar()
    if job_id is None:
        return None
    rows = (
        await conn.execute(
            text(
                RUN_SELECT
                + " WHERE r.job_id = :job ORDER BY r.first_seen DESC, r.id DESC LIMIT :limit OFFSET :offset"
            ),
            {"job": job_id, "limit": limit, "offset": offset},
        )
    ).all()
    total = (
        await conn.execute(text("SELECT count(*) FROM runs WHERE job_id = :job"), {"job": job_id})
    ).scalar_one()
    facets = await _facets(conn, "run", [r.id for r in rows])
    return [_run(r, facets.get(r.id, {})) for r in rows], total


async def get_run(conn: AsyncConnection, *, run_id: uuid.UUID) -> Json | None:
    """A run by its OpenLineage run id. Producers occasionally reuse an id under several jobs: the most
    recently seen one is returned, and `sameIdRuns` names the others."""
    rows = (
        await conn.execute(
            text(RUN_SELECT + " WHERE r.run_uuid = :id ORDER BY r.last_seen DESC, r.id DESC"), {"id": run_id}
        )
    ).all()
    if not rows:
        return None
    facets = await _facets(conn, "run", [rows[0].id])
    run = _run(rows[0], facets.get(rows[0].id, {}))
    if len(rows) > 1:
        run["sameIdRuns"] = [{"jobNamespace": r.job_namespace, "jobName": r.job_name} for r in rows[1:]]
    return run


# -- events -------------------------------------------------------------------------------------------

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


async def list_events(
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
    """Raw events from the log by event time (newest first by default), as stored. `job_products`: only
    events of jobs stored as belonging to one of these products (and, with `unowned_jobs`, to none),
    and events without a job (DatasetEvents); None: every event. `job_namespace`: only events of jobs
    of that namespace (Marquez's /events/{namespace})."""
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
