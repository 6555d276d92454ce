"""Record the transport each flow used: (job, dataset, direction) -> the newest dataSource URI its events sent.

Part of the projection (called by `project_only`, so ingest and `catalog rebuild` both write it, whether or
not the rules run incrementally): the unencrypted-transfer rule judges a job's transfer by what *that* job
connected with, so another job reading the same table over TLS cannot hide a plaintext one. The newest event
(by event time, then URI text and run id for a tie) wins, so the row does not depend on arrival order.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg

from catalog.openlineage.events import OpenLineageEvent

# (job namespace, job name, direction, dataset namespace, dataset name)
FlowKey = tuple[str, str, str, str, str]

# By surrogate ids (the projection just resolved them): a join by names here let the planner probe the
# trigram search index for equality, 10 ms a row (seconds a batch) once the catalog had grown.
RECORD_TRANSPORTS = """
INSERT INTO flow_transports (job_id, dataset_id, direction, uri, event_time, run_uuid)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[], $6::uuid[])
ON CONFLICT (job_id, dataset_id, direction) DO UPDATE
SET uri = excluded.uri, event_time = excluded.event_time, run_uuid = excluded.run_uuid
WHERE (excluded.event_time, excluded.uri COLLATE "C", coalesce(excluded.run_uuid::text, '') COLLATE "C")
    > (flow_transports.event_time, flow_transports.uri COLLATE "C",
       coalesce(flow_transports.run_uuid::text, '') COLLATE "C")
"""


def flow_transports(
    events: Iterable[OpenLineageEvent],
) -> dict[FlowKey, tuple[str, dt.datetime, uuid.UUID | None]]:
    """The newest dataSource URI per flow named by `events` (pure)."""
    out: dict[FlowKey, tuple[str, dt.datetime, uuid.UUID | None]] = {}
    for event in events:
        if event.job_namespace is None or event.job_name is None:
            continue
        for direction, refs in (("input", event.inputs), ("output", event.outputs)):
            for ref in refs:
                source = ref.facets.get("dataSource")
                uri = source.get("uri") if isinstance(source, dict) else None
                if not isinstance(uri, str) or not uri.strip():
                    continue
                key = (event.job_namespace, event.job_name, direction, ref.namespace, ref.name)
                previous = out.get(key)
                if previous is None or _rank(*previous) < _rank(uri, event.event_time, event.run_id):
                    out[key] = (uri, event.event_time, event.run_id)
    return out


def _rank(uri: str, at: dt.datetime, run: uuid.UUID | None) -> tuple[dt.datetime, str, str]:
    # The same order as the upsert's WHERE (byte order, COLLATE "C"): event time, then URI, then run id as
    # text, so ties are broken alike whether two events arrive in one batch or in two.
    return (at, uri, str(run) if run is not None else "")


async def record_flow_transports(
    raw: asyncpg.Connection[Any],
    events: Iterable[OpenLineageEvent],
    job_ids: Mapping[tuple[str, str], int],
    dataset_ids: Mapping[tuple[str, str], int],
) -> None:
    """Upsert the flows' transports of `events` (already projected: `job_ids` and `dataset_ids` are the
    projection's ids by name); one statement, sorted lock order."""
    rows = sorted(
        (job_ids[(jns, jn)], dataset_ids[(dns, dn)], direction, *value)
        for (jns, jn, direction, dns, dn), value in flow_transports(events).items()
    )
    if not rows:
        return
    await raw.execute(RECORD_TRANSPORTS, *[list(column) for column in zip(*rows, strict=True)])
