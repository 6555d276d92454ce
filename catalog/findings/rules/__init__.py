"""The registry of governance rules: the one list the engine runs, rules.yaml is checked against, the API
offers as the `rule` filter, and resolution is derived from.

Adding a rule (README, "How it is built"): write `async def my_rule(scope: Scope) -> list[Finding]` in
the family module it belongs to (or a new one), add one `Rule` line below, its severity to
`policies/rules.yaml`, and its tests. A rule judged at two grains (a dataset and its columns) is two
entries with one name.
"""

from __future__ import annotations

from catalog.findings.rules.base import Finding, Grain, Rule, Scope
from catalog.findings.rules.credentials import credentials_in_metadata
from catalog.findings.rules.databases import analytics_on_oltp, shared_database
from catalog.findings.rules.lineage import pii_unmasked, unlineaged_dataset, unlineaged_pii_column
from catalog.findings.rules.ownership import ownership_conflict
from catalog.findings.rules.transfers import cross_product_access, unencrypted_transfer

# Rules judged per flow are resolved through their job: every flow of a job in scope is judged whole, so an
# open finding that no longer fires is one whose own job fixed it (or stopped using the dataset) — never
# one hidden by another job's newer event. (Any event that changes a flow names its job; judging every
# flow of a dataset on each batch touching it would cost most on the most-read tables.) pii-unmasked is
# judged per target dataset, on each job's latest column lineage into it.
REGISTRY: tuple[Rule, ...] = (
    Rule("unencrypted-transfer", unencrypted_transfer, resolved_per=("job",)),
    Rule("unlineaged-transfer", unlineaged_dataset, resolved_per=("dataset",)),
    Rule("unlineaged-transfer", unlineaged_pii_column, resolved_per=("dataset",)),
    Rule("cross-product-access", cross_product_access, resolved_per=("job",)),
    Rule("shared-database", shared_database, resolved_per=("namespace",)),
    Rule("analytics-on-oltp", analytics_on_oltp, resolved_per=("job",)),
    Rule("pii-unmasked", pii_unmasked, resolved_per=("dataset",)),
    Rule("credentials-in-metadata", credentials_in_metadata, resolved_per=()),
    Rule("ownership-conflict", ownership_conflict, resolved_per=("dataset", "job")),
)

# Each rule name once, in registry order.
RULE_NAMES: tuple[str, ...] = tuple(dict.fromkeys(rule.name for rule in REGISTRY))


def resolved_per(grain: Grain) -> list[str]:
    """The rules whose open findings of a scope's subjects of this grain are resolved when they no longer
    fire."""
    return list(dict.fromkeys(rule.name for rule in REGISTRY if grain in rule.resolved_per))


__all__ = ["REGISTRY", "RULE_NAMES", "Finding", "Grain", "Rule", "Scope", "resolved_per"]
