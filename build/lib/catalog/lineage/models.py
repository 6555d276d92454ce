"""Lineage edges: job -> dataset reads/writes, and column -> column flows with their transformation."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Identity, Index, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from catalog.db.base import Base
from catalog.metadata.models import Dataset, Job, Seen


class JobIO(Seen, Base):
    __tablename__ = "job_io"
    __table_args__ = (
        CheckConstraint("direction IN ('input','output')", name="direction"),
        Index("ix_job_io_dataset_id_direction", "dataset_id", "direction"),
    )

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    direction: Mapped[str] = mapped_column(Text, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), primary_key=True)


class ColumnEdge(Seen, Base):
    """source column -> target column through a job. A NULL field on either side means the whole dataset
    (the `dataset` part of columnLineage / entity-level inputs of the `lineage` facet)."""

    __tablename__ = "column_edges"
    __table_args__ = (
        Index(
            "uq_column_edges_identity",
            "target_dataset_id",
            "target_field_id",
            "source_dataset_id",
            "source_field_id",
            "job_id",
            "transformation_type",
            "transformation_subtype",
            "masking",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
        Index("ix_column_edges_source_field_id", "source_field_id"),
        Index("ix_column_edges_source_dataset_id", "source_dataset_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    target_dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    target_field_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_fields.id"))
    source_dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    source_field_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_fields.id"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    transformation_type: Mapped[str] = mapped_column(Text, server_default=text("''"))
    transformation_subtype: Mapped[str] = mapped_column(Text, server_default=text("''"))
    masking: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    description: Mapped[str | None] = mapped_column(Text)


class LineageObservation(Base):
    """An instant at which an edge owner was seen with its complete edge set: a job's run event with
    inputs/outputs (owner of job_io), or a dataset's columnLineage/lineage facet (owner of its incoming
    column edges). Lets "as of T" drop edges their owner stopped declaring, independent of event order."""

    __tablename__ = "lineage_observations"
    __table_args__ = (CheckConstraint("owner_kind IN ('job','dataset')", name="owner_kind"),)

    owner_kind: Mapped[str] = mapped_column(Text, primary_key=True)
    owner_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    observed_at: Mapped[dt.datetime] = mapped_column(primary_key=True)


# Substring search over names (`/api/v1/search`, ILIKE '%q%') needs trigram indexes; declared here, next
# to the other read-path indexes of the lineage domain, rather than in the metadata models.
Index(
    "ix_datasets_name_trgm",
    Dataset.__table__.c.name,
    postgresql_using="gin",
    postgresql_ops={"name": "gin_trgm_ops"},
)
Index(
    "ix_jobs_name_trgm",
    Job.__table__.c.name,
    postgresql_using="gin",
    postgresql_ops={"name": "gin_trgm_ops"},
)
