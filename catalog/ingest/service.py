"""The two halves of ingestion: `append` (the accepting path: the event log, nothing else) and `fold`
(the projector's step: projection, PII classification, ownership-claim audit, findings).

Why appends take one lock: the projector reads "every event after position N" (catalog/ingest/projector.py).
Ids come from a sequence when the INSERT runs, but transactions commit in any order, so under concurrent
appenders id 11 can be visible while id 10 is still uncommitted; a reader that moved past 11 would never
come back for 10. `append` (the SQL function `append_to_event_log`, migration 0014) therefore takes a
transaction-scoped advisory lock BEFORE its INSERT draws ids and holds it until COMMIT (PostgreSQL
releases transaction locks after the commit is visible). An appender that draws id 11 has waited for the
one that drew 10 to commit or roll back, so what any snapshot sees of the log is always a prefix of ids
(with holes only for ids never to commit): "after N" cannot skip a late row. It is cheap because appends
are group-committed (one statement per group of requests, catalog/ingest/writer.py), and it needs the
sequence's CACHE at 1 (the default; a per-backend cache would hand out ids out of order) —
tests/ingest/test_log_order.py checks both.
"""

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
from catalog.findings.facts import Facts
from catalog.findings.service import evaluate_batch
from catalog.findings.transports import record_flow_transports
from catalog.ingest.extract import EventKey, NameKey, Ownership, Rows, extract
from catalog.ingest.projection import Projected, project
from catalog.openlineage.events import OpenLineageEvent
from catalog.policies_in_force import Policies
from catalog.policy.products import ANY_EMITTER, Claim, ProductMap

# One fixed key (an arbitrary constant no other module uses): see the module docstring.
APPEND_LOCK_KEY = 0x0C47A106
# NOTIFYed on every append that stored something: the projector LISTENs (delivered at COMMIT).
APPENDED_CHANNEL = "catalog_event_log"

# Lock, INSERT (duplicates skipped by the unique constraint), the positions of events logged before, and
# the NOTIFY, in one statement (migration 0014): one round trip, which the ingest writer sends with no
# explicit transaction around it, so that the statement is the transaction.
APPEND_EVENTS = """
SELECT id, event_time, digest, fresh
FROM append_to_event_log($1, $2, $3::timestamptz[], $4::bytea[], $5::text[], $6::text[], $7::uuid[],
                         $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[])
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
    fresh: frozenset[EventKey]  # events appended by this call
    received: int
    positions: dict[EventKey, int]  # the log position of every event received (new or a duplicate)

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
        for attempt in range(3):
            try:
                async with raw_transaction(engine) as raw:
                    for at in sorted(missing.values()):
                        await raw.execute("SELECT ensure_event_log_partition($1)", at)
                break
            except (asyncpg.exceptions.DuplicateTableError, asyncpg.exceptions.UniqueViolationError):
                # Another process created it at the same moment: the function re-checks after its
                # advisory lock, but an advisory lock does not refresh this backend's catalog cache,
                # so the re-check can miss the table just committed and CREATE collides. A new
                # transaction starts with a fresh cache and finds it (tests/ingest/test_log_order.py).
                if attempt == 2:
                    raise
        self._months.update(missing)


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


async def append(raw: asyncpg.Connection[Any], events: Sequence[OpenLineageEvent]) -> IngestOutcome:
    """Append events to the log: in the caller's transaction, which then holds the append lock until its
    COMMIT, or (the ingest writer) with none, the statement being its own transaction. Nothing is
    projected here."""
    unique = dedupe(events)
    if not unique:
        return IngestOutcome(frozenset(), len(events), {})
    rows = await raw.fetch(APPEND_EVENTS, APPEND_LOCK_KEY, APPENDED_CHANNEL, *_log_columns(unique))
    positions: dict[EventKey, int] = {(r["event_time"], bytes(r["digest"])): r["id"] for r in rows}
    fresh = frozenset((r["event_time"], bytes(r["digest"])) for r in rows if r["fresh"])
    return IngestOutcome(fresh, len(events), positions)


async def fold(
    raw: asyncpg.Connection[Any],
    events: Sequence[OpenLineageEvent],
    log_ids: dict[EventKey, int],
    policies: Policies,
) -> None:
    """The projector's work for logged events (in log order; `log_ids` their ids): projection and PII
    classification, then the audit of new ownership claims and the governance findings."""
    # PII classification (in project_only) before the rules, which judge flows by it.
    rows, projected, facts = await project_only(raw, events, log_ids, policies)
    await audit_claims(raw, rows, projected)
    await evaluate_batch(raw, facts, policies)  # governance findings for what the batch touched


async def project_only(
    raw: asyncpg.Connection[Any],
    events: Sequence[OpenLineageEvent],
    log_ids: dict[EventKey, int],
    policies: Policies,
) -> tuple[Rows, Projected, Facts]:
    """Project events that are in the log (in log order, `log_ids` their ids) and classify what they
    touched (catalog/classification). A rebuild does only this: findings and audit rows are history."""
    ownership = await _ownership(raw, events, log_ids, policies.products.current)
    rows = extract(events, ownership)
    projected = await project(raw, rows)
    # Which product each subject belongs to (a policy fact authorisation reads), whatever the findings switch.
    facts = await record_product_assignments(
        raw, ownership.products, events, projected.dataset_ids, projected.job_ids
    )
    # Each flow's own transport (catalog/findings): projected even when the rules run only on `catalog scan`.
    await record_flow_transports(raw, events, projected.job_ids, projected.dataset_ids)
    await classify_batch(
        raw,
        field_ids=projected.field_ids.values(),
        dataset_ids=projected.dataset_ids.values(),
        new_edges=projected.new_field_edges,
        rules=policies.classification.current,
    )
    return rows, projected, facts


async def _ownership(
    raw: asyncpg.Connection[Any],
    events: Sequence[OpenLineageEvent],
    log_ids: dict[EventKey, int],
    products: ProductMap,
) -> Ownership:
    """products.yaml, and the stored placement of the datasets the batch touches that the file does not
    place — fetched (one statement) only for those a product's key touches or a claim names: a batch
    sent by keys acting for every product with no claims needs none."""
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
    """Audit-log, in the projector's transaction, every ownership claim made for the first time that placed
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
        [(e.canonical or orjson.dumps(e.payload)).decode() for e in events],
        [e.emitter for e in events],
        # one text per event (unnest cannot take ragged arrays); a JSON pointer holds no newline
        ["\n".join(e.redactions) for e in events],
        [e.emitter_key for e in events],
    ]
