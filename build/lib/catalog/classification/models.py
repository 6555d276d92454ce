"""Classification tables: derived classifications (rebuilt from the log) and stewards' manual decisions.

`classifications` is a projection: detected, declared and propagated rows are recomputed from the
catalog, so `catalog rebuild` truncates and regenerates them. `classification_decisions` is audit data
that no event can reproduce: it is keyed by natural names (namespace, dataset, field path) rather than
surrogate ids, so it survives a rebuild untouched and is re-applied by joining on names.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Identity,
    Index,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from catalog.db.base import Base

SOURCES = ("declared", "detected", "propagated")
ACTIONS = ("add", "confirm", "reject")


class Classification(Base):
    """A tag on a field (or on a whole dataset when field_id is NULL), from one derived source.

    A propagated row keeps its `depth` (hops from the nearest classified origin) and a pointer to the
    state it came from: the parent field (`via_field_id`) and whether the value was already masked there
    (`via_masked`); the parent is itself a seed when `depth` is 1, else the propagated row
    (via_field_id, tag, via_masked) at depth - 1. The hop-by-hop path is rebuilt at read time by following
    the pointers, so a row stays small and a better path upstream rewrites only the rows it changes.
    `masked` marks a masked derivative: the value passed through a masking transformation somewhere on
    the path, so the field is not PII itself.
    """

    __tablename__ = "classifications"
    __table_args__ = (
        CheckConstraint("source IN ('declared','detected','propagated')", name="source"),
        Index(
            "uq_classifications_identity",
            "dataset_id",
            "field_id",
            "tag",
            "source",
            "masked",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
        Index("ix_classifications_field_id", "field_id"),
        Index("ix_classifications_tag", "tag"),
        Index("ix_classifications_via_field_id", "via_field_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    field_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_fields.id", ondelete="CASCADE"))
    tag: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(Text)
    confidence: Mapped[float] = mapped_column(Float)
    rule: Mapped[str | None] = mapped_column(Text)
    masked: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    depth: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    via_field_id: Mapped[int | None] = mapped_column(BigInteger)
    via_masked: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))


class ClassificationDecision(Base):
    """A steward's decision on one (field, tag): add, confirm or reject, with author, reason and time.

    Rows are never updated in place except to retire them (`retired_at`/`retired_by` when withdrawn or
    superseded), so the table is the decisions' audit trail. At most one live decision per (field, tag).
    `field_path` is '' for a decision on the whole dataset.
    """

    __tablename__ = "classification_decisions"
    __table_args__ = (
        CheckConstraint("action IN ('add','confirm','reject')", name="action"),
        Index(
            "uq_classification_decisions_live",
            "namespace",
            "dataset",
            "field_path",
            "tag",
            unique=True,
            postgresql_where=text("retired_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    namespace: Mapped[str] = mapped_column(Text)
    dataset: Mapped[str] = mapped_column(Text)
    field_path: Mapped[str] = mapped_column(Text)
    tag: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    author: Mapped[str] = mapped_column(Text)
    decided_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))
    retired_at: Mapped[dt.datetime | None]
    retired_by: Mapped[str | None] = mapped_column(Text)
