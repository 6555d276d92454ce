"""Ingest validated events: append them to the event log and project them, in the caller's transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.classification.service import classify_batch
from catalog.db.engine import raw_transaction
from catalog.findings.service import evaluate_batch
from catalog.findings.transports import record_flow_transports
from catalog.ingest.extract import extract
from catalog.ingest.projection import project
from catalog.openlineage.events import OpenLineageEvent

# Duplicates (same event time and digest) are skipped by the unique constraint; RETURNING tells which
# rows were new, and only those are projected.
APPEND_EVENTS = """
INSERT INTO event_log (event_time, digest, kind, event_type, run_uuid, job_namespace, job_name, producer, payload)
SELECT t, d, k, e, r, jn, j, p, x::jsonb
FROM unnest($1::timestamptz[], $2::bytea[], $3::text[], $4::text[], $5::uuid[], $6::text[], $7::text[],
            $8::text[], $9::text[]) AS u(t, d, k, e, r, jn, j, p, x)
ON CONFLICT (event_time, digest) DO NOTHING
RETURNING event_time, digest
"""


EventKey = tuple[dt.datetime, bytes]  # (event time, digest): the identity of an event in the log


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    fresh: frozenset[EventKey]  # events appended and projected by this call
    received: int

    @property
    def stored(self) -> int:
        return len(self.fresh)

    @property
    def duplicates(self) -> int:
        """Events already in the log (a retry) or repeated in the batch: nothing stored for them."""
        return self.received - len(self.fresh)


class PartitionCache:
    """Months whose event-log partition is known to exist, so the hot path asks PostgreSQL only once.

    Partitions are created in their own short transaction, before the ingest transaction, because
    creating one takes a lock on the parent table that must not be held for a whole batch.
    """

    def __init__(self) -> None:
        self._months: set[tuple[int, int]] = set()

    def forget(self) -> None:
        self._months.clear()

    async def ensure(self, engine: AsyncEngine, times: Sequence[dt.datetime]) -> None:
        missing = {(t.year, t.month): t for t in times if (t.year, t.month) not in self._months}
        if not missing:
            return
        async with raw_transaction(engine) as raw:
            for month, at in sorted(missing.items()):
                await raw.execute("SELECT ensure_event_log_partition($1)", at)
                self._months.add(month)


def dedupe(events: Sequence[OpenLineageEvent]) -> list[OpenLineageEvent]:
    """Drop repeats within one batch (same time and digest); the first occurrence is kept."""
    seen: set[EventKey] = set()
    unique = []
    for event in events:
        key = (event.event_time, event.digest)
        if key not in seen:
            seen.add(key)
            unique.append(event)
    return unique


async def append_and_project(
    raw: asyncpg.Connection[Any], events: Sequence[OpenLineageEvent]
) -> IngestOutcome:
    """Append events to the log and project the new ones, inside the caller's transaction."""
    unique = dedupe(events)
    if not unique:
        return IngestOutcome(frozenset(), len(events))
    inserted = await raw.fetch(APPEND_EVENTS, *_log_columns(unique))
    new_keys = {(r["event_time"], bytes(r["digest"])) for r in inserted}
    fresh = [e for e in unique if (e.event_time, e.digest) in new_keys]
    # PII classification (in project_only) before the rules, which judge flows by it.
    await project_only(raw, fresh)
    await evaluate_batch(raw, fresh)  # governance findings for what the batch touched (catalog/findings)
    return IngestOutcome(frozenset(new_keys), len(events))


async def project_only(raw: asyncpg.Connection[Any], events: Sequence[OpenLineageEvent]) -> None:
    """Project events that are in the log (new ones, or all of them on a rebuild) and classify what they
    touched (catalog/classification)."""
    projected = await project(raw, extract(events))
    # Each flow's own transport (catalog/findings): projected even when the rules run only on `catalog scan`.
    await record_flow_transports(raw, events)
    await classify_batch(
        raw,
        field_ids=projected.field_ids.values(),
        dataset_ids=projected.dataset_ids.values(),
        new_edges=projected.new_field_edges,
    )


def _log_columns(events: Sequence[OpenLineageEvent]) -> list[list[Any]]:
    return [
        [e.event_time for e in events],
        [e.digest for e in events],
        [e.kind for e in events],
        [e.event_type for e in events],
        [e.run_id for e in events],
        [e.job_namespace for e in events],
        [e.job_name for e in events],
        [e.producer for e in events],
        [orjson.dumps(e.payload).decode() for e in events],
    ]
