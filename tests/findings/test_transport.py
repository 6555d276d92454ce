"""The plaintext-transport judgement of the design's rule table, one URI at a time."""

from __future__ import annotations

import pytest

from catalog.findings.config import Transport, judge_transport, load_rules
from catalog.findings.rules import RULE_NAMES
from catalog.policy import files

TRANSPORT: Transport = load_rules(files.DEFAULT_DIR / "rules.yaml", RULE_NAMES).transport


@pytest.mark.parametrize(
    ("uri", "plaintext"),
    [
        ("postgres://payments-db-1.internal:5432/payments?sslmode=verify-full", False),
        ("postgresql://payments-db-1.internal:5432/payments?sslmode=require", False),
        ("postgres://payments-db-1.internal:5432/payments?sslmode=disable", True),
        ("postgres://payments-db-1.internal:5432/payments?sslmode=prefer", True),
        ("postgres://payments-db-1.internal:5432/payments?sslmode=allow", True),
        ("postgres://payments-db-1.internal:5432/payments", True),
        ("mysql://merchant-db-1.internal:3306/merchant", True),
        ("mysql://merchant-db-1.internal:3306/merchant?ssl-mode=REQUIRED", False),
        ("jdbc:postgresql://payments-db-1.internal:5432/payments", True),
        ("jdbc:postgresql://payments-db-1.internal:5432/payments?ssl=true", False),
        ("jdbc:postgresql://payments-db-1.internal:5432/payments?sslmode=require", False),
        ("jdbc:mysql://merchant-db-1.internal:3306/merchant?useSSL=true", False),
        ("kafka://payments-kafka.internal:9093?security.protocol=PLAINTEXT", True),
        ("kafka://payments-kafka.internal:9093?security.protocol=SASL_PLAINTEXT", True),
        ("kafka://payments-kafka.internal:9093?security.protocol=SASL_SSL", False),
        ("kafka://payments-kafka.internal:9092", True),
        ("http://partner.example.com/api", True),
        ("https://partner.example.com/api", False),
        ("ftp://files.example.com/drop", True),
        ("sftp://files.example.com/drop", False),
        ("redis://cache.internal:6379", True),
        ("rediss://cache.internal:6380", False),
    ],
)
def test_plaintext_transports_are_recognised(uri: str, plaintext: bool) -> None:
    verdict = judge_transport(uri, TRANSPORT)
    assert verdict is not None
    assert verdict.plaintext is plaintext, verdict.reason


@pytest.mark.parametrize("uri", ["bigquery", "file", "kafka://payments-kafka.internal:9093"])
def test_uris_without_a_judgeable_transport_are_left_alone(uri: str) -> None:
    verdict = judge_transport(uri, TRANSPORT)
    assert verdict is None or not verdict.plaintext
