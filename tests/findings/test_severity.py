"""Default severities: one table in policies/rules.yaml, naming exactly the registry's rules, the engine
using exactly it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from catalog.findings.config import SEVERITIES, RulesConfig, bump, load_rules
from catalog.findings.rules import RULE_NAMES
from catalog.policy import files


def test_every_rule_has_the_default_the_file_gives_it() -> None:
    path = files.DEFAULT_DIR / "rules.yaml"
    table = yaml.safe_load(path.read_text(encoding="utf-8"))["severity"]
    assert set(table) == set(RULE_NAMES)
    assert load_rules(path, RULE_NAMES).severity == table
    # the design's ranking: unmasked PII leaving its boundary is never below an unencrypted transfer
    assert SEVERITIES.index(table["pii-unmasked"]) >= SEVERITIES.index(bump(table["unencrypted-transfer"]))


def test_a_rule_missing_from_the_table_is_refused(tmp_path: Path) -> None:
    data = yaml.safe_load((files.DEFAULT_DIR / "rules.yaml").read_text(encoding="utf-8"))
    del data["severity"]["pii-unmasked"]
    with pytest.raises(ValueError, match="pii-unmasked"):
        RulesConfig.parse(data, RULE_NAMES)


@pytest.mark.parametrize(("level", "match"), [("urgent", "not one of"), (None, "not one of")])
def test_an_unknown_level_is_refused(level: object, match: str) -> None:
    data = yaml.safe_load((files.DEFAULT_DIR / "rules.yaml").read_text(encoding="utf-8"))
    data["severity"]["shared-database"] = level
    with pytest.raises(ValueError, match=match):
        RulesConfig.parse(data, RULE_NAMES)


def test_an_unknown_rule_is_refused() -> None:
    data = yaml.safe_load((files.DEFAULT_DIR / "rules.yaml").read_text(encoding="utf-8"))
    data["severity"]["unencrypted-tranfser"] = "high"
    with pytest.raises(ValueError, match="unknown rules"):
        RulesConfig.parse(data, RULE_NAMES)
