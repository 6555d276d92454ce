"""Findings: one row per (rule, subject), with evidence, event-time span and an open/resolved/waived status."""

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
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from catalog.db.base import Base


class Finding(Base):
    __tablename__ = "findings"
    __table_args__ = (
        UniqueConstraint("rule", "subject_key"),
        CheckConstraint("status IN ('open','resolved','waived')", name="status"),
        CheckConstraint("severity IN ('low','medium','high','critical')", name="severity"),
        Index("ix_findings_product_status", "product", "status"),
        Index("ix_findings_dataset_id", "dataset_id"),
        Index("ix_findings_job_id", "job_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    rule: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(Text)
    subject_kind: Mapped[str] = mapped_column(
        Text
    )  # dataset | field | job | namespace | flow (job x dataset)
    subject_key: Mapped[str] = mapped_column(Text)  # stable identity of the subject within the rule
    # The subject by name, for people and for filters: {kind, namespace, name, field?, job?: {namespace,
    # name}, direction?} (catalog/findings/subjects.py), and one line saying it in words.
    subject: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    subject_display: Mapped[str] = mapped_column(Text, server_default=text("''"))
    product: Mapped[str | None] = mapped_column(Text)
    dataset_id: Mapped[int | None] = mapped_column(BigInteger)
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    namespace_id: Mapped[int | None] = mapped_column(BigInteger)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONB)
    first_seen: Mapped[dt.datetime]
    last_seen: Mapped[dt.datetime]
    status: Mapped[str] = mapped_column(Text, server_default="open")
    status_changed_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    waived_by: Mapped[str | None] = mapped_column(Text)
    waiver_reason: Mapped[str | None] = mapped_column(Text)
    waived_until: Mapped[dt.datetime | None]


class FlowTransport(Base):
    """The transport a job last used for a dataset in one direction: the dataSource URI (redacted) of the
    job's newest event naming it. The unencrypted-transfer rule judges each flow by its own transport, not
    by the dataset's newest dataSource, which another job may have sent. A projection of the event log
    (written by `project_only`, rebuilt by `catalog rebuild`)."""

    __tablename__ = "flow_transports"
    __table_args__ = (
        CheckConstraint("direction IN ('input','output')", name="direction"),
        Index("ix_flow_transports_dataset_id", "dataset_id"),
    )

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    direction: Mapped[str] = mapped_column(Text, primary_key=True)
    uri: Mapped[str] = mapped_column(Text)
    event_time: Mapped[dt.datetime]
    run_uuid: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))


class FindingChange(Base):
    """Every status change a person made (waive / unwaive), with who and why."""

    __tablename__ = "finding_changes"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    finding_id: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    until: Mapped[dt.datetime | None]
    at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
