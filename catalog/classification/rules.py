"""PII name rules: load them from `classification.yaml` and match field names and types against them.

Pure Python, no I/O beyond loading the YAML (and a stat a second to follow edits): the hot path calls
`RuleSet.match` for the fields a batch touched. The matching algorithm is described at the top of the YAML
file, next to the rules. The service reads the file from the policies directory (`CATALOG_POLICIES_DIR`,
see catalog/policy/files.py); `default_rules()` is the repository's copy, which the labelled lists score.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from catalog.reloading import ReloadingFile

DEFAULT_RULES_PATH = Path(__file__).resolve().parents[1] / "policies" / "classification.yaml"

# camelCase / PascalCase / acronym runs / digit runs, applied to one alphanumeric chunk at a time.
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_CHUNK = re.compile(r"[A-Za-z0-9]+")


def tokenize(name: str) -> tuple[str, ...]:
    """`cpfCliente` -> (cpf, cliente); `data_nascimento` -> (data, nascimento); `endereço.CEP` -> (endereco, cep)."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return tuple(word.lower() for chunk in _CHUNK.findall(plain) for word in _WORD.findall(chunk) if word)


@dataclass(frozen=True, slots=True)
class Rule:
    tag: str
    category: str
    confidence: float
    patterns: tuple[tuple[str, ...], ...]
    unless: frozenset[str] = frozenset()
    context: frozenset[str] = frozenset()
    # patterns that count only as the whole name: a bare `ag` is a bank branch, `ag_publicidade` is not
    alone: tuple[tuple[str, ...], ...] = ()
    # token sequences of the field's *type* that are enough on their own: `geography(Point,4326)`
    types: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True, slots=True)
class Detection:
    """One rule that fired on one name."""

    tag: str
    category: str
    confidence: float
    rule: str  # the tag and the pattern that matched, e.g. "PII.CPF:cpf" (kept as evidence)
    span: tuple[int, int]  # token positions [start, end) the pattern covered


def _find(tokens: Sequence[str], pattern: Sequence[str]) -> int:
    """Index of the first contiguous occurrence of `pattern` in `tokens`, or -1."""
    n = len(pattern)
    for i in range(len(tokens) - n + 1):
        if tuple(tokens[i : i + n]) == tuple(pattern):
            return i
    return -1


