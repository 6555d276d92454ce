"""What a rule is handed (`Scope`: the facts of the datasets and jobs being judged) and what it returns
(`Finding`: one per subject it fires on). The registry (catalog/findings/rules/__init__.py) names each
rule; the engine stamps the name and the severity from rules.yaml on what it returns."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg

from catalog.findings.assignments import Assigned
from catalog.findings.config import RulesConfig
from catalog.findings.facts import Observations, Record
from catalog.findings.subjects import Subject

# What a rule's findings are resolved through when they stop firing (see catalog/findings/engine.py).
Grain = Literal["dataset", "job", "namespace"]


@dataclass(slots=True)
class Finding:
    """One subject a rule fires on: its identity within the rule (`key`), the product whose steward sees
    it, the ids it is filed under, the evidence, and when it was last seen."""

    subject: Subject
    key: str
    product: str | None
    dataset_id: int | None
    job_id: int | None
    namespace_id: int | None
    evidence: dict[str, Any]
    seen: dt.datetime


@dataclass(slots=True)
class Scope:
    """The datasets and jobs being judged (fact rows of catalog/findings/facts.py), their products, what
    the batch observed, the rules' knobs, and the transaction to read more from."""

    raw: asyncpg.Connection[Any]
    config: RulesConfig
    datasets: Sequence[Record]
    jobs: Sequence[Record]
    assigned: Assigned
    observations: Observations = field(default_factory=Observations)
    dataset_ids: list[int] = field(init=False)
    job_ids: list[int] = field(init=False)
    namespace_ids: list[int] = field(init=False)
    datasets_by_id: dict[int, Record] = field(init=False)
    jobs_by_id: dict[int, Record] = field(init=False)

    def __post_init__(self) -> None:
        self.dataset_ids = [r["id"] for r in self.datasets]
        self.job_ids = [r["id"] for r in self.jobs]
        self.namespace_ids = sorted({r["namespace_id"] for r in self.datasets})
        self.datasets_by_id = {r["id"]: r for r in self.datasets}
        self.jobs_by_id = {r["id"]: r for r in self.jobs}

    def owned(self, *candidates: str | None) -> str | None:
        """The first product among the candidates (the subject's, then the other end's), else the fallback:
        every finding belongs to a product whose steward sees it."""
        return next((c for c in candidates if c), self.config.fallback_product)


Judge = Callable[[Scope], Awaitable[list[Finding]]]


@dataclass(frozen=True, slots=True)
class Rule:
    """A registry entry: the finding rule's name (rules.yaml's key, the API's `rule`), the function that
    judges a scope, and the grains its open findings are resolved through when they no longer fire
    (none: a finding about a past event, such as a redacted secret, stays until a person acts)."""

    name: str
    judge: Judge
    resolved_per: tuple[Grain, ...]


def run_of(value: Any) -> dict[str, Any]:
    """The evidence's `run_id` member, when there is a run."""
    return {"run_id": str(value)} if value is not None else {}


def key(*parts: Any) -> str:
    return ":".join("-" if p is None else str(p) for p in parts)
