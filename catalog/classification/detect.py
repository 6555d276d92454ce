"""Detected and declared classifications for the fields and datasets a batch touched.

Both are recomputed from the projection's *current* state (the field's newest type, the dataset's newest
`tags` and `schema` facets), never from the batch alone, so the outcome does not depend on the order
events arrived in and a rebuild reproduces it. Each step is a fixed number of set-based statements;
the name matching itself runs in Python over the fetched rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import asyncpg
import orjson

from catalog.classification.rules import RuleSet

# Only sensitive tags are classifications (the rest of a producer's tags — `environment:production`,
# owners — are plain metadata, kept by the tags domain): PII.* and PCI.* and a bare "PII"/"PCI".
SENSITIVE_TAG = re.compile(r"^(PII|PCI)(\.|$)", re.IGNORECASE)
SENSITIVE_TAG_SQL = "'^(PII|PCI)(\\.|$)'"

# Tag keys whose value names the classification: {"key": "classification", "value": "PII.CPF"}.
VALUE_KEYS = {"classification", "data_classification", "sensitivity", "pii", "pci", "tag", "category"}
TRUE_VALUES = {"", "true", "yes", "y", "1"}
FALSE_VALUES = {"false", "no", "n", "0", "none"}

FETCH_FIELDS = """
SELECT f.id, f.dataset_id, f.path, f.type,
       coalesce((SELECT array_agg(c.tag || E'\\t' || c.confidence::text || E'\\t' || coalesce(c.rule, '')
                                  ORDER BY c.tag)
                 FROM classifications c WHERE c.field_id = f.id AND c.source = 'detected'), '{}') AS current
FROM dataset_fields f
WHERE f.id = ANY($1::bigint[])
"""

DELETE_SOURCE_FOR_FIELDS = "DELETE FROM classifications WHERE source = $2 AND field_id = ANY($1::bigint[])"

INSERT_CLASSIFICATIONS = """
INSERT INTO classifications (dataset_id, field_id, tag, source, category, confidence, rule)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::float8[], $7::text[])
ON CONFLICT (dataset_id, field_id, tag, source, masked) DO UPDATE
SET category = excluded.category, confidence = excluded.confidence, rule = excluded.rule
"""

FETCH_DECLARING_FACETS = """
SELECT subject_id AS dataset_id, name, value::text AS value FROM facets
WHERE subject_kind = 'dataset' AND subject_id = ANY($1::bigint[]) AND value IS NOT NULL
  AND (name = 'tags' OR (name = 'schema' AND jsonb_path_exists(value, 'lax $.**.tags')))
