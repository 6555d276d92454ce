"""One request's authorisation, for REST and GraphQL alike: every decision through the enforcer.

An `Authoriser` is made per request (REST: the `Requires` dependency, catalog/api/rest/requires.py;
GraphQL: the request's context) and holds what deciding needs beyond the enforcer:

- the domain lookup: the product a dataset, job, namespace, run or node belongs to (stored assignment,
  else the patterns of products.yaml);
- the internals scope: which datasets/jobs of a many-product result the caller may read the internals
  of (`catalog.internals`) and which only discover, with the columns a masked-columns-only grant
  redacts (catalog/policy/masking.py);
- event authorisation for ingest (every event in its job's product domain);
- denials, recorded once per request and rule (a page of 100 denied rows is one denial).

A denial raises `AccessDenied` (catalog/policy/service.py): REST answers it 403 problem+json naming the
rule, GraphQL as a FORBIDDEN error on the field. The lookups that read other domains' tables (PII
columns, dataset paths, node ids) are handed in (`Lookups`), so this module imports no other domain.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from catalog.auth.service import Principal
from catalog.openlineage.events import OpenLineageEvent
from catalog.policy import service
from catalog.policy.enforcer import GLOBAL, Decision, PolicyEnforcer, dataset_object
from catalog.policy.masking import DatasetKey, column_keys, column_texts, columns_as_seen, is_redacted
from catalog.policy.products import ProductMap
from catalog.policy.scopes import DatasetRef

DISCOVER = "catalog.discover"
INTERNALS = "catalog.internals"
READ = "read"
WRITE = "write"

ProductKey = tuple[str, str, str]  # kind ('dataset' | 'job'), namespace, name
K = TypeVar("K", bound=Hashable, contravariant=True)
V = TypeVar("V", covariant=True)


class NodeRef(Protocol):
    """A Marquez node id found in the catalog (catalog/lineage/service.py `resolve_node_id`)."""

    @property
    def kind(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Lookups:
    """Set-based reads of other domains' tables that deciding needs, each one statement."""

    # (namespace, dataset) -> its columns holding unmasked PII (what a masked-only grant redacts)
    pii_columns: Callable[
        [AsyncConnection, Sequence[DatasetKey]], Awaitable[Mapping[DatasetKey, frozenset[str]]]
    ]
    # `<namespace>/<name>` texts (column paths' datasets) -> the stored dataset they name
    dataset_paths: Callable[[AsyncConnection, Iterable[str]], Awaitable[Mapping[str, DatasetKey]]]
    # a Marquez node id -> the stored dataset or job it names (namespaces contain ':')
    node: Callable[[AsyncConnection, str], Awaitable[NodeRef | None]]


class Loader(Protocol, Generic[K, V]):
    """A request's batching loader (GraphQL's DataLoader): per-item reads, one statement per batch."""

    def load(self, key: K) -> Awaitable[V]: ...
    def load_many(self, keys: Iterable[K]) -> Awaitable[Sequence[V]]: ...


class ItemLoaders(Protocol):
    """The loaders per-item decisions go through (GraphQL resolvers decide one object at a time)."""

    @property
    def products(self) -> Loader[ProductKey, str | None]: ...
    @property
    def pii_columns(self) -> Loader[DatasetKey, frozenset[str]]: ...
    @property
    def dataset_paths(self) -> Loader[str, DatasetKey | None]: ...


@dataclass(frozen=True, slots=True)
class InternalsScope:
    """What the caller may see of the internals of many datasets in one many-product result (a PII
    inventory, a decisions list, a lineage graph, a PII flow). `hidden`: datasets whose internals the
    caller may not read (their parts are left out, or shown only by name); `redacted`: columns to redact
    of datasets read through a masked-columns-only grant. `everything`: the caller may read internals in
    every product (auditor, admin) — nothing to filter."""

    hidden: frozenset[DatasetKey] = frozenset()
    redacted: dict[DatasetKey, frozenset[str]] = field(default_factory=dict)
    everything: bool = False

    def shows(self, key: DatasetKey) -> bool:
        return key not in self.hidden

    def sensitive(self, key: DatasetKey) -> frozenset[str]:
        return self.redacted.get(key, frozenset())


EVERYTHING = InternalsScope(everything=True)


@dataclass(frozen=True, slots=True)
class ColumnsView:
    """The caller's view of the columns a result names in passing — a finding's evidence, a
    classification's propagation path: the `InternalsScope` rule per named column; one it may not see
    shows as its dataset (catalog/policy/masking.py `columns_as_seen`)."""

    scope: InternalsScope
    datasets: Mapping[str, DatasetKey]

    def shown(self, key: DatasetKey, field: str) -> bool:
        return self.scope.shows(key) and not is_redacted(field, self.scope.sensitive(key))

    def __call__(self, value: Any) -> Any:
        return value if self.scope.everything else columns_as_seen(value, self.shown, self.datasets)


