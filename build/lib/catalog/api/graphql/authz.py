"""Per-field authorisation of GraphQL with the enforcer, products and grants the REST routes use.

The /graphql route itself only admits catalog users (`graphql` in routes.py); what an operation may
read is decided here, field by field, in the product domain of the dataset or job it belongs to:

- discoverable (`catalog.discover`): id, namespace, name, first/last seen, description, owners,
  product, tier of datasets and jobs; the producers/consumers/inputs/outputs of a dataset or job
  (names at the dataset/job level, as lineage graph nodes are).
- internals (`catalog.internals`): a dataset's fields, versions, facets and source URI; a job's facets
  and runs; a run; a lineage or column-lineage graph rooted at a node. Another product's internals
  need a grant on the dataset (the REST rule: `enforcer.decide(..., resource=dataset:<ns>/<name>)`).

How a denial shows (one rule throughout): a field that asks for one object's internals resolves to
null with a GraphQL error whose extensions are `{code: "FORBIDDEN", rule, domain, object, action}` —
the GraphQL form of REST's 403 problem+json; the object's discoverable fields in the same query are
still answered. Inside a result made of many products' nodes (a search, a lineage graph rooted at a
readable node) the unreadable parts are omitted instead: a search leaves out fields of datasets the
caller may not read, a column-lineage graph shows another product's columns only as their dataset
(field null) and leaves out the edges that dataset's own column lineage declares.

A read allowed only through a masked-columns-only grant (`Decision.masked`) redacts the dataset's
columns holding unmasked PII (catalog/policy/masking.py, `redactions`): `Dataset.fields`/`field` list
them with `masked: true` and null type and description, versions and facets leave their details out,
and column lineage hides their hops.

Decisions are made in Python: the products of the datasets and jobs a request touches are loaded
through one DataLoader (one statement per batch), and not at all when the caller may read internals
in every product (auditor, admin). A denial is recorded like REST's (`record_denial`), once per
request and rule, not once per row of a page.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from strawberry.dataloader import DataLoader

from catalog.api.graphql.errors import UserError
from catalog.auth.service import Principal
from catalog.policy import service
from catalog.policy.enforcer import GLOBAL, UNOWNED, Decision, PolicyEnforcer, dataset_object
from catalog.policy.masking import DatasetKey, column_keys, column_texts, columns_as_seen, is_redacted
from catalog.policy.products import ProductMap

DISCOVER = "catalog.discover"
INTERNALS = "catalog.internals"
READ = "read"
WRITE = "write"
PATH = "/graphql"  # what access_denials.path holds for a GraphQL denial (REST: the request path)

ProductKey = tuple[str, str, str]  # kind ('dataset' | 'job'), namespace, name


class Forbidden(UserError):
    """A denied field: the caller sees which rule denied, as REST's problem+json says."""

    code = "FORBIDDEN"

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.describe())
        self.decision = decision

    def extensions(self) -> dict[str, Any]:
        return {
            **super().extensions(),
            "rule": self.decision.rule,
            "domain": self.decision.domain,
            "object": self.decision.obj,
            "action": self.decision.act,
        }


