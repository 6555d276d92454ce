"""Which product owns a namespace, dataset or job, and the tier of a namespace (`policies/products.yaml`).

The mapping is data: ordered regular expressions, first match wins per list. Precedence: the file
first (name pattern, then namespace pattern); an ownership facet places only what the file does not —
for a dataset, only a claim sent by a key of the product it names (or by a key acting for every
product), the first such claim in log order winning. Sources that disagree are all kept as candidates
so a conflict is reported (`ownership-conflict`) instead of silently resolved, and changes nobody's
product. The file is re-read when its mtime changes (checked at most once a second), so an edit takes
effect without a restart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from catalog.reloading import ReloadingFile

TIERS = ("oltp", "analytics", "stream", "file", "api")

# The emitter of a claim sent by a key acting for every product (admin, the operator's CLI, events logged
# before emitters were recorded): such a claim may place a dataset for any product.
ANY_EMITTER = "*"


@dataclass(frozen=True, slots=True)
class NamespaceRule:
    pattern: re.Pattern[str]
    tier: str | None
    product: str | None


@dataclass(frozen=True, slots=True)
class NameRule:
    namespace: re.Pattern[str]
    name: re.Pattern[str]
    product: str | None


@dataclass(frozen=True, slots=True)
class Claim:
    """An owner an ownership facet named for a dataset, by the product of the key that sent it."""

    owner: str  # the owner's name as sent (`team:fraud`)
    emitter: str  # the emitting key's product, or ANY_EMITTER
    first_logged: int  # event-log id of the first event that made it: claims place in log order


@dataclass(frozen=True, slots=True)
class ClaimVerdict:
    """What one claim naming a product amounted to, for findings' evidence and the audit log."""

    owner: str
    product: str
    emitter: str
    accepted: bool  # it is the claim that placed the dataset
    first_logged: int = 0  # the event-log id of the first event that made it (0: before it was recorded)

    def as_json(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "product": self.product,
            "sent_by": None if self.emitter == ANY_EMITTER else self.emitter,
            "accepted": self.accepted,
            "event_log_id": self.first_logged,
        }


@dataclass(frozen=True, slots=True)
class Assignment:
    """The product (and tier, for namespaces) a subject maps to, with every candidate that was seen."""

    product: str | None
    tier: str | None
    source: str | None  # 'ownership' | 'name' | 'namespace' | None
    candidates: tuple[tuple[str, str], ...] = ()  # (source, product) for every source that named one
    claims: tuple[ClaimVerdict, ...] = ()  # a dataset's ownership claims that named a product

    @property
    def conflict(self) -> bool:
        return len({p for _, p in self.candidates}) > 1


