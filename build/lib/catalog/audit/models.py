"""Audit tables: the hash-chained log, its signed checkpoints, and the Ed25519 signing keys (encrypted).

`audit_log` is append-only: a trigger from migration 0005 rejects UPDATE, DELETE and TRUNCATE, so even
the application's own role cannot rewrite history; the hash chain makes any edit by someone who can get
round the trigger (a superuser) detectable.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, LargeBinary, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from catalog.db.base import Base


class AuditEntry(Base):
    """One audit row. `seq` is the chain position (gapless, assigned under a lock); `hash` covers the
    canonical content and `prev_hash`, so a row cannot change, vanish or move without breaking the chain."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_recorded_at", "recorded_at"),
        Index("ix_audit_log_hash", "hash"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    recorded_at: Mapped[dt.datetime]
    action: Mapped[str] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary)
    hash: Mapped[bytes] = mapped_column(LargeBinary)


class SigningKey(Base):
    """An Ed25519 key pair; the private half is AES-GCM encrypted with the key-encryption key (KEK).

    `kek_id` names the KEK that encrypted it (a digest, not the KEK), so a wrong KEK is reported as such
    rather than as a corrupt key. Retired keys stay: exports signed with them must remain verifiable.
    """

    __tablename__ = "signing_keys"

    key_id: Mapped[str] = mapped_column(Text, primary_key=True)
    algorithm: Mapped[str] = mapped_column(Text, server_default=text("'ed25519'"))
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    encrypted_private_key: Mapped[bytes] = mapped_column(LargeBinary)
    kek_id: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))
    retired_at: Mapped[dt.datetime | None]


class AuditCheckpoint(Base):
    """A signed statement "the chain had this hash at this seq": catches truncation of the chain's tail,
    which a hash chain alone cannot (the remaining prefix is still a valid chain)."""

    __tablename__ = "audit_checkpoints"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary)
    signed_at: Mapped[dt.datetime]
    key_id: Mapped[str] = mapped_column(ForeignKey("signing_keys.key_id"))
    signature: Mapped[bytes] = mapped_column(LargeBinary)
