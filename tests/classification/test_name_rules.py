"""The matcher's mechanisms beyond a token pattern: whole-name patterns (`alone`), patterns on the field's
type (`types`), and the YAML words that would otherwise be read as booleans."""

from __future__ import annotations

from typing import Any

import pytest

from catalog.classification.rules import default_rules, parse_rules


def tags(name: str, field_type: str | None = "VARCHAR") -> list[str]:
    return [d.tag for d in default_rules().match(name, field_type)]


def test_an_alone_pattern_counts_only_as_the_whole_name() -> None:
    assert tags("ag") == ["PII.BANK_ACCOUNT"]
    assert tags("AG") == ["PII.BANK_ACCOUNT"]
    assert tags("titular") == ["PII.NAME"]
    # inside a longer name it is no longer the branch or the holder's name
    assert tags("ag_publicidade") == []
    assert tags("cpf_titular") == ["PII.CPF"]


def test_a_point_type_is_a_position_whatever_the_column_is_called() -> None:
    [detection] = default_rules().match("location", "geography(Point,4326)")
    assert (detection.tag, detection.rule) == ("PII.GEOLOCATION", "PII.GEOLOCATION:type geography point")
    assert tags("pos", "point") == ["PII.GEOLOCATION"]
    # a region's outline is not a person's position; a hashed position is not the position
    assert tags("store_area", "geometry(MultiPolygon,4326)") == []
    assert tags("location_hash", "geography(Point,4326)") == []
    # matched by the type, it is not dropped beside a name match that starts at the same token
    assert tags("address", "geography(Point,4326)") == ["PII.ADDRESS", "PII.GEOLOCATION"]


def test_yaml_words_read_as_booleans_are_quoted_in_the_rules_and_refused_unquoted() -> None:
    # `[card, no]` unquoted was the pattern ("card", "false"): card_no never matched
    assert tags("card_no") == ["PCI.PAN"]
    assert tags("born_on", "DATE") == ["PII.BIRTH_DATE"]
    with pytest.raises(ValueError, match="quote YAML words"):
        parse_rules(
            {"rules": [{"tag": "PCI.PAN", "category": "c", "confidence": 0.9, "patterns": [["card", False]]}]}
        )
    with pytest.raises(ValueError, match="quote YAML words"):
        parse_rules({"negative_tokens": [True], "rules": []})


@pytest.mark.parametrize(
    "rule",
    [
        {"tag": "PII.X", "category": "c", "confidence": 0.9},
        {"tag": "PII.X", "category": "c", "confidence": 0.9, "patterns": [[]]},
        {"tag": "PII.X", "category": "c", "confidence": 0.9, "patterns": ["card"]},
        {"tag": "PII.X", "category": "c", "confidence": 0.9, "types": "point"},
    ],
)
def test_a_rule_needs_well_formed_patterns(rule: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="rule #0"):
        parse_rules({"rules": [rule]})
