"""The rest of Marquez's read model over our catalog: every job, a run's facets, sources (from datasets'
`dataSource` facets) and the `/stats/*` time series (event counts and cumulative growth per hour/day).

Shapes are Marquez's (api/src/main/java/marquez/api/*Resource.java); SQL is set-based: a fixed number of
statements per answer whatever the number of rows, one per time series whatever the number of buckets.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.metadata import queries
from catalog.metadata.queries import READABLE_EVENT
from catalog.metadata.service import iso, job_bodies
from catalog.openlineage.redaction import redact_uri

Json = dict[str, Any]
Period = Literal["DAY", "WEEK"]
Entity = Literal["jobs", "datasets", "sources"]

# Marquez's run states (RunState) -> the OpenLineage event types a run's state is stored as here.
RUN_STATES: dict[str, tuple[str, ...]] = {
    "NEW": (),
    "RUNNING": ("START", "RUNNING"),
    "COMPLETED": ("COMPLETE",),
    "FAILED": ("FAIL",),
    "ABORTED": ("ABORT",),
}


class UnknownTimezone(ValueError):
    """The `timezone` parameter names no IANA zone."""


# -- every job ----------------------------------------------------------------------------------------


async def list_all_jobs(
    conn: AsyncConnection, *, limit: int, offset: int, last_run_states: Sequence[str] = ()
) -> tuple[list[Json], int]:
    """Jobs of every namespace by (namespace, name), optionally only those whose latest run is in one of
    Marquez's `last_run_states` (NEW = never run)."""
    stored = sorted({t for s in last_run_states for t in RUN_STATES[s]}) if last_run_states else None
    rows, total = await queries.all_jobs(
        conn, limit=limit, offset=offset, latest_states=stored, never_run="NEW" in last_run_states
    )
    return await job_bodies(conn, rows), total


# -- a run's facets -----------------------------------------------------------------------------------


async def run_facets(conn: AsyncConnection, *, run_id: uuid.UUID, kind: Literal["run", "job"]) -> Json | None:
    """Marquez's `{runId, facets}`: the run's facets, or (`job`) those of its job. A run id reused under
    several jobs is the most recently seen one, as GET /jobs/runs/{id} answers."""
    runs = await queries.runs_by_uuid(conn, run_id)
    if not runs:
        return None
    subject = runs[0].id if kind == "run" else runs[0].job_id
    facets = await queries.facets_by_id(conn, kind, [subject])
    return {"runId": str(run_id), "facets": facets.get(subject, {})}


# -- sources ------------------------------------------------------------------------------------------

# One row per dataset that has a `dataSource` facet: the source is named by the facet's name (its URI
# when it has none), as producers name it; the stored URI is the ingest-redacted one. `{readable}`: only
# datasets the caller may read the facets of (READABLE_DATASET), or nothing for every dataset.
SOURCE_ROWS = """
SELECT coalesce(nullif(f.value->>'name', ''), nullif(f.value->>'uri', '')) AS name,
       nullif(f.value->>'uri', '') AS uri, f.event_time, d.first_seen, d.last_seen
FROM facets f JOIN datasets d ON d.id = f.subject_id
WHERE f.subject_kind = 'dataset' AND f.name = 'dataSource' AND f.value IS NOT NULL {readable}
"""

# A dataset's facets are its product's internals: readable when its stored product is one of
# `:products` (or none, with `:unowned`) — the event log's rule (READABLE_EVENT), applied to datasets.
READABLE_DATASET = (
    "AND EXISTS (SELECT 1 FROM product_assignments pa WHERE pa.subject_kind = 'dataset' "
    "AND pa.subject_id = d.id "
    "AND (pa.product = ANY(CAST(:products AS text[])) OR (pa.product IS NULL AND :unowned)))"
)

SOURCES = """
WITH src AS ({rows})
SELECT name, (array_agg(uri ORDER BY event_time DESC) FILTER (WHERE uri IS NOT NULL))[1] AS uri,
       min(first_seen) AS first_seen, max(last_seen) AS last_seen, count(*) OVER () AS total
FROM src WHERE name IS NOT NULL AND (CAST(:name AS text) IS NULL OR name = :name)
GROUP BY name ORDER BY name LIMIT :limit OFFSET :offset
"""


