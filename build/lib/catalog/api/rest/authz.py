"""REST authorisation: every route's request goes through the enforcer via `require_principal`.

The route's (object, action) and the source of its product domain come from the central table in
`catalog/policy/routes.py`, looked up by the route's method and path template; a denial answers 403
problem+json naming the rule and is recorded in `access_denials`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
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
from catalog.lineage.service import resolve_dataset_paths, resolve_node_id
from catalog.openlineage.events import OpenLineageEvent
from catalog.policy import service
from catalog.policy.enforcer import GLOBAL, UNOWNED, Decision, PolicyEnforcer, dataset_object
from catalog.policy.grants import grant_product
from catalog.policy.masking import DatasetKey, column_keys, column_texts, columns_as_seen, is_redacted
from catalog.policy.products import ProductMap
from catalog.policy.routes import RoutePolicy, route_policy
from catalog.policy.scopes import DatasetRef


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


async def _domain(
    request: Request, principal: Principal, policy: RoutePolicy
) -> tuple[str, DatasetRef | None]:
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
        return service.namespace_product(products, namespace), dataset_object(namespace, None)
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


async def _node_domain(request: Request, products: ProductMap) -> tuple[str, DatasetRef | None]:
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


@dataclass(frozen=True, slots=True)
class InternalsScope:
    """What the caller may see of the internals of many datasets in one many-product result (a PII
    inventory, a decisions list, a lineage graph, a PII flow): the same rule as GraphQL's `allows` /
    `redactions` (catalog/api/graphql/authz.py). `hidden`: datasets whose internals the caller may not
    read (their parts are left out, or shown only by name); `redacted`: columns to redact of datasets
    read through a masked-columns-only grant (catalog/policy/masking.py). `everything`: the caller may
    read internals in every product (auditor, admin; no policy configured) — nothing to filter."""

    hidden: frozenset[DatasetKey] = frozenset()
    redacted: dict[DatasetKey, frozenset[str]] = field(default_factory=dict)
    everything: bool = False

    def shows(self, key: DatasetKey) -> bool:
        return key not in self.hidden

    def sensitive(self, key: DatasetKey) -> frozenset[str]:
        return self.redacted.get(key, frozenset())


EVERYTHING = InternalsScope(everything=True)


def reads_internals_everywhere(request: Request) -> bool:
    """May the caller read `catalog.internals` in every product's domain and where none is known? Then
    no dataset of a result needs its product looked up (auditor, admin; or no policy configured)."""
    enforcer: PolicyEnforcer | None = getattr(request.app.state, "enforcer", None)
    if enforcer is None:
        return True
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        return False
    domains = [*sorted(enforcer.products.current.products), UNOWNED]
    return all(enforcer.decide(principal, "catalog.internals", "read", d).allowed for d in domains)


async def internals_scope(
    request: Request, conn: AsyncConnection | None, keys: Iterable[DatasetKey]
) -> InternalsScope:
    """The `InternalsScope` of the caller over the datasets `keys`, set-based: one statement for the
    stored products of all of them and one for the PII columns of the masked-granted ones, none for
    auditor/admin. `conn` None: a connection of the app's engine is used (handlers holding a raw asyncpg
    connection). A denial that hides something is recorded once per request and rule, as GraphQL does."""
    if reads_internals_everywhere(request):
        return EVERYTHING
    wanted = sorted(set(keys))
    if not wanted:
        return InternalsScope()
    if conn is None:
        async with request.app.state.engine.connect() as own:
            return await _internals_scope(request, own, wanted)
    return await _internals_scope(request, conn, wanted)


async def _internals_scope(
    request: Request, conn: AsyncConnection, wanted: list[DatasetKey]
) -> InternalsScope:
    enforcer: PolicyEnforcer = request.app.state.enforcer
    principal: Principal = request.state.principal
    products = enforcer.products.current
    stored = await service.stored_products(conn, [("dataset", ns, name) for ns, name in wanted])
    hidden: set[DatasetKey] = set()
    masked: list[DatasetKey] = []
    denials: dict[tuple[str, str, str], Decision] = {}
    for ns, name in wanted:
        owner = service.resolve_product(products, "dataset", ns, name, stored.get(("dataset", ns, name)))
        decision = enforcer.decide(
            principal, "catalog.internals", "read", owner, resource=dataset_object(ns, name)
        )
        if not decision.allowed:
            hidden.add((ns, name))
            denials.setdefault((decision.rule, decision.obj, decision.act), decision)
        elif decision.masked:
            masked.append((ns, name))
    redacted = await unmasked_pii_columns(conn, masked) if masked else {}
    for decision in denials.values():
        await service.record_denial(request.app.state.engine, principal, decision, request.url.path)
    return InternalsScope(hidden=frozenset(hidden), redacted=redacted)


@dataclass(frozen=True, slots=True)
class ColumnsView:
    """The caller's view of the columns a result names in passing — a finding's evidence, a
    classification's propagation path: the lineage reads' rule (`InternalsScope`) per named column;
    one it may not see shows as its dataset (catalog/policy/masking.py `columns_as_seen`)."""

    scope: InternalsScope
    datasets: Mapping[str, DatasetKey]

    def shown(self, key: DatasetKey, field: str) -> bool:
        return self.scope.shows(key) and not is_redacted(field, self.scope.sensitive(key))

    def __call__(self, value: Any) -> Any:
        return value if self.scope.everything else columns_as_seen(value, self.shown, self.datasets)


async def columns_view(request: Request, conn: AsyncConnection | None, values: Iterable[Any]) -> ColumnsView:
    """The `ColumnsView` over every column `values` name, set-based: one statement resolves the
    `ns/name` texts to datasets, then `internals_scope` decides them all; nothing for auditor/admin."""
    if reads_internals_everywhere(request):
        return ColumnsView(EVERYTHING, {})
    texts: set[str] = set()
    keys: set[DatasetKey] = set()
    for value in values:
        texts |= column_texts(value)
        keys |= column_keys(value)
    if not texts and not keys:
        return ColumnsView(InternalsScope(), {})
    if conn is None:
        async with request.app.state.engine.connect() as own:
            return await _columns_view(request, own, texts, keys)
    return await _columns_view(request, conn, texts, keys)


async def _columns_view(
    request: Request, conn: AsyncConnection, texts: set[str], keys: set[DatasetKey]
) -> ColumnsView:
    datasets = await resolve_dataset_paths(conn, texts) if texts else {}
    scope = await internals_scope(request, conn, keys | set(datasets.values()))
    return ColumnsView(scope, datasets)


async def hidden_jobs(
    request: Request, conn: AsyncConnection, keys: Iterable[tuple[str, str]]
) -> frozenset[tuple[str, str]]:
    """The (namespace, name) among `keys` of jobs whose internals (facets, SQL, source location, runs)
    the caller may not read — GraphQL's rule for `Job.facets`/`runs`; grants name datasets, so only the
    job's product decides. One statement for all of them, none for auditor/admin; a denial is recorded
    once per request and rule."""
    if reads_internals_everywhere(request):
        return frozenset()
    wanted = sorted(set(keys))
    if not wanted:
        return frozenset()
    enforcer: PolicyEnforcer = request.app.state.enforcer
    principal: Principal = request.state.principal
    products = enforcer.products.current
    stored = await service.stored_products(conn, [("job", ns, name) for ns, name in wanted])
    hidden: set[tuple[str, str]] = set()
    denials: dict[tuple[str, str, str], Decision] = {}
    for ns, name in wanted:
        owner = service.resolve_product(products, "job", ns, name, stored.get(("job", ns, name)))
        decision = enforcer.decide(principal, "catalog.internals", "read", owner)
        if not decision.allowed:
            hidden.add((ns, name))
            denials.setdefault((decision.rule, decision.obj, decision.act), decision)
    for decision in denials.values():
        await service.record_denial(request.app.state.engine, principal, decision, request.url.path)
    return frozenset(hidden)


async def authorize(
    request: Request,
    principal: Principal,
    obj: str,
    act: str,
    product: str | None,
    *,
    resource: DatasetRef | None = None,
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
