"""Build a process's enforcer from its policies (the app factory and the CLI share this)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from catalog.policy.enforcer import PolicyEnforcer

if TYPE_CHECKING:
    from catalog.policies_in_force import Policies


def create_enforcer(policies: Policies) -> PolicyEnforcer:
    """Load the base policy (policy.csv, model.conf, products.yaml's roles); grants come later."""
    return PolicyEnforcer(policies.directory, policies.products)
