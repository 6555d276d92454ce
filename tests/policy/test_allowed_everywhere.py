"""`PolicyEnforcer.allowed_everywhere` (whose events does a key speak for, may it read every product's
internals): kept between requests, it must give what deciding product by product gives, and follow
products.yaml when a product is added."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

from catalog.auth.service import Principal
from catalog.policies_in_force import Policies
from catalog.policy import files
from catalog.policy.bootstrap import create_enforcer
from catalog.policy.enforcer import UNOWNED, PolicyEnforcer

ROLES = ("admin", "auditor", "steward", "engineer", "pipeline", "monitor")
QUESTIONS = [
    ("lineage.event", "write"),
    ("catalog.internals", "read"),
    ("catalog.discover", "read"),
    ("findings", "read"),
    ("export", "read"),
    ("metrics", "read"),
]


def _enforcer(policies: Path) -> PolicyEnforcer:
    return create_enforcer(Policies.load(policies, findings_incremental=True))


def _one_by_one(enforcer: PolicyEnforcer, principal: Principal, obj: str, act: str) -> bool:
    domains = [*enforcer.products.current.products, UNOWNED]
    return all(enforcer.decide(principal, obj, act, domain).allowed for domain in domains)


def test_the_kept_answer_is_the_answer_product_by_product() -> None:
    enforcer = _enforcer(files.DEFAULT_DIR)
    products = [None, *sorted(enforcer.products.current.products)[:3]]
    answers = set()
    for role, product, (obj, act) in itertools.product(ROLES, products, QUESTIONS):
        principal = Principal(key_id="k", name="k", role=role, product=product)
        expected = _one_by_one(enforcer, principal, obj, act)
        assert enforcer.allowed_everywhere(principal, obj, act) is expected, (role, product, obj, act)
        assert enforcer.allowed_everywhere(principal, obj, act) is expected  # asked again: kept
        answers.add(expected)
    assert answers == {True, False}  # the grid holds both answers


def test_a_product_added_to_products_yaml_changes_the_answer(tmp_path: Path) -> None:
    """An engineer of the only product reads every product's internals (its own, and unowned subjects);
    once products.yaml names a second product, no longer."""
    policies = tmp_path / "policies"
    shutil.copytree(files.DEFAULT_DIR, policies)
    (policies / "products.yaml").write_text("products: [payments]\n")
    enforcer = _enforcer(policies)
    engineer = Principal(key_id="k", name="k", role="engineer", product="payments")
    assert enforcer.allowed_everywhere(engineer, "catalog.internals", "read") is True

    (policies / "products.yaml").write_text("products: [payments, fraud]\n")
    enforcer.products.reload()
    assert enforcer.allowed_everywhere(engineer, "catalog.internals", "read") is False
    assert _one_by_one(enforcer, engineer, "catalog.internals", "read") is False
