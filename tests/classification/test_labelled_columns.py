"""Precision and recall of the name rules (policies/classification.yaml) over a labelled list of real-world-style
column names, English and Portuguese, with the hard negatives (hashes, booleans, counts, surrogate keys, kinds).

`labelled_columns.csv`: name, type, expected tags (`;`-separated, empty = not PII). Scored per (name, tag):
a tag the rules give that the label lacks is a false positive, a labelled tag they miss a false negative.
Run with `-s` to see the figures.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from catalog.classification.rules import default_rules

LABELLED = Path(__file__).with_name("labelled_columns.csv")

# Floors, not targets: the list is small enough that one regression in a rule shows up here.
MIN_PRECISION = 0.97
MIN_RECALL = 0.97
MIN_TAG_RECALL = 0.9


@dataclass(frozen=True)
class Labelled:
    name: str
    type: str | None
    expected: frozenset[str]


def load() -> list[Labelled]:
    with LABELLED.open(encoding="utf-8", newline="") as fh:
        return [
            Labelled(
                row["name"],
                row["type"] or None,
                frozenset(t.strip() for t in row["expected"].split(";") if t.strip()),
            )
            for row in csv.DictReader(fh)
        ]


def score(rows: list[Labelled]) -> tuple[Counter[str], Counter[str], Counter[str], list[str]]:
    rules = default_rules()
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    wrong: list[str] = []
    for row in rows:
        got = {d.tag for d in rules.match(row.name, row.type)}
        for tag in got & row.expected:
            tp[tag] += 1
        for tag in got - row.expected:
            fp[tag] += 1
        for tag in row.expected - got:
            fn[tag] += 1
        if got != row.expected:
            wrong.append(f"{row.name} ({row.type}): expected {sorted(row.expected)}, got {sorted(got)}")
    return tp, fp, fn, wrong


def test_the_labelled_list_is_big_varied_and_unique() -> None:
    rows = load()
    assert len(rows) >= 300
    assert len({r.name for r in rows}) == len(rows), "duplicate names skew the figures"
    negatives = [r for r in rows if not r.expected]
    assert len(negatives) >= 150
    tags = Counter(t for r in rows for t in r.expected)
    assert len(tags) >= 15, tags
    assert min(tags.values()) >= 4, tags
    portuguese = {"nome", "telefone", "endereco", "nascimento", "conta", "agencia", "chave", "cartao"}
    assert sum(1 for r in rows if any(p in r.name.lower() for p in portuguese)) >= 50


def test_the_hard_negatives_from_the_spec_are_not_pii() -> None:
    rules = default_rules()
    assert rules.match("cpf_hash", "STRING") == []
    assert rules.match("email_verified", "BOOLEAN") == []
    assert rules.match("phone_count", "INT64") == []
    assert [d.tag for d in rules.match("customer_cpf", "STRING")] == ["PII.CPF"]
    assert [d.tag for d in rules.match("cpfCliente", "STRING")] == ["PII.CPF"]
    assert [d.tag for d in rules.match("nr_cpf", "STRING")] == ["PII.CPF"]


def test_precision_and_recall_of_the_name_rules() -> None:
    rows = load()
    tp, fp, fn, wrong = score(rows)
    precision = sum(tp.values()) / (sum(tp.values()) + sum(fp.values()))
    recall = sum(tp.values()) / (sum(tp.values()) + sum(fn.values()))
    print(
        f"\nname rules on {len(rows)} labelled columns ({sum(1 for r in rows if not r.expected)} not PII): "
        f"precision {precision:.3f}, recall {recall:.3f} "
        f"(tp {sum(tp.values())}, fp {sum(fp.values())}, fn {sum(fn.values())})"
    )
    for tag in sorted(set(tp) | set(fp) | set(fn)):
        p = tp[tag] / (tp[tag] + fp[tag]) if tp[tag] + fp[tag] else 1.0
        r = tp[tag] / (tp[tag] + fn[tag]) if tp[tag] + fn[tag] else 1.0
        print(f"  {tag:<20} precision {p:.2f} recall {r:.2f} (tp {tp[tag]}, fp {fp[tag]}, fn {fn[tag]})")
    for line in wrong:
        print(f"  miss: {line}")
    assert precision >= MIN_PRECISION, wrong
    assert recall >= MIN_RECALL, wrong
    for tag in tp.keys() | fn.keys():
        assert tp[tag] / (tp[tag] + fn[tag]) >= MIN_TAG_RECALL, (tag, wrong)
