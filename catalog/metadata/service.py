"""Marquez's shapes of the projected catalog: namespaces, datasets, jobs, runs, events.

Everything is read through the read model (catalog/metadata/queries.py); this module only shapes its
rows as Marquez's API answers them. Pages are fetched with a fixed number of statements whatever their
size (the page, then its facets, versions and edges in bulk by id), never one query per row.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.classification.reads import pii_tags_by_dataset
from catalog.metadata import queries
from catalog.metadata.queries import DatasetHead, JobRow, NamespaceRow, RunHead, SchemaVersion
from catalog.policy.masking import redact_dataset
from catalog.tags import service as tags_service

Json = dict[str, Any]


def iso(at: dt.datetime | None) -> str | None:
    """Marquez renders instants as ISO-8601 UTC with a `Z`."""
    if at is None:
        return None
    return at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def version_uuid(digest: bytes | None) -> str | None:
    """A stable UUID for a schema version (Marquez clients expect UUID versions)."""
    return str(uuid.UUID(bytes=bytes(digest[:16]))) if digest else None


# -- namespaces ---------------------------------------------------------------------------------------


def _namespace(row: NamespaceRow) -> Json:
    return {
        "name": row.name,
        "createdAt": iso(row.first_seen),
        "updatedAt": iso(row.last_seen),
        "ownerName": "anonymous",
        "description": None,
        "isHidden": False,
    }


async def list_namespaces(conn: AsyncConnection, *, limit: int, offset: int) -> tuple[list[Json], int]:
    rows, total = await queries.namespaces_at(conn, limit=limit, offset=offset)
    return [_namespace(r) for r in rows], total


async def get_namespace(conn: AsyncConnection, name: str) -> Json | None:
    row = await queries.namespace_by_name(conn, name)
    return _namespace(row) if row else None


# -- datasets -----------------------------------------------------------------------------------------


def field_list(
    fields: list[Json] | None, prefix: str = "", pii: dict[str | None, list[str]] | None = None
) -> list[Json]:
    """A schema's fields as Marquez lists them: nested ones after their parent, as dotted names."""
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
            out.extend(field_list(f["fields"], prefix + f["name"] + ".", pii))
    return out


def dataset_body(row: DatasetHead, facets: Json, pii: dict[str | None, list[str]] | None = None) -> Json:
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
        "fields": field_list(row.version_fields, pii=pii),
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
    page = await queries.dataset_heads_in(conn, namespace, limit=limit, offset=offset)
    if page is None:
        return None
    rows, total = page
    facets = await queries.facets_by_id(conn, "dataset", [r.id for r in rows])
    pii = await pii_tags_by_dataset(conn, [r.id for r in rows])
    bodies = [dataset_body(r, facets.get(r.id, {}), pii.get(r.id)) for r in rows]
    if masked:
        bodies = [_masked(b, pii.get(r.id)) for r, b in zip(rows, bodies, strict=True)]
    return bodies, total


async def get_dataset(
    conn: AsyncConnection, *, namespace: str, name: str, masked: bool = False
) -> Json | None:
    """One dataset; `masked`: read through a masked-columns-only grant (PII columns redacted)."""
    row = await queries.dataset_head(conn, namespace, name)
    if row is None:
        return None
    facets = await queries.facets_by_id(conn, "dataset", [row.id])
    pii = await pii_tags_by_dataset(conn, [row.id])
    body = dataset_body(row, facets.get(row.id, {}), pii.get(row.id))
    return _masked(body, pii.get(row.id)) if masked else body


async def tagged_datasets(
    conn: AsyncConnection, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], Json]:
    """The datasets of (namespace, name) keys that exist, with the tags stewards put on them (rather
    than their PII tags): what lineage nodes, schema versions and the tag endpoints answer."""
    rows = await queries.dataset_heads_by_name(conn, keys)
    facets = await queries.facets_by_id(conn, "dataset", [r.id for r in rows])
    tags = await tags_service.tags_of(conn, [(r.namespace, r.name) for r in rows])
    return {
        (r.namespace, r.name): tags_service.apply_tags(
            dataset_body(r, facets.get(r.id, {})), tags.get((r.namespace, r.name))
        )
        for r in rows
    }


async def tagged_dataset(conn: AsyncConnection, namespace: str, name: str) -> Json | None:
    row = await queries.dataset_head(conn, namespace, name)
    if row is None:
        return None
    facets = await queries.facets_by_id(conn, "dataset", [row.id])
    tags = await tags_service.tags_of(conn, [(namespace, name)])
    return tags_service.apply_tags(dataset_body(row, facets.get(row.id, {})), tags.get((namespace, name)))


def _version(dataset: Json, version: SchemaVersion) -> Json:
    body = dict(dataset)
    body.update(
        {
            "version": version_uuid(version.schema_digest),
            "createdAt": iso(version.first_seen),
            "updatedAt": iso(version.last_seen),
            "fields": field_list(version.fields),
            "createdByRun": None,
        }
    )
    body.pop("currentVersion", None)
    return body