def anonymous_denial(obj: str, act: str) -> Decision:
    return Decision(False, "default-deny", "anonymous", GLOBAL, obj, act)


class Authoriser:
    """One request's authorisation: the caller, the enforcer, the lookups, and the denials recorded."""

    def __init__(
        self,
        *,
        principal: Principal | None,
        enforcer: PolicyEnforcer,
        engine: AsyncEngine,
        path: str,
        lookups: Lookups,
        loaders: ItemLoaders | None = None,
    ) -> None:
        self.principal = principal
        self.enforcer = enforcer
        self.engine = engine
        self.path = path  # what access_denials.path holds (REST: the request path; GraphQL: /graphql)
        self._lookups = lookups
        self._loaders = loaders
        self._recorded: set[tuple[str, str, str]] = set()
        # The route's own decision (REST): a read allowed only through a masked-only grant redacts.
        self.route_decision: Decision | None = None

    # -- deciding and recording --------------------------------------------------------------------------

    @property
    def products(self) -> ProductMap:
        return self.enforcer.products.current

    def decide(
        self, obj: str, act: str, domain: str | None, *, resource: DatasetRef | None = None
    ) -> Decision:
        if self.principal is None:
            # Every entry point authenticates first; fail closed should that ever change.
            return anonymous_denial(obj, act)
        return self.enforcer.decide(self.principal, obj, act, domain or GLOBAL, resource=resource)

    async def require(
        self,
        obj: str,
        act: str,
        domain: str | None,
        *,
        resource: DatasetRef | None = None,
        detail: str | None = None,
    ) -> Decision:
        """Allow, or record the denial and raise AccessDenied naming the rule."""
        decision = self.decide(obj, act, domain, resource=resource)
        if not decision.allowed:
            await self.record(decision)
            raise service.AccessDenied(decision, detail)
        return decision

    async def record(self, decision: Decision) -> None:
        """Keep a denial, once per request and rule."""
        key = (decision.rule, decision.obj, decision.act)
        if key in self._recorded or self.principal is None:
            return
        self._recorded.add(key)  # before the await: concurrent resolvers of a page see it
        await service.record_denial(self.engine, self.principal, decision, self.path)

    def allowed_everywhere(self, obj: str = INTERNALS, act: str = READ) -> bool:
        """May the caller do `act` on `obj` in every product's domain and where none is known (auditor,
        admin)? Then no product needs to be looked up."""
        if self.principal is None:
            return False
        return self.enforcer.allowed_everywhere(self.principal, obj, act)

    def own_product(self) -> str:
        """The caller's own product as a domain (`global` for a key without one)."""
        return (self.principal.product if self.principal else None) or GLOBAL

    # -- domain lookup: which product a resource belongs to ----------------------------------------------

    def namespace_product(self, namespace: str) -> str:
        return service.namespace_product(self.products, namespace)

    def tier(self, namespace: str) -> str | None:
        return self.products.namespace(namespace)[1]

    async def dataset_product(self, namespace: str, name: str) -> str:
        async with self.engine.connect() as conn:
            return await service.dataset_product(conn, self.products, namespace, name)

    async def job_product(self, namespace: str, name: str) -> str:
        async with self.engine.connect() as conn:
            return await service.job_product(conn, self.products, namespace, name)

    async def run_product(self, run_id: uuid.UUID) -> str:
        async with self.engine.connect() as conn:
            return await service.run_product(conn, run_id)

    async def decision_product(self, decision_id: int) -> str | None:
        """The product of the dataset a classification decision is about; None: no such decision."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT namespace, dataset FROM classification_decisions WHERE id = :id"),
                    {"id": decision_id},
                )
            ).first()
            if row is None:
                return None
            return await service.dataset_product(conn, self.products, row.namespace, row.dataset)

    async def node_domain(self, node_id: str | None) -> tuple[str, DatasetRef | None]:
        """(product, grant object) of a Marquez node id, found in the catalog as the lineage reads find
        it (namespaces contain ':', so only the stored names tell where the namespace ends). A field is
        judged as its dataset. Unknown nodes fall back to the patterns (the handler answers 404)."""
        if not node_id or "\x00" in node_id:
            return service.node_product(self.products, node_id)
        async with self.engine.connect() as conn:
            ref = await self._lookups.node(conn, node_id)
            if ref is None:
                return service.node_product(self.products, node_id)
            if ref.kind == "job":
                return await service.job_product(conn, self.products, ref.namespace, ref.name), None
            owner = await service.dataset_product(conn, self.products, ref.namespace, ref.name)
        return owner, dataset_object(ref.namespace, ref.name)

    async def product(self, kind: str, namespace: str, name: str) -> str:
        """The product of one dataset/job, batched through the request's loader when it has one."""
        if self._loaders is None:
            async with self.engine.connect() as conn:
                stored = (await service.stored_products(conn, [(kind, namespace, name)])).get(
                    (kind, namespace, name)
                )
        else:
            stored = await self._loaders.products.load((kind, namespace, name))
        return service.resolve_product(self.products, kind, namespace, name, stored)

    # -- one object at a time (GraphQL fields) -----------------------------------------------------------

    async def read_decision(
        self, kind: str, namespace: str, name: str, obj: str = INTERNALS
    ) -> Decision | None:
        """The decision on reading `obj` of a dataset/job; None when the caller may read it anywhere."""
        if self.principal is None:
            return anonymous_denial(obj, READ)
        if self.allowed_everywhere(obj):
            return None
        product = await self.product(kind, namespace, name)
        resource = dataset_object(namespace, name) if kind == "dataset" else None
        return self.decide(obj, READ, product, resource=resource)

    async def allows(self, kind: str, namespace: str, name: str, obj: str = INTERNALS) -> bool:
        """For omitting what the caller may not read from a many-product result (denial recorded)."""
        decision = await self.read_decision(kind, namespace, name, obj)
        if decision is None or decision.allowed:
            return True
        await self.record(decision)
        return False

    async def require_read(self, kind: str, namespace: str, name: str, obj: str = INTERNALS) -> None:
        """For a field asking for one object's internals: AccessDenied (recorded) unless allowed."""
        decision = await self.read_decision(kind, namespace, name, obj)
        if decision is None or decision.allowed:
            return
        await self.record(decision)
        raise service.AccessDenied(decision)

    async def require_product(self, product: str, obj: str = INTERNALS) -> None:
        """For a field asking for one product's internals as a whole (the PII inventory of `product`)."""
        await self.require(obj, READ, product)

    async def require_write(self, namespace: str, name: str, obj: str) -> None:
        """`obj` write in a dataset's product domain (grants give reads only)."""
        product = await self.product("dataset", namespace, name) if self.principal else None
        await self.require(obj, WRITE, product)

    async def redacted_columns(self, namespace: str, name: str) -> frozenset[str]:
        """The columns of a readable dataset to redact for the caller: those holding unmasked PII when
        the read is allowed only through a masked-columns-only grant, else none (batched loader)."""
        decision = await self.read_decision("dataset", namespace, name)
        if decision is None or not decision.allowed or not decision.masked or self._loaders is None:
            return frozenset()
        return await self._loaders.pii_columns.load((namespace, name))

    async def columns_as_seen(self, value: Any) -> Any:
        """`value` (a propagation path, …) with every column the caller may not see shown as its dataset
        only: the `ColumnsView` rule, decided per dataset through the request's loaders."""
        if self.principal is not None and self.allowed_everywhere():
            return value
        texts = sorted(column_texts(value))
        keys = column_keys(value)
        if not texts and not keys:
            return value
        found = await self._loaders.dataset_paths.load_many(texts) if self._loaders is not None else []
        datasets = {t: k for t, k in zip(texts, found, strict=True) if k is not None}
        wanted = sorted(keys | set(datasets.values()))
        readable = await asyncio.gather(*(self.allows("dataset", ns, name) for ns, name in wanted))
        redacted = await asyncio.gather(*(self.redacted_columns(ns, name) for ns, name in wanted))
        hidden = frozenset(k for k, ok in zip(wanted, readable, strict=True) if not ok)
        return ColumnsView(InternalsScope(hidden, dict(zip(wanted, redacted, strict=True))), datasets)(value)

    # -- many objects at once (REST results), set-based --------------------------------------------------

    @property
    def masked_route(self) -> bool:
        """Was the route's read allowed only through a masked-columns-only grant?"""
        return self.route_decision is not None and self.route_decision.masked

    async def route_redactions(
        self, conn: AsyncConnection, keys: Iterable[DatasetKey]
    ) -> dict[DatasetKey, frozenset[str]]:
        """For a read allowed through a masked-columns-only grant (`masked_route`): the columns to redact
        of each dataset among `keys` the caller may not read in full. Two statements whatever the
        number of datasets; none when the read was not masked."""
        if not self.masked_route:
            return {}
        wanted = sorted(set(keys))
        decisions = await self._dataset_decisions(conn, wanted)
        partial = [k for k in wanted if not decisions[k].allowed or decisions[k].masked]
        return dict(await self._lookups.pii_columns(conn, partial)) if partial else {}

    async def internals_scope(
        self, conn: AsyncConnection | None, keys: Iterable[DatasetKey]
    ) -> InternalsScope:
        """The `InternalsScope` of the caller over the datasets `keys`: one statement for their stored
        products and one for the PII columns of the masked-granted ones, none for auditor/admin. `conn`
        None: a connection of the engine (handlers holding a raw asyncpg connection)."""
        if self.allowed_everywhere():
            return EVERYTHING
        wanted = sorted(set(keys))
        if not wanted:
            return InternalsScope()
        if conn is None:
            async with self.engine.connect() as own:
                return await self._internals_scope(own, wanted)
        return await self._internals_scope(conn, wanted)

    async def _internals_scope(self, conn: AsyncConnection, wanted: list[DatasetKey]) -> InternalsScope:
        decisions = await self._dataset_decisions(conn, wanted)
        hidden = frozenset(k for k in wanted if not decisions[k].allowed)
        masked = [k for k in wanted if decisions[k].allowed and decisions[k].masked]
        redacted = dict(await self._lookups.pii_columns(conn, masked)) if masked else {}
        for key in sorted(hidden):
            await self.record(decisions[key])
        return InternalsScope(hidden=hidden, redacted=redacted)

    async def _dataset_decisions(
        self, conn: AsyncConnection, wanted: Sequence[DatasetKey]
    ) -> dict[DatasetKey, Decision]:
        stored = await service.stored_products(conn, [("dataset", ns, name) for ns, name in wanted])
        decisions = {}
        for ns, name in wanted:
            owner = service.resolve_product(
                self.products, "dataset", ns, name, stored.get(("dataset", ns, name))
            )
            decisions[(ns, name)] = self.decide(INTERNALS, READ, owner, resource=dataset_object(ns, name))
        return decisions

    async def columns_view(self, conn: AsyncConnection | None, values: Iterable[Any]) -> ColumnsView:
        """The `ColumnsView` over every column `values` name: one statement resolves the `ns/name` texts
        to datasets, then `internals_scope` decides them all; nothing for auditor/admin."""
        if self.allowed_everywhere():
            return ColumnsView(EVERYTHING, {})
        texts: set[str] = set()
        keys: set[DatasetKey] = set()
        for value in values:
            texts |= column_texts(value)
            keys |= column_keys(value)
        if not texts and not keys:
            return ColumnsView(InternalsScope(), {})
        if conn is None:
            async with self.engine.connect() as own:
                return await self._columns_view(own, texts, keys)
        return await self._columns_view(conn, texts, keys)

    async def _columns_view(
        self, conn: AsyncConnection, texts: set[str], keys: set[DatasetKey]
    ) -> ColumnsView:
        datasets = dict(await self._lookups.dataset_paths(conn, texts)) if texts else {}
        scope = await self.internals_scope(conn, keys | set(datasets.values()))
        return ColumnsView(scope, datasets)

    async def hidden_jobs(
        self, conn: AsyncConnection, keys: Iterable[tuple[str, str]]
    ) -> frozenset[tuple[str, str]]:
        """The (namespace, name) among `keys` of jobs whose internals (facets, SQL, source location, runs)
        the caller may not read; grants name datasets, so only the job's product decides. One
        statement for all of them, none for auditor/admin."""
        if self.allowed_everywhere():
            return frozenset()
        wanted = sorted(set(keys))
        if not wanted:
            return frozenset()
        stored = await service.stored_products(conn, [("job", ns, name) for ns, name in wanted])
        hidden: set[tuple[str, str]] = set()
        for ns, name in wanted:
            owner = service.resolve_product(self.products, "job", ns, name, stored.get(("job", ns, name)))
            decision = self.decide(INTERNALS, READ, owner)
            if not decision.allowed:
                hidden.add((ns, name))
                await self.record(decision)
        return frozenset(hidden)

    # -- ingest ------------------------------------------------------------------------------------------

    def emitting_product(self) -> str | None:
        """The product an event sent by the caller speaks for, stored with it: None for a key the policy
        lets ingest in every product (admin), which acts for every product as the operator's CLI does;
        else its product, "" for a key without one (it speaks for nobody's datasets)."""
        if self.allowed_everywhere("lineage.event", WRITE):
            return None
        return (self.principal.product if self.principal else None) or ""

    async def require_events(self, events: Sequence[OpenLineageEvent]) -> None:
        """Every event's job must be in a product the caller may ingest for. One denied event refuses
        the whole request (nothing is stored), naming the event and the rule."""
        for index, event in enumerate(events):
            for product in sorted(service.event_products(self.products, event)):
                decision = self.decide("lineage.event", WRITE, product)
                if decision.allowed:
                    continue
                await self.record(decision)
                role, own = (self.principal.role, self.principal.product) if self.principal else ("", None)
                raise service.AccessDenied(
                    decision,
                    f"event {index}: job {event.job_namespace}/{event.job_name} belongs to product "
                    f"{product!r}; {role} key of product {own!r} denied by rule {decision.rule!r}",
                )