@dataclass(frozen=True, slots=True)
class Readable:
    """The products whose datasets' and jobs' internals a caller may read (`unowned`: those of none)."""

    products: Sequence[str]
    unowned: bool


def _rows(readable: Readable | None) -> tuple[str, dict[str, Any]]:
    """SOURCE_ROWS for a caller (None: one who reads every product's internals) and its parameters."""
    if readable is None:
        return SOURCE_ROWS.format(readable=""), {}
    params = {"products": list(readable.products), "unowned": readable.unowned}
    return SOURCE_ROWS.format(readable=READABLE_DATASET), params


# URI schemes that name the same system as Marquez's SourceType spells it.
SCHEME_TYPES = {"postgres": "POSTGRESQL", "postgresql": "POSTGRESQL", "redshift": "REDSHIFT"}


def source_type(uri: str | None) -> str:
    """The source's type from its URI scheme (`postgres://…` -> POSTGRESQL, `jdbc:mysql://…` -> MYSQL,
    `s3://…` -> S3); a bare word (`bigquery`) is its own type."""
    if not uri:
        return "UNKNOWN"
    scheme = uri.split(":", 1)[0].strip().lower()
    if scheme == "jdbc" and ":" in uri[5:]:
        scheme = uri[5:].split(":", 1)[0].strip().lower()
    if not scheme or not all(c.isalnum() or c in "+-." for c in scheme):
        return "UNKNOWN"
    return SCHEME_TYPES.get(scheme, scheme.upper())


def _source(row: Any) -> Json:
    uri = redact_uri(row.uri) if row.uri else None
    return {
        "type": source_type(uri),
        "name": row.name,
        "createdAt": iso(row.first_seen),
        "updatedAt": iso(row.last_seen),
        "connectionUrl": uri,
        "description": None,
    }


async def list_sources(
    conn: AsyncConnection, *, limit: int, offset: int, readable: Readable | None = None
) -> tuple[list[Json], int]:
    """Sources of the datasets whose facets the caller may read (`readable` None: every dataset's)."""
    rows_sql, params = _rows(readable)
    rows = (
        await conn.execute(
            text(SOURCES.format(rows=rows_sql)), {**params, "name": None, "limit": limit, "offset": offset}
        )
    ).all()
    if rows:
        return [_source(r) for r in rows], rows[0].total
    # An offset past the end: the window count has no row to ride on.
    total: int = (
        await conn.execute(text(f"SELECT count(DISTINCT name) FROM ({rows_sql}) s"), params)
    ).scalar_one()
    return [], total


async def get_source(conn: AsyncConnection, name: str, *, readable: Readable | None = None) -> Json | None:
    rows_sql, params = _rows(readable)
    row = (
        await conn.execute(
            text(SOURCES.format(rows=rows_sql)), {**params, "name": name, "limit": 1, "offset": 0}
        )
    ).first()
    return _source(row) if row else None


# -- stats --------------------------------------------------------------------------------------------


def zone(name: str | None) -> str:
    """A valid IANA zone name (UTC when none is given); UnknownTimezone otherwise."""
    if not name:
        return "UTC"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnknownTimezone(name) from exc
    return name


# The last day by hour (24 buckets, the current hour last) or the last week by day (7 buckets, today
# last), cut in local time of `tz` so days start at the caller's midnight (and DST days have 23/25 h).
BUCKETS = """
buckets AS (
    SELECT s AT TIME ZONE :tz AS start_at, (s + CAST(:step AS interval)) AT TIME ZONE :tz AS end_at
    FROM generate_series(
        date_trunc(:unit, now() AT TIME ZONE :tz) - (:n - 1) * CAST(:step AS interval),
        date_trunc(:unit, now() AT TIME ZONE :tz),
        CAST(:step AS interval)
    ) AS s
)
"""