class Authorizer:
    """One request's authorisation: the caller, the enforcer, and the product loader."""

    def __init__(
        self,
        *,
        principal: Principal | None,
        enforcer: PolicyEnforcer | None,
        engine: AsyncEngine,
        products: DataLoader[ProductKey, str | None],
        pii_columns: DataLoader[tuple[str, str], frozenset[str]] | None = None,
        dataset_paths: DataLoader[str, tuple[str, str] | None] | None = None,
    ) -> None:
        self.principal = principal
        self.enforcer = enforcer
        self._engine = engine
        self._stored = products
        self._pii_columns = pii_columns
        self._dataset_paths = dataset_paths
        self._everywhere: dict[str, bool] = {}
        self._recorded: set[tuple[str, str, str]] = set()

    @property
    def product_map(self) -> ProductMap | None:
        return self.enforcer.products.current if self.enforcer is not None else None

    async def product(self, kind: str, namespace: str, name: str) -> str:
        """The product of a dataset/job, as REST finds it (stored assignment, else the patterns)."""
        products = self.product_map
        if products is None:
            return UNOWNED
        stored = await self._stored.load((kind, namespace, name))
        return service.resolve_product(products, kind, namespace, name, stored)

    def tier(self, namespace: str) -> str | None:
        products = self.product_map
        return products.namespace(namespace)[1] if products is not None else None

    def _reads_everywhere(self, enforcer: PolicyEnforcer, principal: Principal, obj: str) -> bool:
        """May the caller read `obj` in every product's domain (and where none is known)? Then no
        product needs to be looked up. Memoised per request (the enforcer memoises each decision)."""
        known = self._everywhere.get(obj)
        if known is None:
            domains = [*sorted(enforcer.products.current.products), UNOWNED]
            known = all(enforcer.decide(principal, obj, READ, d).allowed for d in domains)
            self._everywhere[obj] = known
        return known

    async def decide(self, kind: str, namespace: str, name: str, obj: str = INTERNALS) -> Decision | None:
        """The decision on reading `obj` of a dataset/job; None when the caller may read it anywhere."""
        if self.enforcer is None:
            return None  # no policy configured: REST lets everything through too
        if self.principal is None:
            # GraphQL only executes authenticated POSTs; fail closed should that ever change.
            return Decision(False, "default-deny", "anonymous", GLOBAL, obj, READ)
        if self._reads_everywhere(self.enforcer, self.principal, obj):
            return None
        product = await self.product(kind, namespace, name)
        resource = dataset_object(namespace, name) if kind == "dataset" else None
        return self.enforcer.decide(self.principal, obj, READ, product, resource=resource)

    async def allows(self, kind: str, namespace: str, name: str, obj: str = INTERNALS) -> bool:
        """For omitting what the caller may not read from a many-product result (denial recorded)."""
        decision = await self.decide(kind, namespace, name, obj)
        if decision is None or decision.allowed:
            return True
        await self._record(decision)
        return False

    async def require(self, kind: str, namespace: str, name: str, obj: str = INTERNALS) -> None:
        """For a field asking for one object's internals: raise Forbidden (denial recorded)."""
        decision = await self.decide(kind, namespace, name, obj)
        if decision is None or decision.allowed:
            return
        await self._record(decision)
        raise Forbidden(decision)

    async def require_product(self, product: str, obj: str = INTERNALS) -> None:
        """For a field asking for one product's internals as a whole (the PII inventory of `product`,
        REST's `product` domain): raise Forbidden (denial recorded)."""
        if self.enforcer is None:
            return
        if self.principal is None:
            decision = Decision(False, "default-deny", "anonymous", GLOBAL, obj, READ)
        else:
            decision = self.enforcer.decide(self.principal, obj, READ, product)
        if decision.allowed:
            return
        await self._record(decision)
        raise Forbidden(decision)

    async def require_write(self, namespace: str, name: str, obj: str) -> None:
        """For a mutation on a dataset: `obj` write in the dataset's product domain, as REST decides a
        body-dataset route (grants give reads only); raise Forbidden (denial recorded)."""
        if self.enforcer is None:
            return
        if self.principal is None:
            decision = Decision(False, "default-deny", "anonymous", GLOBAL, obj, WRITE)
        else:
            product = await self.product("dataset", namespace, name)
            decision = self.enforcer.decide(self.principal, obj, WRITE, product)
        if decision.allowed:
            return
        await self._record(decision)
        raise Forbidden(decision)

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def redactions(self, namespace: str, name: str) -> frozenset[str]:
        """The columns of a readable dataset to redact for the caller: those holding unmasked PII when
        the read is allowed only through a masked-columns-only grant (catalog/policy/masking.py), else
        none. Batched: one statement for every masked dataset of the request (the `pii_columns` loader)."""
        decision = await self.decide("dataset", namespace, name)
        if decision is None or not decision.allowed or not decision.masked or self._pii_columns is None:
            return frozenset()
        return await self._pii_columns.load((namespace, name))

    async def columns_as_seen(self, value: Any) -> Any:
        """`value` (a propagation path, …) with every column it names that the caller may not see —
        of a dataset whose internals it may not read, or one a masked-columns-only grant redacts —
        shown as its dataset only: REST's `ColumnsView` rule (catalog/policy/masking.py)."""
        if self.enforcer is None:
            return value
        if self.principal is not None and self._reads_everywhere(self.enforcer, self.principal, INTERNALS):
            return value
        texts = sorted(column_texts(value))
        keys = column_keys(value)
        if not texts and not keys:
            return value
        found = await self._dataset_paths.load_many(texts) if self._dataset_paths is not None else []
        datasets = {t: k for t, k in zip(texts, found, strict=True) if k is not None}
        wanted = sorted(keys | set(datasets.values()))
        readable = await asyncio.gather(*(self.allows("dataset", ns, name) for ns, name in wanted))
        redacted = await asyncio.gather(*(self.redactions(ns, name) for ns, name in wanted))
        hidden = {k for k, ok in zip(wanted, readable, strict=True) if not ok}
        sensitive = dict(zip(wanted, redacted, strict=True))

        def shown(key: DatasetKey, field: str) -> bool:
            return key not in hidden and not is_redacted(field, sensitive.get(key, frozenset()))

        return columns_as_seen(value, shown, datasets)

    async def _record(self, decision: Decision) -> None:
        """Keep the denial, once per request and rule (a page of 100 denied rows is one denial)."""
        key = (decision.rule, decision.obj, decision.act)
        if key in self._recorded or self.principal is None:
            return
        self._recorded.add(key)  # before the await: concurrent resolvers of the page see it
        await service.record_denial(self._engine, self.principal, decision, PATH)
