"""REST authorisation: every route's request goes through the enforcer via `require_principal`.

The route's (object, action) and the source of its product domain come from the central table in
`catalog/policy/routes.py`, looked up by the route's method and path template; a denial answers 403
problem+json naming the rule and is recorded in `access_denials`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import unquote

import orjson
from fastapi import FastAPI, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.routing import BaseRoute

from catalog.api.rest.problems import Problem
from catalog.auth.service import Principal
from catalog.classification.service import unmasked_pii_columns
from catalog.findings.service import finding_product
from catalog.lineage.service import resolve_node_id
from catalog.openlineage.events import OpenLineageEvent
from catalog.policy import service
from catalog.policy.enforcer import GLOBAL, UNOWNED, Decision, PolicyEnforcer, dataset_object
from catalog.policy.grants import grant_product
from catalog.policy.products import ProductMap
from catalog.policy.routes import RoutePolicy, route_policy


def iter_routes(routes: Sequence[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route with its full path, through FastAPI's included routers (0.16x keeps them nested)."""
    try:
        from fastapi.routing import _iter_included_route_candidates
    except ImportError:  # older FastAPI flattens included routers into app.routes
        yield from routes
        return
    yield from _iter_included_route_candidates(routes)


def route_methods(route: BaseRoute) -> list[str]:
    methods = getattr(route, "methods", None)
    if methods:
        return sorted(m for m in methods if m != "HEAD")
    return ["WEBSOCKET"] if type(route).__name__ == "APIWebSocketRoute" else []


def _templates(app: FastAPI) -> dict[tuple[Any, str], str]:
    cached: dict[tuple[Any, str], str] | None = getattr(app.state, "route_templates", None)
    if cached is None:
        cached = {}
        for route in iter_routes(app.routes):
            endpoint = getattr(route, "endpoint", None)
            for method in route_methods(route):
                cached[(endpoint, method)] = getattr(route, "path", "")
        app.state.route_templates = cached
    return cached


def forbidden(decision: Decision, detail: str | None = None) -> Problem:
    return Problem(
        "forbidden",
        detail or decision.describe(),
        extra={
            "rule": decision.rule,
            "domain": decision.domain,
            "object": decision.obj,
            "action": decision.act,
        },
    )


def _param(request: Request, name: str) -> str:
    return unquote(str(request.path_params.get(name, "")))


async def _domain(request: Request, principal: Principal, policy: RoutePolicy) -> tuple[str, str | None]:
    """(product domain, grant object) of the request, as the route table says to find them."""
    products = request.app.state.enforcer.products.current
    source = policy.domain
    if source == "global":
        return GLOBAL, None
    if source in ("own", "product"):
        asked = request.query_params.get("product") if source == "product" else None
        return asked or principal.product or GLOBAL, None
    if source == "namespace":
        namespace = _param(request, "namespace")
        return service.namespace_product(products, namespace), dataset_object(namespace, "*")
    if source == "node":
        return await _node_domain(request, products)
    if source == "query-dataset":
        q_namespace, q_name = request.query_params.get("namespace"), request.query_params.get("dataset")
        if not q_namespace or not q_name:
            return principal.product or GLOBAL, None
        for member, value in (("namespace", q_namespace), ("dataset", q_name)):
            if "\x00" in value:  # PostgreSQL text cannot carry NUL: a 400 naming the field, not a 500
                raise Problem(
                    "invalid-parameter", f"{member}: must not contain NUL", status=400, pointer=member
                )
        async with request.app.state.engine.connect() as conn:
            owner = await service.dataset_product(conn, products, q_namespace, q_name)
        return owner, dataset_object(q_namespace, q_name)
    if source == "body-dataset":
        named = await _body_dataset(request)
        if named is None:
            return principal.product or GLOBAL, None
        async with request.app.state.engine.connect() as conn:
            owner = await service.dataset_product(conn, products, *named)
        return owner, None
    async with request.app.state.engine.connect() as conn:
        if source == "decision":
            row = (
                await conn.execute(
                    text("SELECT namespace, dataset FROM classification_decisions WHERE id = :id"),
                    {"id": _int(_param(request, "decision_id"))},
                )
            ).first()
            if row is None:
                return principal.product or GLOBAL, None  # the handler answers 404
            return await service.dataset_product(conn, products, row.namespace, row.dataset), None
        if source == "dataset":
            namespace, name = _param(request, "namespace"), _param(request, "dataset")
            return await service.dataset_product(conn, products, namespace, name), dataset_object(
                namespace, name
            )
        if source == "job":
            namespace, name = _param(request, "namespace"), _param(request, "job")
            return await service.job_product(conn, products, namespace, name), None
        if source == "run":
            try:
                run = uuid.UUID(_param(request, "run_id"))
            except ValueError:
                return GLOBAL, None  # validation answers 400 next
            return await service.run_product(conn, run), None
        if source == "finding":
            exists, found = await finding_product(conn, _int(_param(request, "finding_id")))
        else:
            exists, found = await grant_product(conn, _int(_param(request, "grant_id")))
        if not exists:
            raise Problem("not-found", f"{source} not found")
        return found or UNOWNED, None


