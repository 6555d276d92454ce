"""Tables of the policy domain: product assignments, runtime grants and their history, recorded denials."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from catalog.db.base import Base


class ProductAssignment(Base):
    """The product (and tier) products.yaml + ownership facets give a namespace, dataset or job.

    `candidates` keeps every source that named a product ([source, product] pairs): more than one
    distinct product is a conflict, reported as a finding rather than silently resolved.
    """

    __tablename__ = "product_assignments"
    __table_args__ = (
        CheckConstraint("subject_kind IN ('namespace','dataset','job')", name="subject_kind"),
        Index("ix_product_assignments_product", "product"),
    )

    subject_kind: Mapped[str] = mapped_column(Text, primary_key=True)
    subject_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    product: Mapped[str | None] = mapped_column(Text)
    tier: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(Text)
    candidates: Mapped[list[Any]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))


class OwnershipClaim(Base):
    """An owner an ownership facet named for a dataset, per emitting product (`*`: a key acting for every
    product). Part of the projection (rebuilt from the log). products.yaml places a dataset first; a claim
    naming product P places one the file does not, and only when P's own key (or `*`) sent it; every other
    claim naming a product is a candidate, flagged as an `ownership-conflict` (catalog/policy/products.py).
    """

    __tablename__ = "ownership_claims"

    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    owner: Mapped[str] = mapped_column(Text, primary_key=True)
    emitter: Mapped[str] = mapped_column(Text, primary_key=True)
    first_logged: Mapped[int] = mapped_column(
        BigInteger
    )  # event-log id of its first event: claims place in log order
    first_seen: Mapped[dt.datetime]
    last_seen: Mapped[dt.datetime]


class Grant(Base):
    """Product `grantee` may read `grantor`'s dataset, namespace or name pattern (optionally masked only)."""

    __tablename__ = "grants"
    __table_args__ = (
        CheckConstraint("scope IN ('dataset','namespace','pattern')", name="scope"),
        Index("ix_grants_grantor_product", "grantor_product"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    grantor_product: Mapped[str] = mapped_column(Text)
    grantee_product: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    namespace: Mapped[str] = mapped_column(Text)  # a glob for scope 'pattern'
    name: Mapped[str | None] = mapped_column(Text)  # the dataset (scope 'dataset') or a glob ('pattern')
    masked_only: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    reason: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[dt.datetime | None]
    created_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    revoked_at: Mapped[dt.datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(Text)


class GrantChange(Base):
    """Every change to a grant. Its growing id is also the version other processes poll to reload."""

    __tablename__ = "grant_changes"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    grant_id: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB)


class AccessDenial(Base):
    """Every request or flow the enforcer denied, with the rule that denied it."""

    __tablename__ = "access_denials"
    __table_args__ = (Index("ix_access_denials_at", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    key_id: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text)
    product: Mapped[str | None] = mapped_column(Text)
    domain: Mapped[str] = mapped_column(Text)
    obj: Mapped[str] = mapped_column(Text)
    act: Mapped[str] = mapped_column(Text)
    rule: Mapped[str] = mapped_column(Text)
    path: Mapped[str | None] = mapped_column(Text)