MEMO_SIZE = 65536


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...]
    negative_tokens: frozenset[str]
    negative_types: frozenset[str]
    # (name, type) -> what `match` found, for this rule set (a reload makes a new one): the same column
    # names recur across thousands of datasets. Not an lru_cache keyed by the rule set: hashing a frozen
    # rule set walks every rule, on every call (10 % of the projector's Python time, py-spy).
    _memo: dict[tuple[str, str | None], tuple[tuple[str, str, float, str], ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def detections(self, name: str, field_type: str | None) -> tuple[tuple[str, str, float, str], ...]:
        """`match` as (tag, category, confidence, rule) tuples, remembered per (name, type)."""
        key = (name, field_type)
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            found = tuple((d.tag, d.category, d.confidence, d.rule) for d in self.match(name, field_type))
            self._memo[key] = found
        return found

    def match(self, name: str, field_type: str | None = None) -> list[Detection]:
        """Every tag the name (a dotted field path) and type indicate; [] when none or vetoed."""
        if field_type is not None and field_type.strip().lower() in self.negative_types:
            return []
        tokens = tokenize(name)
        if not tokens:
            return []
        type_tokens = tokenize(field_type) if field_type else ()
        found: dict[str, Detection] = {}
        for rule in self.rules:
            best: Detection | None = None
            for pattern in rule.alone:
                if tokens == pattern:
                    best = Detection(
                        rule.tag,
                        rule.category,
                        rule.confidence,
                        f"{rule.tag}:{' '.join(pattern)}",
                        (0, len(tokens)),
                    )
            for pattern in rule.patterns:
                start = _find(tokens, pattern)
                if start < 0:
                    continue
                end = start + len(pattern)
                rest = set(tokens[:start]) | set(tokens[end:])
                if rest & self.negative_tokens or rest & rule.unless:
                    continue
                if rule.context and not rest & rule.context:
                    continue
                if best is None or end - start > best.span[1] - best.span[0]:
                    best = Detection(
                        rule.tag,
                        rule.category,
                        rule.confidence,
                        f"{rule.tag}:{' '.join(pattern)}",
                        (start, end),
                    )
            if best is None and rule.types and not set(tokens) & (self.negative_tokens | rule.unless):
                # The type says what the column holds whatever it is called; the name can still say it is
                # a derived form (location_hash). An empty span: it overlaps no name match.
                for pattern in rule.types:
                    if _find(type_tokens, pattern) >= 0:
                        best = Detection(
                            rule.tag,
                            rule.category,
                            rule.confidence,
                            f"{rule.tag}:type {' '.join(pattern)}",
                            (0, 0),
                        )
                        break
            if best is not None:
                current = found.get(rule.tag)
                if current is None or best.confidence > current.confidence:
                    found[rule.tag] = best
        return _drop_subsumed(list(found.values()))


def _drop_subsumed(detections: list[Detection]) -> list[Detection]:
    """ip_address: the IP rule's span `ip address` contains the address rule's `address`: keep the longer."""

    def inside(a: Detection, b: Detection) -> bool:
        return (
            a.span[0] < a.span[1]  # a match on the type covers no tokens and is never subsumed
            and b.span[0] <= a.span[0]
            and a.span[1] <= b.span[1]
            and (b.span[1] - b.span[0]) > (a.span[1] - a.span[0])
        )

    return sorted(
        (d for d in detections if not any(inside(d, other) for other in detections if other is not d)),
        key=lambda d: d.tag,
    )


def _token(value: Any) -> str:
    # YAML 1.1 reads a bare `no`, `on`, `yes`, `off` as a boolean: [card, no] would silently become
    # ("card", "false") and never match card_no. Refuse it; quoted ('no') it is a token.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"token {value!r} is not a word (quote YAML words such as 'no' and 'on')")
    return str(value).lower()


def _tokens(values: Iterable[Any]) -> frozenset[str]:
    return frozenset(_token(v) for v in values)


def _patterns(raw: Any) -> tuple[tuple[str, ...], ...]:
    """A list of token sequences; each token lower-cased (the matcher compares tokenised, lower-case names)."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(p, list) and p for p in raw):
        raise ValueError("patterns are lists of non-empty token lists, e.g. [[card, number], [pan]]")
    return tuple(tuple(_token(t) for t in p) for p in raw)


def parse_rules(document: dict[str, Any]) -> RuleSet:
    """Build a RuleSet from the YAML document's structure (validated loosely: a bad file fails loudly)."""
    rules = []
    for i, raw in enumerate(document.get("rules") or []):
        try:
            patterns = _patterns(raw.get("patterns"))
            alone = _patterns(raw.get("alone"))
            types = _patterns(raw.get("types"))
            if not (patterns or alone or types):
                raise ValueError("it needs `patterns`, `alone` or `types`")
            rules.append(
                Rule(
                    tag=str(raw["tag"]),
                    category=str(raw["category"]),
                    confidence=float(raw["confidence"]),
                    patterns=patterns,
                    unless=_tokens(raw.get("unless") or []),
                    context=_tokens(raw.get("context") or []),
                    alone=alone,
                    types=types,
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"classification rule #{i} is malformed: {exc!r}") from exc
        if not 0 < rules[-1].confidence <= 1:
            raise ValueError(f"classification rule #{i} ({rules[-1].tag}): confidence must be in (0, 1]")
    return RuleSet(
        rules=tuple(rules),
        negative_tokens=_tokens(document.get("negative_tokens") or []),
        negative_types=_tokens(document.get("negative_types") or []),
    )


def load_rules(path: Path | None = None) -> RuleSet:
    """Read a rules file (the packaged `catalog/policies/classification.yaml` by default); a file that is not
    valid YAML or not a valid rules document raises ValueError naming it."""
    path = path or DEFAULT_RULES_PATH
    with path.open(encoding="utf-8") as fh:
        try:
            document = yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path.name} is not valid YAML: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError(f"{path.name}: the classification rules file must be a mapping")
    try:
        return parse_rules(document)
    except ValueError as exc:
        raise ValueError(f"{path.name}: {exc}") from None


class ReloadingRuleSet(ReloadingFile[RuleSet]):
    """classification.yaml, following its file (catalog/reloading.py)."""

    def __init__(self, path: Path, *, interval: float = 1.0) -> None:
        super().__init__(path, load_rules, interval=interval)


@functools.cache
def default_rules() -> RuleSet:
    """The repository's rules, loaded once per process (the file is policy shipped with the code)."""
    return load_rules()
