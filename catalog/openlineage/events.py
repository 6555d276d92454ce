"""The parsed form of an OpenLineage event, the error raised for a refused one, and the limits applied."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

EventKind = Literal["run", "dataset", "job"]

#: The OpenLineage run states (spec 2-0-2); other values are refused, case is normalised to upper.
EVENT_TYPES: frozenset[str] = frozenset({"START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"})


@dataclass(frozen=True, slots=True)
class DatasetRef:
    """A dataset as an event names it: identity plus its facets (already sanitised and redacted)."""

    namespace: str
    name: str
    # Dataset facets as received; {} when the member is absent or not an object (the payload keeps it as is).
    facets: dict[str, Any]
    # inputFacets of an input / outputFacets of an output; {} when absent or not an object.
    io_facets: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OpenLineageEvent:
    """One accepted OpenLineage event (RunEvent, DatasetEvent or JobEvent)."""

    kind: EventKind
    event_type: str | None  # START/RUNNING/COMPLETE/ABORT/FAIL/OTHER, upper-cased; None when absent
    event_time: datetime  # tz-aware UTC, rounded to microseconds
    producer: str | None
    schema_url: str | None
    run_id: UUID | None  # None for dataset/job events
    run_facets: dict[str, Any]
    job_namespace: str | None  # None only for a DatasetEvent
    job_name: str | None
    job_facets: dict[str, Any]
    inputs: tuple[DatasetRef, ...]
    outputs: tuple[DatasetRef, ...]
    dataset: DatasetRef | None  # the DatasetEvent's dataset, else None
    payload: dict[str, Any]  # the whole event as it will be stored (sanitised + redacted), every facet kept
    digest: bytes  # sha256 of the canonical JSON of payload: the dedup key
    redactions: tuple[str, ...]  # JSON Pointers (RFC 6901) of the values that were redacted
    # The product of the key that sent it (set by the accepting route once the key is authorised, stored
    # with the event); None: a key acting for every product (admin, the operator's CLI). Not part of the
    # digest: the same event is the same event whoever retries it.
    emitter: str | None = None
    emitter_key: str | None = None  # the id of that key (for the audit log; stored beside the event)
    # The canonical JSON of payload (sorted keys) the digest was computed from, when the accepting path
    # built it: the log stores these bytes (as json: the text itself) rather than encoding the payload a
    # second time. None for an event read back from the log.
    canonical: bytes | None = field(default=None, compare=False, repr=False)


class EventRejected(Exception):
    """An event (or body) that must be refused."""

    pointer: str
    detail: str
    status: int
    type_: str

    def __init__(self, pointer: str, detail: str, *, status: int = 422, type_: str = "invalid-event") -> None:
        super().__init__(detail)
        self.pointer = pointer  # RFC 6901 pointer of the offending member; "" for the whole body
        self.detail = detail  # what is wrong and what is expected, one sentence
        self.status = status
        self.type_ = type_  # stable slug for problem+json "type"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments defeat Exception's default pickling; batch workers may send these
        # across process boundaries.
        return (_rebuild_rejected, (self.pointer, self.detail, self.status, self.type_))

    def __repr__(self) -> str:
        return (
            f"EventRejected(pointer={self.pointer!r}, detail={self.detail!r}, "
            f"status={self.status}, type_={self.type_!r})"
        )


def _rebuild_rejected(pointer: str, detail: str, status: int, type_: str) -> EventRejected:
    return EventRejected(pointer, detail, status=status, type_=type_)


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one event may contain; each breach is a 422 naming the member."""

    max_depth: int = 64  # nesting depth of objects/arrays anywhere in the event (the event itself is 1)
    max_string: int = 1_048_576  # characters of any one string (and any one object key)
    max_name: int = 1024  # characters of namespace / name fields (job, datasets)
    max_datasets: int = 10_000  # inputs + outputs
    earliest: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    latest_skew: timedelta = timedelta(days=366)  # event times later than now + skew are refused
