"""Append one row to the hash-chained audit log, in the caller's transaction.

Appends are serialised by a transaction-scoped advisory lock taken just before the row is written and
held to the caller's commit: two transactions can never both chain onto the same head. Apart from the
checkpoints and verification (catalog/audit/service.py), so the signing keys can record their own
creation and rotation without importing what signs with them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.audit.chain import GENESIS, canonical, row_hash

# One fixed advisory-lock key for the whole chain (an arbitrary constant no other module uses).
AUDIT_LOCK_KEY = 0x6175_6469_7400  # "audit"

_HEAD_SQL = (
    "SELECT a.seq, a.hash, CAST({details} AS text)::jsonb::text AS details, clock_timestamp() AS now "
    "FROM (SELECT 1) AS one LEFT JOIN LATERAL "
    "(SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1) AS a ON true"
)
_INSERT_SQL = (
    "INSERT INTO audit_log (seq, recorded_at, action, actor, subject, details, prev_hash, hash) "
    "VALUES ({seq}, {at}, {action}, {actor}, {subject}, CAST({details} AS text)::jsonb, {prev}, {hash})"
)


@dataclass(frozen=True, slots=True)
class _Prepared:
    seq: int
    recorded_at: dt.datetime
    details_json: str
    prev_hash: bytes
    hash: bytes


def _prepare(head: Any, *, action: str, actor: str | None, subject: str) -> _Prepared:
    prev_seq, prev_hash = (head["seq"], bytes(head["hash"])) if head["seq"] is not None else (0, GENESIS)
    # The timestamp is PostgreSQL's clock read under the lock, so recorded_at never goes backwards
    # along the chain (a Python clock per process could, with several service processes).
    at: dt.datetime = head["now"]
    details_json: str = head["details"]
    content = canonical(
        recorded_at=at, action=action, actor=actor, subject=subject, details_json=details_json
    )
    return _Prepared(prev_seq + 1, at, details_json, prev_hash, row_hash(prev_hash, content))


def _json(details: dict[str, Any]) -> str:
    return orjson.dumps(details, default=str).decode()


async def record(
    conn: AsyncConnection, *, action: str, actor: str | None, subject: str, details: dict[str, Any]
) -> None:
    """Append one audit row in the caller's transaction (it becomes visible, and final, when they commit)."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": AUDIT_LOCK_KEY})
    head = (await conn.execute(text(_HEAD_SQL.format(details=":d")), {"d": _json(details)})).mappings().one()
    row = _prepare(head, action=action, actor=actor, subject=subject)
    await conn.execute(
        text(
            _INSERT_SQL.format(
                seq=":seq",
                at=":at",
                action=":action",
                actor=":actor",
                subject=":subject",
                details=":d",
                prev=":prev",
                hash=":hash",
            )
        ),
        {
            "seq": row.seq,
            "at": row.recorded_at,
            "action": action,
            "actor": actor,
            "subject": subject,
            "d": row.details_json,
            "prev": row.prev_hash,
            "hash": row.hash,
        },
    )


async def record_raw(
    raw: asyncpg.Connection[Any], *, action: str, actor: str | None, subject: str, details: dict[str, Any]
) -> None:
    """`record` for code that holds a raw asyncpg connection (ingest, rebuild); it must be in a transaction,
    or the advisory lock would be released before the row is written."""
    if not raw.is_in_transaction():
        raise RuntimeError("audit.record_raw needs an open transaction")
    await raw.execute("SELECT pg_advisory_xact_lock($1)", AUDIT_LOCK_KEY)
    head = await raw.fetchrow(_HEAD_SQL.format(details="$1"), _json(details))
    assert head is not None
    row = _prepare(head, action=action, actor=actor, subject=subject)
    await raw.execute(
        _INSERT_SQL.format(
            seq="$1", at="$2", action="$3", actor="$4", subject="$5", details="$6", prev="$7", hash="$8"
        ),
        row.seq,
        row.recorded_at,
        action,
        actor,
        subject,
        row.details_json,
        row.prev_hash,
        row.hash,
    )
