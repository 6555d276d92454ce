"""Record the transport each flow used: (job, dataset, direction) -> the newest dataSource URI its events sent.

Part of the projection (called by `project_only`, so ingest and `catalog rebuild` both write it, whether or
not the rules run incrementally): the unencrypted-transfer rule judges a job's transfer by what *that* job
connected with, so another job reading the same table over TLS cannot hide a plaintext one. The newest event
(by event time, then URI text and run id for a tie) wins, so the row does not depend on arrival order.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any

import asyncpg

from catalog.openlineage.events import OpenLineageEvent

# (job namespace, job name, direction, dataset namespace, dataset name)
FlowKey = tuple[str, str, str, str, str]

RECORD_TRANSPORTS = """
INSERT INTO flow_transports (job_id, dataset_id, direction, uri, event_time, run_uuid)
SELECT j.id, d.id, u.dir, u.uri, u.t, u.r
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[],
            $8::uuid[]) AS u(jns, jn, dir, dns, dn, uri, t, r)
JOIN namespaces jn ON jn.name = u.jns JOIN jobs j ON j.namespace_id = jn.id AND j.name = u.jn
JOIN namespaces dns ON dns.name = u.dns JOIN datasets d ON d.namespace_id = dns.id AND d.name = u.dn
ORDER BY j.id, d.id, u.dir
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


async def record_flow_transports(raw: asyncpg.Connection[Any], events: Iterable[OpenLineageEvent]) -> None:
    """Upsert the flows' transports of `events` (already projected); one statement, sorted lock order."""
    rows = sorted(flow_transports(events).items())
    if not rows:
        return
    await raw.execute(
        RECORD_TRANSPORTS,
        [k[0] for k, _ in rows],
        [k[1] for k, _ in rows],
        [k[2] for k, _ in rows],
        [k[3] for k, _ in rows],
        [k[4] for k, _ in rows],
        [v[0] for _, v in rows],
        [v[1] for _, v in rows],
        [v[2] for _, v in rows],
    )