# The window's events are read once through the event-time key (and its partitions), then bucketed.
LINEAGE_EVENTS = """
WITH {buckets},
events AS (
    SELECT e.event_time, e.event_type FROM event_log e
    WHERE e.event_time >= (SELECT min(start_at) FROM buckets)
      AND e.event_time < (SELECT max(end_at) FROM buckets)
      AND e.event_type IN ('START', 'COMPLETE', 'FAIL', 'ABORT') {readable}
)
SELECT b.start_at, b.end_at,
       count(e.event_time) FILTER (WHERE e.event_type = 'START') AS start,
       count(e.event_time) FILTER (WHERE e.event_type = 'COMPLETE') AS complete,
       count(e.event_time) FILTER (WHERE e.event_type = 'FAIL') AS fail,
       count(e.event_time) FILTER (WHERE e.event_type = 'ABORT') AS abort
FROM buckets b
LEFT JOIN events e ON e.event_time >= b.start_at AND e.event_time < b.end_at
GROUP BY b.start_at, b.end_at
ORDER BY b.start_at
"""

# When each entity first appeared (whitelisted SQL, never caller text).
FIRST_SEEN: dict[Entity, str] = {
    "jobs": "SELECT first_seen FROM jobs",
    "datasets": "SELECT first_seen FROM datasets",
    "sources": "SELECT min(first_seen) AS first_seen FROM ({rows}) s WHERE name IS NOT NULL GROUP BY name",
}

# Cumulative growth (Marquez's IntervalMetric): how many existed at the end of each bucket, as the
# count before the window plus a running sum of those first seen in each bucket.
GROWTH = """
WITH {buckets}, seen AS ({first_seen}),
before AS (SELECT count(*) AS n FROM seen WHERE first_seen < (SELECT min(start_at) FROM buckets)),
added AS (
    SELECT b.start_at, b.end_at, count(s.first_seen) AS n
    FROM buckets b LEFT JOIN seen s ON s.first_seen >= b.start_at AND s.first_seen < b.end_at
    GROUP BY b.start_at, b.end_at
)
SELECT a.start_at, a.end_at, (SELECT n FROM before) + sum(a.n) OVER (ORDER BY a.start_at) AS existing
FROM added a ORDER BY a.start_at
"""


def _window(period: Period, tz: str) -> dict[str, Any]:
    if period == "DAY":
        return {"tz": tz, "unit": "hour", "step": dt.timedelta(hours=1), "n": 24}
    return {"tz": tz, "unit": "day", "step": dt.timedelta(days=1), "n": 7}


def _interval(row: Any) -> Json:
    return {"startInterval": iso(row.start_at), "endInterval": iso(row.end_at)}


async def lineage_event_stats(
    conn: AsyncConnection, *, period: Period, tz: str, readable: Readable | None = None
) -> list[Json]:
    """Marquez's LineageMetric per bucket: START/COMPLETE/FAIL/ABORT events by event time, only those
    GET /events/lineage would list to the caller (`readable` None: every event)."""
    params = _window(period, tz)
    clause = ""
    if readable is not None:
        clause = "AND " + READABLE_EVENT
        params.update(products=list(readable.products), unowned=readable.unowned)
    sql = LINEAGE_EVENTS.format(buckets=BUCKETS.strip(), readable=clause)
    rows = await conn.execute(text(sql), params)
    return [
        {**_interval(r), "fail": r.fail, "start": r.start, "complete": r.complete, "abort": r.abort}
        for r in rows
    ]


async def growth_stats(
    conn: AsyncConnection, *, entity: Entity, period: Period, tz: str, readable: Readable | None = None
) -> list[Json]:
    """Marquez's IntervalMetric per bucket: how many jobs/datasets/sources existed at its end (sources:
    those GET /sources lists to the caller; jobs and datasets are discoverable by every caller)."""
    rows_sql, params = _rows(readable)
    first_seen = FIRST_SEEN[entity].format(rows=rows_sql)
    sql = GROWTH.format(buckets=BUCKETS.strip(), first_seen=first_seen)
    rows = await conn.execute(text(sql), {**_window(period, tz), **(params if entity == "sources" else {})})
    return [{**_interval(r), "count": int(r.existing)} for r in rows]