@dataclass(frozen=True, slots=True)
class ProductMap:
    """A parsed products.yaml."""

    products: frozenset[str]
    ownership_prefixes: tuple[str, ...]
    namespaces: tuple[NamespaceRule, ...]
    datasets: tuple[NameRule, ...]
    jobs: tuple[NameRule, ...]
    _ns_cache: dict[str, tuple[str | None, str | None]] = field(default_factory=dict, compare=False)

    @classmethod
    def parse(cls, data: dict[str, Any]) -> ProductMap:
        products = frozenset(str(p) for p in data.get("products") or [])
        prefixes = tuple(str(p) for p in (data.get("ownership") or {}).get("prefixes") or [])
        namespaces = []
        for entry in data.get("namespaces") or []:
            tier = entry.get("tier")
            if tier is not None and tier not in TIERS:
                raise ValueError(f"products.yaml: tier {tier!r} is not one of {', '.join(TIERS)}")
            namespaces.append(NamespaceRule(re.compile(entry["pattern"]), tier, entry.get("product")))
        return cls(
            products,
            prefixes,
            tuple(namespaces),
            tuple(_name_rules(data.get("datasets"))),
            tuple(_name_rules(data.get("jobs"))),
        )

    def _product(self, match: re.Match[str], fixed: str | None) -> str | None:
        captured = match.groupdict().get("product") or fixed
        return captured if captured in self.products else None

    def namespace(self, name: str) -> tuple[str | None, str | None]:
        """(product, tier) of a namespace; the first matching rule decides each."""
        cached = self._ns_cache.get(name)
        if cached is not None:
            return cached
        product: str | None = None
        tier: str | None = None
        tier_found = False
        for rule in self.namespaces:
            match = rule.pattern.fullmatch(name)
            if match is None:
                continue
            if product is None:
                product = self._product(match, rule.product)
            if not tier_found:
                tier, tier_found = rule.tier, True
            if product is not None and tier_found:
                break
        if len(self._ns_cache) < 100_000:
            self._ns_cache[name] = (product, tier)
        return product, tier

    def _by_name(self, rules: Sequence[NameRule], namespace: str, name: str) -> str | None:
        for rule in rules:
            if rule.namespace.fullmatch(namespace) is None:
                continue
            match = rule.name.fullmatch(name)
            if match is not None:
                product = self._product(match, rule.product)
                if product is not None:
                    return product
        return None

    def owner_products(self, owners: Iterable[str]) -> list[str]:
        """Products named by ownership-facet owner names (`product:payments`, `team:fraud`)."""
        found = []
        for owner in owners:
            for prefix in self.ownership_prefixes:
                if owner.startswith(prefix) and owner[len(prefix) :] in self.products:
                    found.append(owner[len(prefix) :])
        return found

    def placed(self, kind: str, namespace: str, name: str | None) -> tuple[str | None, str | None]:
        """(product, source) products.yaml alone gives a subject: its name pattern, else its namespace."""
        if name is not None:
            by_name = self._by_name(self.datasets if kind == "dataset" else self.jobs, namespace, name)
            if by_name is not None:
                return by_name, "name"
        ns_product = self.namespace(namespace)[0]
        return (ns_product, "namespace") if ns_product is not None else (None, None)

    def claimed_products(self, claim: Claim) -> list[str]:
        """The products a claim names (an owner name outside the prefixes names none)."""
        return list(dict.fromkeys(self.owner_products([claim.owner])))

    def assign(
        self,
        kind: str,
        namespace: str,
        name: str | None,
        owners: Iterable[str] = (),
        *,
        claims: Iterable[Claim] = (),
    ) -> Assignment:
        """The product of a dataset/job (`kind`) or a namespace (`name` None), with all candidates.

        products.yaml decides first. `owners` (a job's ownership facet, whose sender was authorised for
        every product it names) and `claims` (a dataset's ownership claims by emitter) place what the
        file does not: a claim only when sent by the product it names or by ANY_EMITTER, the earliest
        in log order winning."""
        ns_product, tier = self.namespace(namespace)
        candidates: list[tuple[str, str]] = []
        if name is not None:
            by_name = self._by_name(self.datasets if kind == "dataset" else self.jobs, namespace, name)
            if by_name is not None:
                candidates.append(("name", by_name))
        if ns_product is not None:
            candidates.append(("namespace", ns_product))
        placed = candidates[0] if candidates else None
        for product in dict.fromkeys(self.owner_products(owners)):
            candidates.append(("ownership", product))
            if placed is None:
                placed = ("ownership", product)
        named: list[tuple[Claim, str]] = [
            (claim, product)
            for claim in sorted(claims, key=lambda c: (c.first_logged, c.owner, c.emitter))
            for product in self.claimed_products(claim)
        ]
        placing: tuple[Claim, str] | None = None
        if placed is None:
            # The first valid claim in log order; one event naming two products places the lesser name
            # (as the ingest fold does, catalog/ingest/extract.py).
            placing = min(
                ((c, p) for c, p in named if c.emitter in (p, ANY_EMITTER)),
                key=lambda cp: (cp[0].first_logged, cp[1]),
                default=None,
            )
            if placing is not None:
                placed = ("ownership", placing[1])
        for _, product in named:
            if ("ownership", product) not in candidates:
                candidates.append(("ownership", product))
        verdicts = tuple(
            ClaimVerdict(c.owner, p, c.emitter, placing is not None and (c, p) == placing, c.first_logged)
            for c, p in named
        )
        if placed is None:
            return Assignment(None, tier, None, tuple(candidates), verdicts)
        source, product = placed
        return Assignment(product, tier, source, tuple(candidates), verdicts)


def _name_rules(entries: Any) -> Iterable[NameRule]:
    for entry in entries or []:
        yield NameRule(
            re.compile(entry.get("namespace", ".*")),
            re.compile(entry.get("name", ".*")),
            entry.get("product"),
        )


def load_product_map(path: Path) -> ProductMap:
    with path.open(encoding="utf-8") as handle:
        return ProductMap.parse(yaml.safe_load(handle) or {})


class ReloadingProductMap(ReloadingFile[ProductMap]):
    """products.yaml, following its file (catalog/reloading.py)."""

    def __init__(self, path: Path, *, interval: float = 1.0) -> None:
        super().__init__(path, load_product_map, interval=interval)
