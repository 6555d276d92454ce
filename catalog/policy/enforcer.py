"""The one enforcement point: a pycasbin enforcer (RBAC with product domains) over policies/ and grants.

`PolicyEnforcer.decide(principal, obj, act, domain)` answers every question the service asks — a REST
route, a GraphQL field, an ingested event — and says which rule decided. The enforcer is rebuilt (not
mutated) when products.yaml or the grants change, and swapped in one assignment, so a decision never
sees a half-loaded policy. Decisions are memoised per policy generation: the ingest path asks the same
(subject, domain, object, action) for every event of a batch.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import casbin
from casbin.model import Model

from catalog.auth.service import Principal
from catalog.policy.products import ReloadingProductMap
from catalog.policy.scopes import DatasetRef, GrantScope

log = logging.getLogger("catalog.policy")

ROLES_IN_PRODUCTS = ("pipeline", "engineer", "steward")
# `monitor` is CATALOG_METRICS_TOKEN's role (catalog/auth/service.py): it reads /metrics, nothing else.
GLOBAL_ROLES = ("auditor", "admin", "monitor")
GLOBAL = "global"  # the domain of a request that touches no product's resource
UNOWNED = "unowned"  # the domain of a resource no product is mapped to
# Roles that may read another product's internals through a grant.
GRANTEE_ROLES = ("engineer", "steward")


@dataclass(frozen=True, slots=True)
class GrantRule:
    """A live grant as the enforcer sees it: `grantee` may read the datasets of `grantor` that `scope`
    covers (catalog/policy/scopes.py)."""

    id: int
    grantor: str
    grantee: str
    scope: GrantScope
    masked_only: bool

    @property
    def obj(self) -> str:
        """The grant's Casbin object: the policy line lets `product:<grantee>` use this grant."""
        return f"grant:{self.id}"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    rule: str  # the policy rule (or grant) that decided; "default-deny" when none matched
    subject: str
    domain: str
    obj: str
    act: str
    masked: bool = False  # allowed only through a masked-columns-only grant

    def describe(self) -> str:
        verdict = "allowed" if self.allowed else "denied"
        return (
            f"{verdict} by rule {self.rule!r}: {self.subject} may not {self.act} {self.obj} in domain {self.domain!r}"
            if not self.allowed
            else f"{verdict} by rule {self.rule!r}"
        )


def subject_of(principal: Principal) -> str:
    """The Casbin subject of a principal: `<role>@<product>` (`*` for no product)."""
    return f"{principal.role}@{principal.product or '*'}"


def dataset_object(namespace: str, name: str | None) -> DatasetRef:
    """The resource a read of one dataset (name None: of every dataset of a namespace) asks a grant for."""
    return DatasetRef(namespace, name)


def _obj_match(request_obj: str, policy_obj: str) -> bool:
    # Objects of policy.csv are dotted names (`catalog.*`) matched as globs; a grant's object is its id
    # (`grant:<id>`), matched exactly: which datasets a grant covers is decided structurally by
    # `GrantScope.covers`, never by a glob over a "namespace/name" string (namespaces contain '/').
    return request_obj == policy_obj or fnmatch.fnmatchcase(request_obj, policy_obj)


def read_policy_csv(path: Path) -> list[list[str]]:
    """p lines of policy.csv (comments and blank lines skipped)."""
    rows = []
    for row in csv.reader(io.StringIO(path.read_text(encoding="utf-8")), skipinitialspace=True):
        if not row or row[0].strip().startswith("#"):
            continue
        cells = [c.strip() for c in row]
        if cells[0] != "p" or len(cells) != 7:
            raise ValueError(f"policy.csv: expected `p, sub, dom, obj, act, eft, rule`; got {row!r}")
        rows.append(cells[1:])
    return rows


def role_links(products: Iterable[str]) -> list[list[str]]:
    """g lines: each product role is itself in its product's domain and `<role>:other` elsewhere."""
    products = sorted(products)
    domains = [*products, UNOWNED, GLOBAL]
    links: list[list[str]] = []
    for product in products:
        for role in ROLES_IN_PRODUCTS:
            subject = f"{role}@{product}"
            for domain in domains:
                if domain == product:
                    links.append([subject, role, domain])
                elif domain == UNOWNED:
                    links.append([subject, f"{role}:unowned", domain])
                else:
                    links.append([subject, f"{role}:other", domain])
                    if role in GRANTEE_ROLES and domain != GLOBAL:
                        links.append([subject, f"product:{product}", domain])
    for role in GLOBAL_ROLES:
        links.extend([f"{role}@*", role, domain] for domain in domains)
    return links


class _QuietModel(Model):  # type: ignore[misc]
    """pycasbin prints the whole model at INFO each time an enforcer is built (six lines at start,
    more at every reload): configuration an operator does not act on. Logged at DEBUG instead."""

    def print_model(self) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "casbin model: %s",
                "; ".join(f"{k}.{i}: {j.value}" for k, v in self.items() for i, j in v.items()),
            )


