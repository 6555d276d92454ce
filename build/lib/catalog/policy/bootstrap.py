"""Build a process's enforcer from the settings (the app factory and the CLI share this)."""

from __future__ import annotations

from catalog.config import Settings
from catalog.findings.service import SWITCH
from catalog.policy import files
from catalog.policy.enforcer import PolicyEnforcer


def create_enforcer(settings: Settings) -> PolicyEnforcer:
    """Point the policy files at `settings.policies_dir` and load the base policy (grants come later)."""
    files.configure(settings.policies_dir)
    # The ingest path reads classification.yaml lazily; read it now so a missing or broken file stops the
    # start instead of the first batch.
    files.classification_file()
    SWITCH.incremental = settings.findings_incremental
    return PolicyEnforcer(files.policies_dir(), files.product_map())
