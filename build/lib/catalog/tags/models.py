"""Tag tables. Keyed by natural names, not surrogate ids: tags are user data that must survive a
rebuild of the projection (which truncates datasets and restarts their ids)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from catalog.db.base import Base


class Tag(Base):
    __tablename__ = "tags"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class DatasetTag(Base):
    """A tag on a dataset (field '') or on one of its fields (dotted path)."""

    __tablename__ = "dataset_tags"
    __table_args__ = (Index("ix_dataset_tags_tag", "tag"),)

    namespace: Mapped[str] = mapped_column(Text, primary_key=True)
    dataset: Mapped[str] = mapped_column(Text, primary_key=True)
    field: Mapped[str] = mapped_column(Text, primary_key=True, server_default=text("''"))
    tag: Mapped[str] = mapped_column(ForeignKey("tags.name", ondelete="CASCADE"), primary_key=True)
    tagged_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