def build_enforcer(model_path: Path, policy: Sequence[list[str]], links: Sequence[list[str]]) -> Any:
    model = _QuietModel()
    model.load_model(str(model_path))
    enforcer = casbin.Enforcer(model)
    enforcer.enable_auto_save(False)
    enforcer.add_function("globMatch", _obj_match)
    if policy:
        enforcer.add_named_policies("p", [list(r) for r in policy])
    if links:
        enforcer.add_named_grouping_policies("g", [list(r) for r in links])
    return enforcer


class PolicyEnforcer:
    """The enforcer of one process: base policy from files, products from products.yaml, grants from the DB."""

    def __init__(self, policies_dir: Path, products: ReloadingProductMap) -> None:
        self.policies_dir = policies_dir
        self.products = products
        self._grants: tuple[GrantRule, ...] = ()
        self._products_seen = products.current
        self._cache: dict[tuple[str, str, str, str], Decision] = {}
        self._everywhere: dict[tuple[str, str, str], bool] = {}
        self._enforcer, self._by_grantor = self._build()

    @property
    def grants(self) -> tuple[GrantRule, ...]:
        return self._grants

    def _build(self) -> tuple[Any, dict[str, tuple[GrantRule, ...]]]:
        """A Casbin enforcer over policy.csv and the grants, and the grants by grantor product."""
        policy = read_policy_csv(self.policies_dir / "policy.csv")
        for grant in self._grants:
            act = "read-masked" if grant.masked_only else "read"
            policy.append(
                [f"product:{grant.grantee}", grant.grantor, grant.obj, act, "allow", f"grant:{grant.id}"]
            )
        by_grantor: dict[str, list[GrantRule]] = defaultdict(list)
        # Full grants first: a caller holding both a full and a masked-only grant reads in full.
        for grant in sorted(self._grants, key=lambda g: (g.masked_only, g.id)):
            by_grantor[grant.grantor].append(grant)
        enforcer = build_enforcer(
            self.policies_dir / "model.conf", policy, role_links(self._products_seen.products)
        )
        return enforcer, {k: tuple(v) for k, v in by_grantor.items()}

    def rebuild(self) -> None:
        """Re-read policy.csv and the product list; swap the new enforcer in at once."""
        self._products_seen = self.products.current
        enforcer, by_grantor = self._build()
        self._enforcer, self._by_grantor, self._cache = enforcer, by_grantor, {}
        self._everywhere = {}

    def set_grants(self, grants: Iterable[GrantRule]) -> None:
        self._grants = tuple(grants)
        self.rebuild()

    def _follow_products(self) -> None:
        """Rebuild (clearing what is kept) when products.yaml changed since the last build."""
        if self.products.current is not self._products_seen:
            self.rebuild()

    def _check(self, subject: str, domain: str, obj: str, act: str) -> Decision:
        key = (subject, domain, obj, act)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        self._follow_products()
        allowed, explain = self._enforcer.enforce_ex(subject, domain, obj, act)
        rule = explain[5] if explain and len(explain) > 5 else "default-deny"
        decision = Decision(bool(allowed), rule, subject, domain, obj, act)
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[key] = decision
        return decision

    def allowed_everywhere(self, principal: Principal, obj: str, act: str) -> bool:
        """May `principal` do `act` on `obj` in every product's domain and where none is known (auditor,
        admin)? Kept with the decisions until the policy or the products change: every ingest asks it
        (whose events does the key speak for), and a decision per product each time was 3 % of a
        single-event ingest's CPU (py-spy, a dozen products)."""
        self._follow_products()
        subject = subject_of(principal)
        key = (subject, obj, act)
        known = self._everywhere.get(key)
        if known is None:
            domains = [*sorted(self._products_seen.products), UNOWNED]
            known = all(self._check(subject, domain, obj, act).allowed for domain in domains)
            self._everywhere[key] = known  # bounded: subjects are roles x products
        return known

    def decide(
        self,
        principal: Principal,
        obj: str,
        act: str,
        domain: str | None,
        *,
        resource: DatasetRef | None = None,
    ) -> Decision:
        """May `principal` do `act` on `obj` in product `domain`? A denied read of another product's
        `resource` (a dataset, or every dataset of a namespace) is retried against the grants of that
        product that cover it (`GrantScope.covers`), each checked through Casbin (the grantee's roles)."""
        subject = subject_of(principal)
        decision = self._check(subject, domain or UNOWNED, obj, act)
        if decision.allowed or resource is None or act != "read":
            return decision
        for grant in self._by_grantor.get(decision.domain, ()):
            if not grant.scope.covers(resource):
                continue
            via_grant = self._check(
                subject, decision.domain, grant.obj, "read-masked" if grant.masked_only else "read"
            )
            if via_grant.allowed:
                return Decision(
                    True, via_grant.rule, subject, decision.domain, obj, act, masked=grant.masked_only
                )
        return decision
