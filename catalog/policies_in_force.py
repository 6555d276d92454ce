"""The policy files a process runs on, built once from the settings and passed down: the product map
(products.yaml), the governance rules' knobs (rules.yaml), the PII name rules (classification.yaml), and
whether the rules run on the ingest path. Each file view follows its file's mtime (hot reload) and
reloads on `POST /api/v1/policy/reload`.

The app keeps one on `app.state.policies`; the CLI commands build theirs from their settings. It lives at
the top of the package, beside `config.py`, because it gathers views of three domains (policy, findings,
classification): none of them imports another through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from catalog.classification.rules import ReloadingRuleSet
from catalog.config import Settings
from catalog.findings.config import ReloadingRulesConfig
from catalog.findings.rules import RULE_NAMES
from catalog.policy.files import resolve_dir
from catalog.policy.products import ReloadingProductMap


@dataclass(frozen=True, slots=True)
class Policies:
    directory: Path
    products: ReloadingProductMap
    rules: ReloadingRulesConfig
    classification: ReloadingRuleSet
    # Governance rules evaluated in each ingest batch; off, only `catalog scan` evaluates them. Product
    # assignment (a policy fact) runs with the projection either way.
    findings_incremental: bool = True

    @classmethod
    def load(cls, directory: Path | None = None, *, findings_incremental: bool = True) -> Policies:
        """Read every file of `directory` (None: `$CATALOG_POLICIES_DIR`, else the shipped `policies/`);
        a missing or broken file fails here, when the process starts."""
        where = resolve_dir(directory)
        return cls(
            directory=where,
            products=ReloadingProductMap(where / "products.yaml"),
            rules=ReloadingRulesConfig(where / "rules.yaml", RULE_NAMES),
            classification=ReloadingRuleSet(where / "classification.yaml"),
            findings_incremental=findings_incremental,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Policies:
        return cls.load(settings.policies_dir, findings_incremental=settings.findings_incremental)
