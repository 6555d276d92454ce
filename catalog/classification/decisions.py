"""Stewards' decisions on classifications: add, confirm or reject a tag on a field (or a dataset),
withdraw a decision, list them. Each decision retires the previous live one on the same (field, tag),
re-propagates downstream of the field and goes to the hash-chained audit log, all in the caller's
transaction (nothing here commits).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.audit.append import record_raw
from catalog.auth.service import Principal
from catalog.classification.detect import tag_name
from catalog.classification.propagate import propagate_from
from catalog.classification.reads import FIELD_ID
from catalog.db.engine import driver_connection

Json = dict[str, Any]


ACTIONS = ("add", "confirm", "reject")

DECISION_COLUMNS = (
    "id, namespace, dataset, field_path, tag, action, reason, author, decided_at, retired_at, retired_by"
)


class DatasetNotFound(LookupError):
    pass


class FieldNotFound(LookupError):
    pass


class DecisionNotFound(LookupError):
    pass


def decision_author(principal: Principal) -> str:
    """The author recorded for a decision: the key's name and its public id (never the secret). Who may
    decide is the policy's (`classification` write in the dataset's product: stewards of it, admins)."""
    return f"{principal.name} ({principal.key_id})"


class InvalidDecision(ValueError):
    """A decision the catalog cannot record; `field` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _check_decision_input(values: dict[str, str | None]) -> None:
    # PostgreSQL text cannot hold NUL, and no catalog name contains one (ingest replaces it): reject it
    # here with the field's name rather than let the driver fail mid-transaction.
    for name, value in values.items():
        if value is not None and "\x00" in value:
            raise InvalidDecision(name, "must not contain NUL (\\u0000) characters")
    if tag_name(values["tag"] or "") is None:
        raise InvalidDecision("tag", "must be a PII or PCI classification, e.g. PII.CPF or PCI.PAN")


def _decision(row: Any) -> Json:
    return {
        "id": row["id"],
        "namespace": row["namespace"],
        "dataset": row["dataset"],
        "field": row["field_path"] or None,
        "tag": row["tag"],
        "action": row["action"],
        "reason": row["reason"],
        "author": row["author"],
        "decidedAt": _iso(row["decided_at"]),
        "retiredAt": _iso(row["retired_at"]),
        "retiredBy": row["retired_by"],
    }


async def record_decision(
    conn: AsyncConnection,
    *,
    namespace: str,
    dataset: str,
    field: str | None,
    tag: str,
    action: str,
    reason: str | None,
    author: str,
) -> Json:
    """A steward adds, confirms or rejects a tag on a field (or dataset); the previous live decision on
    the same (field, tag) is retired, and propagation is redone downstream of the field."""
    if action not in ACTIONS:
        raise InvalidDecision("action", f"must be one of {', '.join(ACTIONS)}")
    _check_decision_input(
        {
            "namespace": namespace,
            "dataset": dataset,
            "field": field,
            "tag": tag,
            "reason": reason,
            "author": author,
        }
    )
    raw = await driver_connection(conn)
    tag = tag_name(tag) or tag  # the canonical spelling: "pii.cpf" -> "PII.CPF"
    path = field or ""
    target = await raw.fetchrow(FIELD_ID, namespace, dataset, path)
    if target is None:
        raise DatasetNotFound(f"dataset {dataset!r} in namespace {namespace!r} not found")
    if path and target["field_id"] is None:
        raise FieldNotFound(f"field {path!r} of dataset {dataset!r} not found")
    # Serialise decisions on one key so two stewards cannot both hold a live decision. The key is the
    # JSON array of the four names (unambiguous, and free of the NUL a text parameter cannot carry).
    await raw.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(jsonb_build_array($1::text, $2::text, $3::text, "
        "$4::text)::text, 0))",
        namespace,
        dataset,
        path,
        tag,
    )
    await raw.execute(
        "UPDATE classification_decisions SET retired_at = now(), retired_by = $5 "
        "WHERE namespace = $1 AND dataset = $2 AND field_path = $3 AND tag = $4 AND retired_at IS NULL",
        namespace,
        dataset,
        path,
        tag,
        author,
    )
    row = await raw.fetchrow(
        "INSERT INTO classification_decisions (namespace, dataset, field_path, tag, action, reason, author) "
        f"VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {DECISION_COLUMNS}",
        namespace,
        dataset,
        path,
        tag,
        action,
        reason,
        author,
    )
    if target["field_id"] is not None:
        await propagate_from(raw, [target["field_id"]], tag=tag)
    decision = _decision(row)
    await _audit(raw, "classification.decision.recorded", author, decision)
    return decision


async def retire_decision(conn: AsyncConnection, *, decision_id: int, author: str) -> Json:
    """Withdraw a live decision (kept for audit, marked retired); the field falls back to the derived
    sources and propagation is redone downstream of it."""
    raw = await driver_connection(conn)
    row = await raw.fetchrow(
        "UPDATE classification_decisions SET retired_at = now(), retired_by = $2 "
        f"WHERE id = $1 AND retired_at IS NULL RETURNING {DECISION_COLUMNS}",
        decision_id,
        author,
    )
    if row is None:
        raise DecisionNotFound(f"no live decision {decision_id}")
    target = await raw.fetchrow(FIELD_ID, row["namespace"], row["dataset"], row["field_path"])
    if target is not None and target["field_id"] is not None:
        await propagate_from(raw, [target["field_id"]], tag=row["tag"])
    decision = _decision(row)
    await _audit(raw, "classification.decision.retired", author, decision)
    return decision


async def _audit(conn: asyncpg.Connection[Any], action: str, author: str, decision: Json) -> None:
    """Each decision also goes to the hash-chained audit log (in the same transaction): the decisions
    table is what precedence reads, the chain is what an auditor can verify was not rewritten."""
    field = f"#{decision['field']}" if decision["field"] else ""
    subject = f"classification:{decision['namespace']}/{decision['dataset']}{field}:{decision['tag']}"
    await record_raw(conn, action=action, actor=author, subject=subject, details=decision)


async def list_decisions(
    conn: AsyncConnection,
    *,
    namespace: str | None = None,
    dataset: str | None = None,
    include_retired: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Json], int]:
    raw = await driver_connection(conn)
    where = ["($1::text IS NULL OR namespace = $1)", "($2::text IS NULL OR dataset = $2)"]
    if not include_retired:
        where.append("retired_at IS NULL")
    clause = " AND ".join(where)
    rows = await raw.fetch(
        f"SELECT {DECISION_COLUMNS} FROM classification_decisions WHERE {clause} "
        "ORDER BY decided_at DESC, id DESC LIMIT $3 OFFSET $4",
        namespace,
        dataset,
        limit,
        offset,
    )
    total = await raw.fetchval(
        f"SELECT count(*) FROM classification_decisions WHERE {clause}", namespace, dataset
    )
    return [_decision(r) for r in rows], total


def _iso(at: dt.datetime | None) -> str | None:
    return None if at is None else at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


async def decision_subject(conn: AsyncConnection, decision_id: int) -> tuple[str, str] | None:
    """(namespace, dataset) of a decision, live or retired; None when there is no such decision."""
    raw = await driver_connection(conn)
    row = await raw.fetchrow(
        "SELECT namespace, dataset FROM classification_decisions WHERE id = $1", decision_id
    )
    return (row["namespace"], row["dataset"]) if row else None
