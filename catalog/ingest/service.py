"""Ingest validated events: append them to the event log and project them, in the caller's transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.audit.service import record_raw
from catalog.classification.service import classify_batch
from catalog.db.engine import raw_transaction
from catalog.findings.assignments import record_product_assignments
from catalog.findings.service import evaluate_batch
from catalog.findings.transports import record_flow_transports
from catalog.ingest.extract import EventKey, NameKey, Ownership, Rows, extract
from catalog.ingest.projection import Projected, project
from catalog.openlineage.events import OpenLineageEvent
from catalog.policy import files
from catalog.policy.products import ANY_EMITTER, Claim

# Duplicates (same event time and digest) are skipped by the unique constraint; RETURNING tells which
# rows were new, and only those are projected.
APPEND_EVENTS = """
INSERT INTO event_log (event_time, digest, kind, event_type, run_uuid, job_namespace, job_name, producer, payload,
                       emitter_product)
SELECT t, d, k, e, r, jn, j, p, x::jsonb, m
FROM unnest($1::timestamptz[], $2::bytea[], $3::text[], $4::text[], $5::uuid[], $6::text[], $7::text[],
            $8::text[], $9::text[], $10::text[]) AS u(t, d, k, e, r, jn, j, p, x, m)
ON CONFLICT (event_time, digest) DO NOTHING
RETURNING id, event_time, digest
"""

# Every ownership claim stored for the batch's datasets that products.yaml does not place: the fold
# needs their placement (the first valid claim in log order) to tell whose facets an event carries.
STORED_CLAIMS = """
SELECT k.ns, k.nm, c.owner, c.emitter, c.first_logged
FROM unnest($1::text[], $2::text[]) AS k(ns, nm)
JOIN namespaces n ON n.name = k.ns
JOIN datasets d ON d.namespace_id = n.id AND d.name = k.nm
JOIN ownership_claims c ON c.dataset_id = d.id
"""


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
    log_ids = {(r["event_time"], bytes(r["digest"])): r["id"] for r in inserted}
    fresh = [e for e in unique if (e.event_time, e.digest) in log_ids]
    # PII classification (in project_only) before the rules, which judge flows by it.
    rows, projected = await project_only(raw, fresh, log_ids)
    await audit_claims(raw, rows, projected)
    await evaluate_batch(raw, fresh)  # governance findings for what the batch touched (catalog/findings)
    return IngestOutcome(frozenset(log_ids), len(events))


async def project_only(
    raw: asyncpg.Connection[Any], events: Sequence[OpenLineageEvent], log_ids: dict[EventKey, int]
) -> tuple[Rows, Projected]:
    """Project events that are in the log (new ones, or all of them on a rebuild; in log order, `log_ids`
    their ids) and classify what they touched (catalog/classification)."""
    ownership = await _ownership(raw, events, log_ids)
    rows = extract(events, ownership)
    projected = await project(raw, rows)
    # Which product each subject belongs to (a policy fact authorisation reads), whatever the findings switch.
    await record_product_assignments(raw, ownership.products, events)
    # Each flow's own transport (catalog/findings): projected even when the rules run only on `catalog scan`.
    await record_flow_transports(raw, events)
    await classify_batch(
        raw,
        field_ids=projected.field_ids.values(),
        dataset_ids=projected.dataset_ids.values(),
        new_edges=projected.new_field_edges,
    )
    return rows, projected


async def _ownership(
    raw: asyncpg.Connection[Any], events: Sequence[OpenLineageEvent], log_ids: dict[EventKey, int]
) -> Ownership:
    """products.yaml, and the stored placement of the datasets the batch touches that the file does not
    place — fetched (one statement) only for those a product's key touches or a claim names: a batch
    sent by keys acting for every product with no claims needs none."""
    products = files.product_map().current
    ownership = Ownership(products=products, log_ids=log_ids)
    wanted: set[NameKey] = set()
    for event in events:
        refs = [*event.inputs, *event.outputs]
        if event.dataset is not None:
            refs.append(event.dataset)
        for ref in refs:
            key = (ref.namespace, ref.name)
            if key in wanted or (event.emitter is None and "ownership" not in ref.facets):
                continue
            if ownership.by_file(key) is None:
                wanted.add(key)
    if not wanted:
        return ownership
    keys = sorted(wanted)
    for r in await raw.fetch(STORED_CLAIMS, [k[0] for k in keys], [k[1] for k in keys]):
        key = (r["ns"], r["nm"])
        claim = Claim(r["owner"], r["emitter"], r["first_logged"])
        for product in products.claimed_products(claim):
            if claim.emitter in (product, ANY_EMITTER):
                current = ownership.placed.get(key)
                if current is None or (claim.first_logged, product) < current:
                    ownership.placed[key] = (claim.first_logged, product)
    return ownership


async def audit_claims(raw: asyncpg.Connection[Any], rows: Rows, projected: Projected) -> None:
    """Audit-log, in the ingest transaction, every ownership claim made for the first time that placed
    a dataset (`ownership.placed`) or that conflicts with its product (`ownership.conflict`). Rare: one
    row each."""
    for key in sorted(projected.new_claims):
        claim = rows.claims[key]
        if claim.verdict not in ("placed", "conflict"):
            continue
        (namespace, name), owner, emitter = key
        await record_raw(
            raw,
            action=f"ownership.{claim.verdict}",
            actor=claim.actor,
            subject=f"dataset:{namespace}/{name}",
            details={
                "namespace": namespace,
                "dataset": name,
                "owner": owner,
                "claimed_products": list(claim.products),
                "sent_by": None if emitter == ANY_EMITTER else emitter,
                "product": claim.owning,
                "event_time": claim.span.first.isoformat(),
                "event_log_id": claim.first_logged,
            },
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
        [e.emitter for e in events],
    ]
