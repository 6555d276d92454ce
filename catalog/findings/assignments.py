"""Product assignment: which product (and tier) each dataset, job and namespace belongs to.

A policy fact, not a finding: authorisation reads `product_assignments`, so it is written with the
projection (`record_product_assignments`, called by `project_only`) whether or not the rules run on the
ingest path, and by `catalog scan` for the whole catalog. The rules read the same assignments
(`assign`, pure) to route each finding to a steward and to report ownership conflicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from catalog.audit.append import record_raw
from catalog.findings.facts import Facts, NameKey, Observations, Record, facts_by_id
from catalog.openlineage.events import OpenLineageEvent
from catalog.policy.products import Assignment, Claim, ProductMap

# Also returns the subjects whose product changed (a reassignment changes who may read them): the
# `prev` snapshot is the table before this statement, so one statement still does the whole batch.
UPSERT_ASSIGNMENTS = """
WITH u AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[])
        AS u(k, i, p, t, s, c)
), prev AS (
    SELECT pa.subject_kind, pa.subject_id, pa.product
    FROM product_assignments pa JOIN u ON pa.subject_kind = u.k AND pa.subject_id = u.i
), up AS (
    INSERT INTO product_assignments (subject_kind, subject_id, product, tier, source, candidates)
    SELECT k, i, p, t, s, c::jsonb FROM u
    ON CONFLICT (subject_kind, subject_id) DO UPDATE
    SET product = excluded.product, tier = excluded.tier, source = excluded.source,
        candidates = excluded.candidates
    WHERE (product_assignments.product, product_assignments.tier, product_assignments.source,
           product_assignments.candidates)
          IS DISTINCT FROM (excluded.product, excluded.tier, excluded.source, excluded.candidates)
    RETURNING subject_kind, subject_id, product, source
)
SELECT up.subject_kind, up.subject_id, prev.product AS was, up.product AS now, up.source
FROM up JOIN prev USING (subject_kind, subject_id)
WHERE prev.product IS DISTINCT FROM up.product
ORDER BY 1, 2
"""


@dataclass(slots=True)
class Assigned:
    """The assignments of a scope's subjects, by id."""

    namespaces: dict[int, Assignment] = field(default_factory=dict)
    datasets: dict[int, Assignment] = field(default_factory=dict)
    jobs: dict[int, Assignment] = field(default_factory=dict)


def _owners(value: Any) -> list[str]:
    return [o for o in value or [] if isinstance(o, str)]


def _claims(value: str | None) -> list[Claim]:
    """A dataset's ownership claims (catalog/policy/products.py), as the facts query aggregates them."""
    return [Claim(owner, emitter, logged) for owner, emitter, logged in orjson.loads(value or "[]")]


def assign(products: ProductMap, datasets: Iterable[Record], jobs: Iterable[Record]) -> Assigned:
    """The products/tiers of the given fact rows (catalog/findings/facts.py) and their namespaces (pure)."""
    out = Assigned()
    for record in datasets:
        out.datasets[record["id"]] = products.assign(
            "dataset", record["namespace"], record["name"], claims=_claims(record["claims"])
        )
        if record["namespace_id"] not in out.namespaces:
            out.namespaces[record["namespace_id"]] = products.assign("namespace", record["namespace"], None)
    for record in jobs:
        out.jobs[record["id"]] = products.assign(
            "job", record["namespace"], record["name"], _owners(record["owners"])
        )
        if record["namespace_id"] not in out.namespaces:
            out.namespaces[record["namespace_id"]] = products.assign("namespace", record["namespace"], None)
    return out


async def store(raw: asyncpg.Connection[Any], assigned: Assigned) -> list[Record]:
    """Upsert the assignments (one statement, sorted lock order); returns the subjects whose product
    changed (for the audit log)."""
    rows: list[tuple[Any, ...]] = []
    for kind, by_id in (
        ("namespace", assigned.namespaces),
        ("dataset", assigned.datasets),
        ("job", assigned.jobs),
    ):
        for subject_id, a in by_id.items():
            candidates = orjson.dumps([list(c) for c in a.candidates]).decode()
            rows.append((kind, subject_id, a.product, a.tier, a.source, candidates))
    if not rows:
        return []
    rows.sort(key=lambda r: (r[0], r[1]))  # a fixed lock order across concurrent writers
    return list(await raw.fetch(UPSERT_ASSIGNMENTS, *[list(column) for column in zip(*rows, strict=True)]))


async def assign_products(
    raw: asyncpg.Connection[Any], products: ProductMap, datasets: Sequence[Record], jobs: Sequence[Record]
) -> tuple[Assigned, list[Record]]:
    """Assign and store; returns the assignments and the subjects whose product changed."""
    assigned = assign(products, datasets, jobs)
    return assigned, await store(raw, assigned)


async def record_product_assignments(
    raw: asyncpg.Connection[Any],
    products: ProductMap | None,
    events: Sequence[OpenLineageEvent],
    dataset_ids: Mapping[NameKey, int],
    job_ids: Mapping[NameKey, int],
) -> Facts:
    """The projection's step: assign a product to every dataset, job and namespace `events` (already
    projected) named, by the product map the projection placed them by, and audit any reassignment — at
    most three statements, plus one audit row when a product moved (rare: products.yaml changed).
    Returns the facts it read, which the rules judge next in the same transaction (nothing the rest of
    the fold writes changes them: they are names, claims, owners and the job type)."""
    if products is None:  # the fold's Ownership always carries the map on the ingest path
        raise ValueError("product assignment needs the product map the projection used")
    seen = Observations.of(events)
    if not events:
        return Facts(seen, [], [])
    datasets, jobs = await facts_by_id(
        raw,
        (dataset_ids[k] for k in seen.datasets if k in dataset_ids),
        (job_ids[k] for k in seen.jobs if k in job_ids),
    )
    _, moved = await assign_products(raw, products, datasets, jobs)
    if moved:
        await audit_reassignments(raw, moved, datasets, jobs)
    return Facts(seen, datasets, jobs)


async def audit_reassignments(
    raw: asyncpg.Connection[Any], moved: Sequence[Record], datasets: Sequence[Record], jobs: Sequence[Record]
) -> None:
    """One audit row for the batch's product changes, in its transaction (a first assignment is not a
    change: it follows from products.yaml and the event log, which `catalog rebuild` replays)."""
    names: dict[tuple[str, int], tuple[str, str | None]] = {}
    for kind, records in (("dataset", datasets), ("job", jobs)):
        for r in records:
            names[(kind, r["id"])] = (r["namespace"], r["name"])
            names.setdefault(("namespace", r["namespace_id"]), (r["namespace"], None))
    changes = []
    for m in moved:
        namespace, name = names.get((m["subject_kind"], m["subject_id"]), (None, None))
        changes.append(
            {
                "kind": m["subject_kind"],
                "namespace": namespace,
                "name": name,
                "from": m["was"],
                "to": m["now"],
                "source": m["source"],
            }
        )
    await record_raw(
        raw,
        action="product_assignment.changed",
        actor=None,
        subject="product_assignments",
        details={"changes": changes},
    )
