"""Chain the access history recorded before grants, waivers and (pre-0005) keys were audited.

From this release every grant change, waiver change and API key change appends to the audit chain, and
`catalog audit verify` holds the `grants`, `grant_changes`, waived `findings`, `finding_changes` and
`api_keys` tables against the chain. A database that already holds such rows would fail that check for
history made by the old code, so this migration appends it once, in history order: one chain row per
`grant_changes` row (its `detail` is the grant as the service recorded it) and per `finding_changes`
row, and `api_key.created` (+ `api_key.revoked`) for keys the chain does not know. The rows say
`actor: migration:0008` and carry `"adopted": true`: they certify the state found at upgrade time, not
who made it. Nothing happens on an empty database. Downgrade leaves the rows (the log is append-only).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import orjson
from alembic import op
from sqlalchemy import text
from sqlalchemy.engine import Connection

from catalog.audit.chain import GENESIS, canonical, row_hash

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

AUDIT_LOCK_KEY = 0x6175_6469_7400  # catalog/audit/append.py: the chain's append lock
ACTOR = "migration:0008"
GRANT_ACTIONS = {"create": "grant.created", "revoke": "grant.revoked"}
WAIVER_ACTIONS = {"waive": "finding.waived", "unwaive": "finding.unwaived"}


def _append(conn: Connection, action: str, subject: str, details: dict[str, Any]) -> None:
    """catalog.audit.service.record, frozen here: PostgreSQL's clock and jsonb text, chained to the head."""
    head = (
        conn.execute(
            text(
                "SELECT a.seq, a.hash, CAST(:d AS text)::jsonb::text AS details, clock_timestamp() AS now "
                "FROM (SELECT 1) AS one LEFT JOIN LATERAL "
                "(SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1) AS a ON true"
            ),
            {"d": orjson.dumps(details, default=str).decode()},
        )
        .mappings()
        .one()
    )
    prev_seq, prev = (head["seq"], bytes(head["hash"])) if head["seq"] is not None else (0, GENESIS)
    content = canonical(
        recorded_at=head["now"], action=action, actor=ACTOR, subject=subject, details_json=head["details"]
    )
    conn.execute(
        text(
            "INSERT INTO audit_log (seq, recorded_at, action, actor, subject, details, prev_hash, hash) "
            "VALUES (:seq, :at, :action, :actor, :subject, CAST(:d AS text)::jsonb, :prev, :hash)"
        ),
        {
            "seq": prev_seq + 1,
            "at": head["now"],
            "action": action,
            "actor": ACTOR,
            "subject": subject,
            "d": head["details"],
            "prev": prev,
            "hash": row_hash(prev, content),
        },
    )


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _chained(conn: Connection, pattern: str) -> bool:
    return (
        conn.execute(text("SELECT 1 FROM audit_log WHERE action LIKE :p LIMIT 1"), {"p": pattern}).first()
        is not None
    )


def upgrade() -> None:
    conn = op.get_bind()
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": AUDIT_LOCK_KEY})
    if not _chained(conn, "grant.%"):
        for change in conn.execute(
            text("SELECT grant_id, action, detail::text AS detail FROM grant_changes ORDER BY id")
        ):
            detail = orjson.loads(change.detail)
            _append(
                conn,
                GRANT_ACTIONS.get(change.action, f"grant.{change.action}"),
                f"grant:{change.grant_id}",
                {**(detail if isinstance(detail, dict) else {}), "adopted": True},
            )
    if not _chained(conn, "finding.waived") and not _chained(conn, "finding.unwaived"):
        for change in conn.execute(
            text("SELECT finding_id, action, actor, reason, until FROM finding_changes ORDER BY id")
        ):
            _append(
                conn,
                WAIVER_ACTIONS.get(change.action, f"finding.{change.action}"),
                f"finding:{change.finding_id}",
                {
                    "finding_id": change.finding_id,
                    "actor": change.actor,
                    "reason": change.reason,
                    "until": _iso(change.until),
                    "adopted": True,
                },
            )
    unknown_keys = conn.execute(
        text(
            "SELECT key_id, name, role, product, expires_at, revoked_at, secret_hash FROM api_keys k "
            "WHERE NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.action = 'api_key.created' "
            "AND a.subject = 'api_key:' || k.key_id) ORDER BY id"
        )
    ).all()
    for key in unknown_keys:
        fingerprint = hashlib.sha256(b"catalog-key-fingerprint:" + bytes(key.secret_hash)).hexdigest()[:32]
        _append(
            conn,
            "api_key.created",
            f"api_key:{key.key_id}",
            {
                "name": key.name,
                "role": key.role,
                "product": key.product,
                "expires_at": _iso(key.expires_at),
                "secret_fingerprint": fingerprint,
                "adopted": True,
            },
        )
        if key.revoked_at is not None:
            _append(conn, "api_key.revoked", f"api_key:{key.key_id}", {"adopted": True})


def downgrade() -> None:
    """Nothing to undo: the chain is append-only, and the adopted rows stay true of the history."""
