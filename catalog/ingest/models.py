"""The event log: every accepted OpenLineage event as received (after redaction), the source of truth."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, Identity, Index, Integer, LargeBinary, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import ARRAY, JSON, UUID
from sqlalchemy.orm import Mapped, mapped_column

from catalog.db.base import Base


class EventLogEntry(Base):
    """Range-partitioned by event time (one partition a month) so retention is DROP PARTITION.

    The dedup key (event_time, digest) includes the partition key, as PostgreSQL requires of unique
    constraints on partitioned tables; a retried event has the same time and digest, so it lands on it.
    """

    __tablename__ = "event_log"
    __table_args__ = (
        UniqueConstraint("event_time", "digest"),
        Index("ix_event_log_id", "id"),  # the projector reads "after position N, in id order"
        {"postgresql_partition_by": "RANGE (event_time)"},
    )

    event_time: Mapped[dt.datetime] = mapped_column(primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    digest: Mapped[bytes] = mapped_column(LargeBinary)
    kind: Mapped[str] = mapped_column(Text)
    event_type: Mapped[str | None] = mapped_column(Text)
    run_uuid: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    job_namespace: Mapped[str | None] = mapped_column(Text)
    job_name: Mapped[str | None] = mapped_column(Text)
    producer: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(server_default=text("clock_timestamp()"))
    # json, not jsonb: stored and read back whole, never queried inside (migration 0015 says what it saves)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The product of the key that sent it; NULL: a key acting for every product (admin, the operator's CLI)
    # or an event logged before emitters were recorded. The projection judges dataset facets by it, so a
    # rebuild reads it beside the payload (catalog/ingest/extract.py).
    emitter_product: Mapped[str | None] = mapped_column(Text)
    # JSON pointers of the values redacted before storing (the projector's credentials rule reads them).
    redactions: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    # The id of the key that sent it (the projector's ownership-claim audit rows name it).
    emitter_key: Mapped[str | None] = mapped_column(Text)


class ProjectorState(Base):
    """How far the projector has folded the log (an `event_log.id`), advanced in the same transaction as
    the projection it stands for (catalog/ingest/projector.py)."""

    __tablename__ = "projector_state"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[dt.datetime | None] = mapped_column()


class SetAsideEvent(Base):
    """A logged event the projector could not fold, with its error; the log went on without it."""

    __tablename__ = "projection_set_aside"

    event_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_time: Mapped[dt.datetime] = mapped_column()
    error: Mapped[str] = mapped_column(Text)
    set_aside_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("1"))