"""

FETCH_DECLARED = """
SELECT c.dataset_id, f.path, c.tag, c.rule FROM classifications c
LEFT JOIN dataset_fields f ON f.id = c.field_id
WHERE c.source = 'declared' AND c.dataset_id = ANY($1::bigint[])
"""

DELETE_DECLARED = """
DELETE FROM classifications WHERE source = 'declared' AND dataset_id = ANY($1::bigint[]) RETURNING field_id
"""

# Field paths are resolved to ids in the statement; a tag naming a field the catalog has never seen is
# dropped (there is nothing to attach it to until the field shows up, and then it is re-derived).
INSERT_DECLARED = """
INSERT INTO classifications (dataset_id, field_id, tag, source, category, confidence, rule)
SELECT u.d, f.id, u.t, 'declared', NULL, 1.0, u.r
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS u(d, p, t, r)
LEFT JOIN dataset_fields f ON f.dataset_id = u.d AND f.path = u.p
WHERE u.p IS NULL OR f.id IS NOT NULL
ON CONFLICT (dataset_id, field_id, tag, source, masked) DO NOTHING
RETURNING field_id
"""


async def refresh_detected(
    conn: asyncpg.Connection[Any], rules: RuleSet, field_ids: Sequence[int]
) -> set[int]:
    """Re-run the name rules on the given fields; returns the fields whose detections changed."""
    if not field_ids:
        return set()
    rows = await conn.fetch(FETCH_FIELDS, sorted(set(field_ids)))
    changed: list[int] = []
    inserts: list[tuple[int, int, str, str, str, float, str]] = []
    for r in rows:
        found = rules.detections(r["path"], r["type"])
        now = sorted(f"{tag}\t{float(conf)}\t{rule}" for tag, _, conf, rule in found)
        if now != sorted(_normalise_current(r["current"])):
            changed.append(r["id"])
            inserts.extend(
                (r["dataset_id"], r["id"], tag, "detected", category, conf, rule)
                for tag, category, conf, rule in found
            )
    if changed:
        changed.sort()
        await conn.execute(DELETE_SOURCE_FOR_FIELDS, changed, "detected")
        if inserts:
            inserts.sort()
            await conn.execute(INSERT_CLASSIFICATIONS, *_transpose(inserts, 7))
    return set(changed)


def _normalise_current(values: Iterable[str]) -> list[str]:
    # float8::text and Python's repr agree for these values, but normalise to be safe.
    out = []
    for value in values:
        tag, conf, rule = value.split("\t", 2)
        out.append(f"{tag}\t{float(conf)}\t{rule}")
    return out


async def refresh_declared(conn: asyncpg.Connection[Any], dataset_ids: Sequence[int]) -> set[int]:
    """Recompute declared tags of the given datasets from their newest `tags` and `schema` facets;
    returns the fields whose declared tags changed (added or removed)."""
    if not dataset_ids:
        return set()
    ids = sorted(set(dataset_ids))
    declared: dict[int, set[tuple[str | None, str, str]]] = {i: set() for i in ids}
    for r in await conn.fetch(FETCH_DECLARING_FACETS, ids):
        value = orjson.loads(r["value"])
        found = tags_facet(value) if r["name"] == "tags" else schema_tags(value)
        rule = f"facet:{r['name']}"
        declared[r["dataset_id"]].update((path, tag, rule) for path, tag in found)
    current: dict[int, set[tuple[str | None, str, str]]] = {i: set() for i in ids}
    for r in await conn.fetch(FETCH_DECLARED, ids):
        current[r["dataset_id"]].add((r["path"], r["tag"], r["rule"]))
    # Diff first: the schema facet comes with nearly every event, declared tags rarely change.
    stale = [i for i in ids if declared[i] != current[i]]
    if not stale:
        return set()
    changed = {r["field_id"] for r in await conn.fetch(DELETE_DECLARED, stale)}
    rows = sorted(
        ((i, path, tag, rule) for i in stale for path, tag, rule in declared[i]),
        key=lambda d: (d[0], d[1] or "", d[2], d[3]),
    )
    if rows:
        inserted = await conn.fetch(INSERT_DECLARED, *_transpose(rows, 4))
        changed.update(r["field_id"] for r in inserted)
    changed.discard(None)
    return changed


def tag_name(item: Any) -> str | None:
    """The classification a declared tag stands for, or None when it is not a sensitive one.

    Accepted forms: a plain string ("PII.CPF", Marquez-style field tags); {"key": "PII.CPF", "value":
    "true"}; {"key": "classification", "value": "PII.CPF"}; {"key": "pii", "value": "true"} -> "PII".
    A false-ish value ({"key": "pii", "value": "false"}) declares nothing. Spelled in upper case
    ("pii.email" -> "PII.EMAIL").
    """
    if isinstance(item, str):
        name = item.strip()
    elif isinstance(item, dict) and isinstance(item.get("key"), str):
        key = item["key"].strip()
        raw = item.get("value")
        value = raw.strip() if isinstance(raw, str) else ("true" if raw is None or raw is True else str(raw))
        if value.lower() in FALSE_VALUES:
            return None
        if value.lower() in TRUE_VALUES:
            name = key
        elif key.lower() in VALUE_KEYS:
            name = value
        else:
            name = f"{key}.{value}"
    else:
        return None
    if not SENSITIVE_TAG.match(name):
        return None
    # Tags compare exactly everywhere (precedence, rejects, propagation), so one spelling: a steward's
    # reject of "pii.cpf" must hit the rules' "PII.CPF".
    return name.upper()


def tags_facet(value: Any) -> Iterator[tuple[str | None, str]]:
    """(field path or None for the dataset, tag) from a TagsDatasetFacet value."""
    if not isinstance(value, dict) or not isinstance(value.get("tags"), list):
        return
    for item in value["tags"]:
        name = tag_name(item)
        if name is None:
            continue
        field = item.get("field") if isinstance(item, dict) else None
        yield (field if isinstance(field, str) and field else None), name


def schema_tags(value: Any, prefix: str = "") -> Iterator[tuple[str | None, str]]:
    """(field path, tag) from `tags` carried inside schema fields (nested fields too)."""
    fields = value.get("fields") if isinstance(value, dict) else None
    if not isinstance(fields, list):
        return
    for item in fields:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            continue
        path = prefix + item["name"]
        tags = item.get("tags")
        if isinstance(tags, list):
            for tag in tags:
                name = tag_name(tag)
                if name is not None:
                    yield path, name
        if isinstance(item.get("fields"), list):
            yield from schema_tags(item, path + ".")


def _transpose(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]
