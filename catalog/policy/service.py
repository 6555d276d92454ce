"""Authorisation as a service: decide, record denials, and find the product a resource belongs to.

`authorize(enforcer, principal, obj, act, product)` is what every entry point calls (REST through the
route dependency, GraphQL fields and mutations directly, the ingest flow per event): it returns the
decision or raises `AccessDenied` carrying the rule that denied. `record_denial` writes the denial in
its own short transaction so it is kept even though the request fails, together with its audit-log row
(`<object>.denied`, e.g. `export.denied`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from catalog.audit import service as audit
from catalog.auth.service import Principal
from catalog.metrics import count_denial
from catalog.openlineage.events import OpenLineageEvent
from catalog.policy.enforcer import GLOBAL, UNOWNED, Decision, PolicyEnforcer
from catalog.policy.products import ProductMap
from catalog.policy.scopes import DatasetRef

log = logging.getLogger(__name__)


class AccessDenied(Exception):
    """A denied decision; `decision.rule` names the rule that denied."""

    def __init__(self, decision: Decision, detail: str | None = None) -> None:
        super().__init__(detail or decision.describe())
        self.decision = decision
        self.detail = detail or decision.describe()


def authorize(
    enforcer: PolicyEnforcer,
    principal: Principal,
    obj: str,
    act: str,
    product: str | None,
    *,
    resource: DatasetRef | None = None,
) -> Decision:
    """Allow or raise AccessDenied. `product` is the domain: the product owning what is touched
    (None: no product — `global` for catalog-wide requests is passed explicitly)."""
    decision = enforcer.decide(principal, obj, act, product, resource=resource)
    if not decision.allowed:
        raise AccessDenied(decision)
    return decision


async def record_denial(
    engine: AsyncEngine, principal: Principal, decision: Decision, path: str | None
) -> None:
    """Keep a denial (own transaction: the request itself is about to fail)."""
    count_denial(decision.obj, decision.act, decision.rule)  # /metrics, whether or not it can be stored
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO access_denials (key_id, role, product, domain, obj, act, rule, path) "
                    "VALUES (:key_id, :role, :product, :domain, :obj, :act, :rule, :path)"
                ),
                {
                    "key_id": principal.key_id,
                    "role": principal.role,
                    "product": principal.product,
                    "domain": decision.domain,
                    "obj": decision.obj,
                    "act": decision.act,
                    "rule": decision.rule,
                    "path": path,
                },
            )
            # Every denial is also audit material, chained in the same transaction (issue 6).
            await audit.record(
                conn,
                action=f"{decision.obj.split(':', 1)[0]}.denied",
                actor=principal.key_id,
                subject=decision.obj,
                details={
                    "role": principal.role,
                    "product": principal.product,
                    "domain": decision.domain,
                    "act": decision.act,
                    "rule": decision.rule,
                    "path": path,
                },
            )
    except Exception:
        # The denial stands whether or not it could be recorded; say so loudly.
        log.exception("could not record an access denial", extra={"rule": decision.rule})


async def list_denials(conn: AsyncConnection, *, limit: int, offset: int) -> list[dict[str, Any]]:
    rows = (
        await conn.execute(
            text(
                "SELECT id, at, key_id, role, product, domain, obj, act, rule, path FROM access_denials "
                "ORDER BY id DESC LIMIT :limit OFFSET :offset"
            ),
            {"limit": limit, "offset": offset},
        )
    ).mappings()
    return [{**r, "at": r["at"].isoformat()} for r in rows]


# -- the product of a resource ---------------------------------------------------------------------


def namespace_product(products: ProductMap, namespace: str) -> str:
    return products.namespace(namespace)[0] or UNOWNED


async def dataset_product(conn: AsyncConnection, products: ProductMap, namespace: str, name: str) -> str:
    """The stored assignment when there is one (it includes ownership facets), else the patterns."""
    stored = await _stored(conn, "datasets", namespace, name)
    if stored is not None:
        return stored
    return products.assign("dataset", namespace, name).product or UNOWNED


def resolve_product(products: ProductMap, kind: str, namespace: str, name: str, stored: str | None) -> str:
    """The product of a dataset/job: its stored assignment (which includes ownership facets) when it
    has one, else what the patterns of products.yaml say — the rule `dataset_product` applies."""
    if stored is not None:
        return stored
    return products.assign(kind, namespace, name).product or UNOWNED


async def stored_products(
    conn: AsyncConnection, keys: Sequence[tuple[str, str, str]]
) -> dict[tuple[str, str, str], str | None]:
    """Stored product assignments of many (kind 'dataset'|'job', namespace, name) at once, in one
    statement (the GraphQL loader's batch); subjects without a stored product are absent."""
    rows = await conn.execute(
        text(
            "SELECT k.kind, k.namespace, k.name, pa.product "
            "FROM unnest(CAST(:kinds AS text[]), CAST(:namespaces AS text[]), CAST(:names AS text[])) "
            "AS k(kind, namespace, name) "
            "JOIN namespaces n ON n.name = k.namespace "
            "LEFT JOIN datasets d ON k.kind = 'dataset' AND d.namespace_id = n.id AND d.name = k.name "
            "LEFT JOIN jobs j ON k.kind = 'job' AND j.namespace_id = n.id AND j.name = k.name "
            "JOIN product_assignments pa ON pa.subject_kind = k.kind "
            "AND pa.subject_id = coalesce(d.id, j.id) WHERE pa.product IS NOT NULL"
        ),
        {
            "kinds": [k[0] for k in keys],
            "namespaces": [k[1] for k in keys],
            "names": [k[2] for k in keys],
        },
    )
    return {(r.kind, r.namespace, r.name): r.product for r in rows}


async def job_product(conn: AsyncConnection, products: ProductMap, namespace: str, name: str) -> str:
    stored = await _stored(conn, "jobs", namespace, name)
    if stored is not None:
        return stored
    return products.assign("job", namespace, name).product or UNOWNED


async def _stored(conn: AsyncConnection, table: str, namespace: str, name: str) -> str | None:
    kind = "dataset" if table == "datasets" else "job"
    row = (
        await conn.execute(
            text(
                f"SELECT pa.product FROM {table} t JOIN namespaces n ON n.id = t.namespace_id "
                "JOIN product_assignments pa ON pa.subject_kind = :kind AND pa.subject_id = t.id "
                "WHERE n.name = :namespace AND t.name = :name"
            ),
            {"kind": kind, "namespace": namespace, "name": name},
        )
    ).first()
    return row.product if row is not None and row.product is not None else None


async def run_product(conn: AsyncConnection, run_id: uuid.UUID) -> str:
    row = (
        await conn.execute(
            text(
                "SELECT pa.product FROM runs r JOIN product_assignments pa "
                "ON pa.subject_kind = 'job' AND pa.subject_id = r.job_id WHERE r.run_uuid = :run LIMIT 1"
            ),
            {"run": run_id},
        )
    ).first()
    return row.product if row is not None and row.product is not None else UNOWNED


def node_product(products: ProductMap, node_id: str | None) -> tuple[str, DatasetRef | None]:
    """(product, grant object) of a Marquez node id `dataset:<namespace>:<name>` / `job:<ns>:<name>`.

    Namespaces contain ':' themselves (`postgres://db:5432`), so every split point is tried and the
    first that maps to a product wins."""
    if not node_id:
        return GLOBAL, None
    kind, _, rest = node_id.partition(":")
    if kind not in ("dataset", "job"):
        return GLOBAL, None
    position = rest.find(":")
    while position != -1:
        namespace, name = rest[:position], rest[position + 1 :]
        assigned = products.assign(kind, namespace, name)
        if assigned.product is not None:
            resource = DatasetRef(namespace, name) if kind == "dataset" else None
            return assigned.product, resource
        position = rest.find(":", position + 1)
    return UNOWNED, None


def event_products(products: ProductMap, event: OpenLineageEvent) -> set[str]:
    """Every product an event's job belongs to by any source (namespace, name, ownership facet): a
    pipeline must be allowed in all of them — a fraud key cannot write into payments' namespace by
    naming its job `fraud_…`."""
    if event.job_namespace is None or event.job_name is None:
        if event.dataset is None:
            return {UNOWNED}
        assigned = products.assign("dataset", event.dataset.namespace, event.dataset.name)
    else:
        owners = _facet_owners(event.job_facets)
        assigned = products.assign("job", event.job_namespace, event.job_name, owners)
    found = {p for _, p in assigned.candidates}
    return found or {UNOWNED}


def _facet_owners(facets: dict[str, Any]) -> Iterable[str]:
    ownership = facets.get("ownership")
    if not isinstance(ownership, dict):
        return []
    owners = ownership.get("owners")
    if not isinstance(owners, list):
        return []
    return [o["name"] for o in owners if isinstance(o, dict) and isinstance(o.get("name"), str)]
