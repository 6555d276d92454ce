"""The knobs of the governance rules (`policies/rules.yaml`) and the pure judgements built on them (the
rules themselves are in catalog/findings/rules/).

`judge_transport(uri)` says whether a connection URI can carry data in plaintext, following the design's
rule table: http/ftp/redis and other plaintext schemes; Kafka PLAINTEXT/SASL_PLAINTEXT; PostgreSQL and
MySQL without a TLS requirement (sslmode absent or disable/allow/prefer); `jdbc:` URLs without
`ssl=true`/`sslmode=require`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

from catalog.reloading import ReloadingFile

SEVERITIES = ("low", "medium", "high", "critical")


def bump(severity: str) -> str:
    """One level up (PII involved); critical stays critical."""
    index = SEVERITIES.index(severity)
    return SEVERITIES[min(index + 1, len(SEVERITIES) - 1)]


@dataclass(frozen=True, slots=True)
class Transport:
    plaintext_schemes: frozenset[str]
    encrypted_schemes: frozenset[str]
    postgres_schemes: frozenset[str]
    mysql_schemes: frozenset[str]
    tls_sslmodes: frozenset[str]
    tls_mysql_modes: frozenset[str]
    kafka_schemes: frozenset[str]
    kafka_plaintext_protocols: frozenset[str]
    kafka_tls_protocols: frozenset[str]
    kafka_plaintext_ports: frozenset[int]


@dataclass(frozen=True, slots=True)
class RulesConfig:
    severity: dict[str, str]
    pii_bump: bool
    transport: Transport
    analytics_integrations: tuple[str, ...]
    analytics_name_patterns: tuple[str, ...]
    produced_tiers: tuple[str, ...]
    # The product whose steward sees a finding when neither its subject nor the flow's other end (job or
    # dataset) belongs to any product; None keeps such (rare) findings for admins and auditors only.
    fallback_product: str | None = None
    _compiled: list[re.Pattern[str]] = field(default_factory=list, compare=False)

    @classmethod
    def parse(cls, data: dict[str, Any], rules: Sequence[str]) -> RulesConfig:
        """The file's knobs; `rules` are the registry's rule names (catalog/findings/rules/), each of which
        the severity table must name."""
        t = data.get("transport") or {}

        def words(key: str, upper: bool = False) -> frozenset[str]:
            return frozenset((str(v).upper() if upper else str(v).lower()) for v in t.get(key) or [])

        # The file's table is the only source of default severities: a rule it leaves out would otherwise
        # get a silent default, which is how pii-unmasked once ranked below every unencrypted transfer.
        table = data.get("severity") or {}
        if not isinstance(table, dict):
            raise ValueError("rules.yaml: severity must be a mapping of rule to level")
        unknown = sorted(set(map(str, table)) - set(rules))
        if unknown:
            raise ValueError(
                f"rules.yaml: severity names unknown rules {unknown}; the rules are {tuple(rules)}"
            )
        missing = [rule for rule in rules if rule not in table]
        if missing:
            raise ValueError(f"rules.yaml: severity has no entry for {missing}")
        severity: dict[str, str] = {}
        for rule, level in table.items():
            if level not in SEVERITIES:
                raise ValueError(f"rules.yaml: severity {level!r} of {rule} is not one of {SEVERITIES}")
            severity[str(rule)] = str(level)
        fallback = data.get("fallback_product")
        analytics = data.get("analytics") or {}
        return cls(
            severity=severity,
            pii_bump=bool(data.get("pii_bump", True)),
            transport=Transport(
                plaintext_schemes=words("plaintext_schemes"),
                encrypted_schemes=words("encrypted_schemes"),
                postgres_schemes=words("postgres_schemes"),
                mysql_schemes=words("mysql_schemes"),
                tls_sslmodes=words("tls_sslmodes"),
                tls_mysql_modes=words("tls_mysql_modes", upper=True),
                kafka_schemes=words("kafka_schemes"),
                kafka_plaintext_protocols=words("kafka_plaintext_protocols", upper=True),
                kafka_tls_protocols=words("kafka_tls_protocols", upper=True),
                kafka_plaintext_ports=frozenset(int(p) for p in t.get("kafka_plaintext_ports") or []),
            ),
            analytics_integrations=tuple(str(i).upper() for i in analytics.get("integrations") or []),
            analytics_name_patterns=tuple(str(p) for p in analytics.get("name_patterns") or []),
            produced_tiers=tuple((data.get("unlineaged") or {}).get("produced_tiers") or ["analytics"]),
            fallback_product=str(fallback) if fallback else None,
        )


def load_rules(path: Path, rules: Sequence[str]) -> RulesConfig:
    with path.open(encoding="utf-8") as handle:
        try:
            data = yaml.safe_load(handle) or {}
        except yaml.YAMLError as exc:  # the reload endpoint answers 422 for a ValueError
            raise ValueError(f"rules.yaml is not valid YAML: {exc}") from exc
    return RulesConfig.parse(data, rules)


@dataclass(frozen=True, slots=True)
class Verdict:
    plaintext: bool
    reason: str


_KAFKA_PROTOCOL_KEYS = ("security.protocol", "securityprotocol", "security_protocol", "protocol")


def _params(query: str) -> dict[str, str]:
    # JDBC URLs also put properties after ';' (SQL Server style) — treat both separators alike.
    return {k.lower(): v for k, v in parse_qsl(query.replace(";", "&"), keep_blank_values=True)}


def judge_transport(uri: str, transport: Transport) -> Verdict | None:
    """Plaintext or not, with the reason; None when the URI names no network transport we can judge."""
    text = uri.strip()
    lowered = text.lower()
    if lowered.startswith("jdbc:"):
        rest = text[5:]
        inner = rest.split(":", 1)[0].lower()
        query = rest.split("?", 1)[1] if "?" in rest else ""
        if ";" in rest and not query:
            query = rest.split(";", 1)[1]
        params = _params(query)
        ssl = params.get("ssl", "").lower() == "true" or params.get("usessl", "").lower() == "true"
        sslmode = params.get("sslmode", "").lower()
        if ssl or sslmode in transport.tls_sslmodes or params.get("encrypt", "").lower() == "true":
            return Verdict(False, f"jdbc:{inner} requires TLS")
        return Verdict(True, f"jdbc:{inner} URL without ssl=true or sslmode=require")
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not scheme or not parts.netloc:
        return None
    params = _params(parts.query)
    if scheme in transport.postgres_schemes:
        mode = params.get("sslmode", "").lower()
        if mode in transport.tls_sslmodes:
            return Verdict(False, f"sslmode={mode}")
        return Verdict(True, f"sslmode={mode}" if mode else "no sslmode: TLS is not required")
    if scheme in transport.mysql_schemes:
        mode = (params.get("ssl-mode") or params.get("sslmode") or params.get("ssl_mode") or "").upper()
        if mode in transport.tls_mysql_modes or params.get("ssl", "").lower() == "true":
            return Verdict(False, f"ssl-mode={mode or 'true'}")
        return Verdict(True, f"ssl-mode={mode}" if mode else "no ssl-mode: TLS is not required")
    if scheme in transport.kafka_schemes:
        protocol = next((params[k].upper() for k in _KAFKA_PROTOCOL_KEYS if k in params), "")
        if protocol in transport.kafka_plaintext_protocols:
            return Verdict(True, f"Kafka security protocol {protocol}")
        if protocol in transport.kafka_tls_protocols:
            return Verdict(False, f"Kafka security protocol {protocol}")
        try:
            port = parts.port
        except ValueError:
            port = None
        if port in transport.kafka_plaintext_ports:
            return Verdict(True, f"Kafka on plaintext port {port} with no security protocol")
        return None
    if scheme in transport.plaintext_schemes:
        return Verdict(True, f"{scheme}:// is a plaintext transport")
    if scheme in transport.encrypted_schemes:
        return Verdict(False, f"{scheme}:// is encrypted")
    return None


def is_analytics_job(config: RulesConfig, namespace: str, name: str, integration: str | None) -> bool:
    """A BI/analytics job: by its jobType integration, or its namespace/name (rules.yaml)."""
    if integration is not None and integration.upper() in config.analytics_integrations:
        return True
    if not config._compiled and config.analytics_name_patterns:
        config._compiled.extend(re.compile(p, re.IGNORECASE) for p in config.analytics_name_patterns)
    return any(p.search(namespace) or p.search(name) for p in config._compiled)


class ReloadingRulesConfig(ReloadingFile[RulesConfig]):
    """rules.yaml, following its file (catalog/reloading.py), checked against the registered rule names."""

    def __init__(self, path: Path, rules: Sequence[str], *, interval: float = 1.0) -> None:
        names = tuple(rules)
        super().__init__(path, lambda p: load_rules(p, names), interval=interval)