async def list_versions(
    conn: AsyncConnection, namespace: str, name: str, *, version: bytes | None, limit: int, offset: int
) -> tuple[list[Json], int] | None:
    """A page of a dataset's schema versions (Marquez's DatasetVersion: the dataset as it is, with that
    version's fields), newest first, and their total; `version`: only the one whose UUID these 16
    bytes are. None when there is no such dataset."""
    dataset = await tagged_dataset(conn, namespace, name)
    if dataset is None:
        return None
    rows = await queries.schema_versions(conn, namespace, name, prefix=version, limit=limit, offset=offset)
    return [_version(dataset, r) for r in rows], (rows[0].total if rows else 0)


# -- jobs ---------------------------------------------------------------------------------------------


def _run(row: RunHead, facets: Json) -> Json:
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


async def _latest_runs(conn: AsyncConnection, job_ids: Sequence[int]) -> dict[int, Json]:
    runs = await queries.latest_runs(conn, job_ids)
    facets = await queries.facets_by_id(conn, "run", [r.id for r in runs.values()])
    return {job_id: _run(r, facets.get(r.id, {})) for job_id, r in runs.items()}


def _job(row: JobRow, facets: Json, io: dict[str, list[Json]], latest: Json | None) -> Json:
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


async def job_bodies(conn: AsyncConnection, rows: Sequence[JobRow]) -> list[Json]:
    """Marquez's job answers for rows of jobs: their facets, inputs, outputs and latest runs in bulk."""
    ids = [r.id for r in rows]
    facets = await queries.facets_by_id(conn, "job", ids)
    io = await queries.job_io(conn, ids)
    latest = await _latest_runs(conn, ids)
    empty: dict[str, list[Json]] = {"input": [], "output": []}
    return [_job(r, facets.get(r.id, {}), io.get(r.id, empty), latest.get(r.id)) for r in rows]


async def list_jobs(
    conn: AsyncConnection, *, namespace: str, limit: int, offset: int
) -> tuple[list[Json], int] | None:
    page = await queries.job_rows_in(conn, namespace, limit=limit, offset=offset)
    if page is None:
        return None
    rows, total = page
    return await job_bodies(conn, rows), total


async def get_job(conn: AsyncConnection, *, namespace: str, name: str) -> Json | None:
    row = await queries.job_by_name(conn, namespace, name)
    if row is None:
        return None
    return (await job_bodies(conn, [row]))[0]


async def jobs_by_name(conn: AsyncConnection, keys: Sequence[tuple[str, str]]) -> list[Json]:
    """The jobs of (namespace, name) keys that exist, as Marquez answers them."""
    if not keys:
        return []
    found = await queries.jobs_by_name(conn, keys)
    return await job_bodies(conn, list(found.values()))


# -- runs ---------------------------------------------------------------------------------------------


async def list_runs(
    conn: AsyncConnection, *, namespace: str, job: str, limit: int, offset: int
) -> tuple[list[Json], int] | None:
    page = await queries.runs_of_job(conn, namespace, job, limit=limit, offset=offset)
    if page is None:
        return None
    rows, total = page
    facets = await queries.facets_by_id(conn, "run", [r.id for r in rows])
    return [_run(r, facets.get(r.id, {})) for r in rows], total


async def get_run(conn: AsyncConnection, *, run_id: uuid.UUID) -> Json | None:
    """A run by its OpenLineage run id. Producers occasionally reuse an id under several jobs: the most
    recently seen one is returned, and `sameIdRuns` names the others."""
    rows = await queries.runs_by_uuid(conn, run_id)
    if not rows:
        return None
    facets = await queries.facets_by_id(conn, "run", [rows[0].id])
    run = _run(rows[0], facets.get(rows[0].id, {}))
    if len(rows) > 1:
        run["sameIdRuns"] = [{"jobNamespace": r.job_namespace, "jobName": r.job_name} for r in rows[1:]]
    return run


# -- search -------------------------------------------------------------------------------------------


async def search(
    conn: AsyncConnection,
    *,
    q: str,
    kind: str | None,
    sort: str,
    limit: int,
    namespace: str | None,
    product: str | None = None,
    tier: str | None = None,
) -> list[Json]:
    """Marquez's /search: datasets and jobs (`kind` 'DATASET' or 'JOB': only those) whose name contains
    `q`, by name ('NAME') or most recently updated first; `product`/`tier` as `queries.search` reads
    them. (No PII filter here: whether a dataset holds PII is internals, and this route checks none.)"""
    hits = await queries.search(
        conn,
        term=q,
        limit=limit,
        kinds=frozenset({kind.lower()}) if kind else frozenset({"dataset", "job"}),
        namespace=namespace,
        order="name" if sort == "NAME" else "updated",
        product=product,
        tier=tier,
    )
    return [
        {
            "type": h.kind.upper(),
            "name": h.name,
            "updatedAt": iso(h.last_seen),
            "namespace": h.namespace,
            "nodeId": f"{h.kind}:{h.namespace}:{h.name}",
        }
        for h in hits
    ]


# -- events -------------------------------------------------------------------------------------------

list_events = queries.events
