"""The projected catalog: namespaces, datasets, their fields and schema versions, jobs, runs and facets.

Every row carries first_seen/last_seen in *event* time (not arrival time), so the projection is the
same whatever order the events arrived in, and a rebuild from the log reproduces it exactly.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    LargeBinary,
    SmallInteger,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from catalog.db.base import Base


class Seen:
    """Event-time span in which an entity was observed."""

    first_seen: Mapped[dt.datetime]
    last_seen: Mapped[dt.datetime]


class Namespace(Seen, Base):
    __tablename__ = "namespaces"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)


class Dataset(Seen, Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("namespace_id", "name"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id"))
    name: Mapped[str] = mapped_column(Text)


class DatasetField(Seen, Base):
    """A column, nested fields flattened to dotted paths (`address.city`). Fields only named by column
    lineage exist too (type NULL); type/description follow the newest schema facet (attrs_time)."""

    __tablename__ = "dataset_fields"
    __table_args__ = (UniqueConstraint("dataset_id", "path"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)
    type: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    attrs_time: Mapped[dt.datetime | None]
    # 1: type/description came from the dataset's owner (or an emitter acting for every product); 0: another
    # product's schema only added the field. Merges compare (attrs_rank, attrs_time, ...): an owner's
    # description outranks a reader's whatever their event times (catalog/ingest/projection.py).
    attrs_rank: Mapped[int] = mapped_column(SmallInteger, server_default=text("1"))


class DatasetVersion(Seen, Base):
    """One row per distinct schema a dataset was seen with; the current one has the latest last_seen."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "schema_digest"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    schema_digest: Mapped[bytes] = mapped_column(LargeBinary)
    fields: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)


class DatasetSymlink(Seen, Base):
    __tablename__ = "dataset_symlinks"

    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    namespace: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    type: Mapped[str | None] = mapped_column(Text)


class Job(Seen, Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("namespace_id", "name"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id"))
    name: Mapped[str] = mapped_column(Text)


class Run(Seen, Base):
    """A run of a job, keyed by (job, run id): real producers reuse one run id under several jobs.

    The state is the event with the highest (rank, event time, state): terminal states outrank START and
    RUNNING, so a COMPLETE that arrives before its START still leaves the run COMPLETE.
    """

    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("job_id", "run_uuid"),
        Index("ix_runs_run_uuid", "run_uuid"),
        Index("ix_runs_job_id_first_seen_run_uuid", "job_id", "first_seen", "run_uuid"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    run_uuid: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    state: Mapped[str | None] = mapped_column(Text)
    state_rank: Mapped[int] = mapped_column(SmallInteger)
    state_time: Mapped[dt.datetime | None]
    started_at: Mapped[dt.datetime | None]
    parent_run_uuid: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    parent_job_namespace: Mapped[str | None] = mapped_column(Text)
    parent_job_name: Mapped[str | None] = mapped_column(Text)


class Facet(Base):
    """The newest value of each facet of a dataset, job or run (by event time); NULL value = `_deleted`.

    Typed attributes (a dataset's source URI, a job's SQL, owners) are read from here rather than copied
    into columns, so there is one place they live.
    """

    __tablename__ = "facets"
    __table_args__ = (CheckConstraint("subject_kind IN ('dataset','job','run')", name="subject_kind"),)

    subject_kind: Mapped[str] = mapped_column(Text, primary_key=True)
    subject_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    event_time: Mapped[dt.datetime]
    value: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # SHA-256 of the value's canonical JSON: breaks ties between two values with the same event time
    # deterministically, so the winner does not depend on arrival order.
    value_digest: Mapped[bytes] = mapped_column(LargeBinary)