async def _node_domain(request: Request, products: ProductMap) -> tuple[str, str | None]:
    """(product domain, grant object) of the `nodeId` query parameter, found in the catalog as the handler
    finds it (namespaces contain ':', so only the stored names tell where the namespace ends; a grant on
    the dataset must name the same object). A field is judged as its dataset. Unknown nodes fall back to
    the patterns (the handler answers 404)."""
    node_id = request.query_params.get("nodeId")
    if not node_id or "\x00" in node_id:
        return service.node_product(products, node_id)
    async with request.app.state.engine.connect() as conn:
        ref = await resolve_node_id(conn, node_id)
        if ref is None:
            return service.node_product(products, node_id)
        if ref.kind == "job":
            return await service.job_product(conn, products, ref.namespace, ref.name), None
        owner = await service.dataset_product(conn, products, ref.namespace, ref.name)
    return owner, dataset_object(ref.namespace, ref.name)


async def _body_dataset(request: Request) -> tuple[str, str] | None:
    """(namespace, dataset) named by a JSON body; None when it names none (validation answers next).
    Starlette caches the body, so the handler reads the same bytes."""
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    namespace, name = body.get("namespace"), body.get("dataset")
    if not isinstance(namespace, str) or not isinstance(name, str) or "\x00" in namespace + name:
        return None
    return namespace, name


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise Problem("invalid-parameter", f"{value!r} is not an id", status=400) from None


async def authorize_route(request: Request, principal: Principal) -> None:
    """Called by `require_principal` for every route: allow, or 403 naming the rule (recorded)."""
    enforcer: PolicyEnforcer | None = getattr(request.app.state, "enforcer", None)
    if enforcer is None:
        return
    method = request.scope.get("method") or "WEBSOCKET"
    template = _templates(request.app).get((request.scope.get("endpoint"), method), request.url.path)
    policy = route_policy(method, template)
    domain, resource = await _domain(request, principal, policy)
    decision = enforcer.decide(principal, policy.obj, policy.act, domain, resource=resource)
    if not decision.allowed:
        await service.record_denial(request.app.state.engine, principal, decision, request.url.path)
        raise forbidden(decision)
    request.state.decision = decision


def masked_read(request: Request) -> bool:
    """Was the route's read allowed only through a masked-columns-only grant? Then the handler redacts
    the columns holding unmasked PII (catalog/policy/masking.py)."""
    decision: Decision | None = getattr(request.state, "decision", None)
    return decision is not None and decision.masked


async def redactions(
    request: Request, conn: AsyncConnection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], frozenset[str]]:
    """For a read allowed through a masked-columns-only grant (`masked_read`): the columns to redact of
    each (namespace, dataset) among `keys` the caller may not read in full — the granted ones, and any
    other product's in the same result. Two statements whatever the number of datasets (their stored
    products, their PII columns); none when the read was not masked."""
    if not masked_read(request):
        return {}
    enforcer: PolicyEnforcer = request.app.state.enforcer
    principal: Principal = request.state.principal
    products = enforcer.products.current
    wanted = sorted(set(keys))
    stored = await service.stored_products(conn, [("dataset", ns, name) for ns, name in wanted])
    partial = []
    for ns, name in wanted:
        owner = service.resolve_product(products, "dataset", ns, name, stored.get(("dataset", ns, name)))
        decision = enforcer.decide(
            principal, "catalog.internals", "read", owner, resource=dataset_object(ns, name)
        )
        if not decision.allowed or decision.masked:
            partial.append((ns, name))
    return await unmasked_pii_columns(conn, partial) if partial else {}


async def authorize(
    request: Request,
    principal: Principal,
    obj: str,
    act: str,
    product: str | None,
    *,
    resource: str | None = None,
) -> Decision:
    """A handler's own check (e.g. against a product named in the body): 403 problem+json when denied."""
    enforcer: PolicyEnforcer = request.app.state.enforcer
    try:
        return service.authorize(enforcer, principal, obj, act, product or GLOBAL, resource=resource)
    except service.AccessDenied as denied:
        await service.record_denial(request.app.state.engine, principal, denied.decision, request.url.path)
        raise forbidden(denied.decision) from None


async def authorize_events(
    request: Request, principal: Principal, events: Sequence[OpenLineageEvent]
) -> None:
    """The ingest flow: every event's job must be in a product the caller may ingest for. One denied
    event refuses the whole request (nothing is stored), naming the event and the rule."""
    enforcer: PolicyEnforcer | None = getattr(request.app.state, "enforcer", None)
    if enforcer is None:
        return
    products = enforcer.products.current
    for index, event in enumerate(events):
        for product in sorted(service.event_products(products, event)):
            decision = enforcer.decide(principal, "lineage.event", "write", product)
            if not decision.allowed:
                await service.record_denial(request.app.state.engine, principal, decision, request.url.path)
                job = f"{event.job_namespace}/{event.job_name}"
                raise forbidden(
                    decision,
                    f"event {index}: job {job} belongs to product {product!r}; "
                    f"{principal.role} key of product {principal.product!r} denied by rule {decision.rule!r}",
                )
