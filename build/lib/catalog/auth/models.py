"""API keys: stored as a public key id plus a SHA-256 of the secret part, never the secret itself."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, CheckConstraint, Identity, LargeBinary, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from catalog.db.base import Base

ROLES = ("pipeline", "engineer", "steward", "auditor", "admin")
# A key of these roles acts for one product (its Casbin subject is `<role>@<product>`)...
PRODUCT_ROLES = ("pipeline", "engineer", "steward")
# ...and of these in every product: the policy links only `<role>@*`, so a product would leave the key
# matching no rule at all (default-deny everywhere).
CROSS_PRODUCT_ROLES = ("auditor", "admin")


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("role IN ('pipeline','engineer','steward','auditor','admin')", name="role"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    key_id: Mapped[str] = mapped_column(Text, unique=True)
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary)
    name: Mapped[str] = mapped_column(Text)
    product: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]
