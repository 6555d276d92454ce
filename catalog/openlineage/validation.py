"""Validate one OpenLineage event: a strict envelope, lenient facets, every error naming its JSON Pointer."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import orjson

from catalog.openlineage.events import (
    EVENT_TYPES,
    DatasetRef,
    EventKind,
    EventRejected,
    Limits,
    OpenLineageEvent,
)
from catalog.openlineage.redaction import sanitise_event

_DEFAULT_LIMITS = Limits()
_EVENT_TYPES_TEXT = "START, RUNNING, COMPLETE, ABORT, FAIL, OTHER"

# ISO 8601 / RFC 3339 date-time as producers write it: any number of fraction digits (Spark and Java send
# nanoseconds), "Z", "+10:00", "+1000", "+10", or no zone at all (taken as UTC). A date alone is not an
# instant and is refused. Seconds may be omitted (ISO 8601 allows hh:mm).
_TIMESTAMP_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,18}))?)?"
    r"(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?",
    re.ASCII,  # \d would otherwise take any Unicode digit, which int() would then accept
)
_DATE_ONLY_RE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def _describe(value: Any) -> str:
    """A short rendering of an offending value for an error detail."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return repr(text)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def parse_timestamp(value: str) -> datetime:
    """A producer's date-time as tz-aware UTC, rounded to microseconds (PostgreSQL's precision).

    Raises ValueError with a sentence saying what is wrong.
    """
    m = _TIMESTAMP_RE.fullmatch(value)
    if m is None:
        if _DATE_ONLY_RE.fullmatch(value):
            raise ValueError("a date without a time of day is not an instant")
        raise ValueError("not an ISO 8601 date-time")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = m.groups()
    if fraction is None or len(fraction) <= 6:
        # The common case, already validated by the pattern: the C parser is ~15x faster than the below.
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass  # e.g. "," as the decimal mark on an older Python: build it by hand
        else:
            if moment.tzinfo is None:
                return moment.replace(tzinfo=UTC)
            return moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    micro = 0
    carry = False
    if fraction:
        micro = int(fraction[:6].ljust(6, "0"))
        # Round half up on the seventh digit: nanosecond timestamps must not fail, nor drift by truncation.
        if len(fraction) > 6 and fraction[6] >= "5":
            micro += 1
            if micro == 1_000_000:
                micro, carry = 0, True
    tz: timezone = UTC
    if sign is not None and not zulu:
        hours, minutes = int(off_h), int(off_m or 0)
        if hours > 23 or minutes > 59:
            raise ValueError("the UTC offset is out of range")
        delta = timedelta(hours=hours, minutes=minutes)
        tz = timezone(-delta if sign == "-" else delta)
    # datetime() itself refuses month 13, February 30, hour 24, second 60 and the like.
    moment = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro, tzinfo=tz
    )
    if carry:
        moment += timedelta(seconds=1)
    return moment if tz is UTC else moment.astimezone(UTC)


def _event_time(payload: dict[str, Any], limits: Limits) -> datetime:
    if "eventTime" not in payload or payload["eventTime"] is None:
        raise EventRejected(
            "/eventTime", "eventTime is required: an ISO 8601 date-time such as 2024-05-01T12:00:00Z"
        )
    raw = payload["eventTime"]
    if type(raw) is not str:
        raise EventRejected(
            "/eventTime",
            f"eventTime must be an ISO 8601 date-time string such as 2024-05-01T12:00:00Z, got {_describe(raw)}",
        )
    try:
        moment = parse_timestamp(raw)
    except (ValueError, OverflowError) as exc:
        raise EventRejected(
            "/eventTime",
            f"eventTime must be an ISO 8601 date-time such as 2024-05-01T12:00:00Z, got {_describe(raw)} ({exc})",
        ) from None
    if moment < limits.earliest:
        raise EventRejected(
            "/eventTime",
            f"eventTime {_describe(raw)} is before {limits.earliest.isoformat()}, the earliest accepted",
        )
    now = datetime.now(UTC)
    try:
        latest = now + limits.latest_skew
    except OverflowError:  # a replay configured with an "unlimited" skew
        latest = datetime.max.replace(tzinfo=UTC)
    if moment > latest:
        raise EventRejected(
            "/eventTime",
            f"eventTime {_describe(raw)} is more than {limits.latest_skew.days} days in the future; "
            "check the producer's clock",
        )
    return moment


def _name(value: Any, pointer: str, label: str, limits: Limits) -> str:
    """A namespace or name: a non-blank string of at most limits.max_name characters."""
    if type(value) is not str or not value or value.isspace():
        what = "is required" if value is None else f"must be a non-empty string, got {_describe(value)}"
        raise EventRejected(pointer, f"{label} {what}")
    if len(value) > limits.max_name:
        raise EventRejected(
            pointer,
            f"{label} is {len(value)} characters long; the limit is {limits.max_name}",
            type_="too-large",
        )
    return value


def _facets(container: dict[str, Any], key: str) -> dict[str, Any]:
    """A facets member as a dict: facets are lenient, so null or a non-object is {} (the payload keeps it)."""
    facets = container.get(key)
    return facets if type(facets) is dict else {}


def _dataset(item: Any, pointer: str, label: str, io_key: str | None, limits: Limits) -> DatasetRef:
    if type(item) is not dict:
        raise EventRejected(
            pointer, f"{label} must be an object with namespace and name, got {_describe(item)}"
        )
    return DatasetRef(
        namespace=_name(item.get("namespace"), f"{pointer}/namespace", f"{label}.namespace", limits),
        name=_name(item.get("name"), f"{pointer}/name", f"{label}.name", limits),
        facets=_facets(item, "facets"),
        io_facets=_facets(item, io_key) if io_key else {},
    )


def _datasets(payload: dict[str, Any], key: str, io_key: str, limits: Limits) -> tuple[DatasetRef, ...]:
    items = payload.get(key)
    if items is None:
        return ()
    if type(items) is not list:
        raise EventRejected(f"/{key}", f"{key} must be an array of datasets, got {_describe(items)}")
    max_name = limits.max_name
    refs: list[DatasetRef] = []
    for i, item in enumerate(items):
        # Fast path for the well-formed case; the pointer strings are only built for an error.
        if type(item) is dict:
            namespace, name = item.get("namespace"), item.get("name")
            if (
                type(namespace) is str
                and type(name) is str
                and 0 < len(namespace) <= max_name
                and 0 < len(name) <= max_name
                and not namespace.isspace()
                and not name.isspace()
            ):
                facets, io_facets = item.get("facets"), item.get(io_key)
                refs.append(
                    DatasetRef(
                        namespace,
                        name,
                        facets if type(facets) is dict else {},
                        io_facets if type(io_facets) is dict else {},
                    )
                )
                continue
        refs.append(_dataset(item, f"/{key}/{i}", f"{key}[{i}]", io_key, limits))
    return tuple(refs)


def _optional_string(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None or type(value) is str:
        return value
    raise EventRejected(f"/{key}", f"{key} must be a string (a URI), got {_describe(value)}")


def _kind(payload: dict[str, Any]) -> EventKind:
    """RunEvent, DatasetEvent or JobEvent: by the end of schemaURL, else by shape (old producers send none)."""
    schema_url = payload.get("schemaURL")
    if type(schema_url) is str:
        ref = schema_url.rpartition("#")[2] if "#" in schema_url else schema_url
        tail = ref.rstrip("/").rpartition("/")[2]
        if tail == "RunEvent":
            return "run"
        if tail == "DatasetEvent":
            return "dataset"
        if tail == "JobEvent":
            return "job"
    if payload.get("run") is not None:
        return "run"
    if payload.get("dataset") is not None:
        return "dataset"
    if payload.get("job") is not None:
        return "job"
    return "run"  # nothing to go by: report what a RunEvent lacks


def _count_datasets(obj: dict[str, Any], limits: Limits) -> None:
    """Refuse a huge inputs/outputs list before walking it."""
    inputs, outputs = obj.get("inputs"), obj.get("outputs")
    n_in = len(inputs) if type(inputs) is list else 0
    n_out = len(outputs) if type(outputs) is list else 0
    if n_in + n_out > limits.max_datasets:
        raise EventRejected(
            "/inputs" if n_in > limits.max_datasets else "/outputs",
            f"the event names {n_in} inputs and {n_out} outputs; the limit is {limits.max_datasets} in all",
            type_="too-large",
        )


def parse_event(
    obj: Any,
    *,
    limits: Limits = _DEFAULT_LIMITS,
    emitter: str | None = None,
    emitter_key: str | None = None,
) -> OpenLineageEvent:
    """Validate a decoded JSON value as one OpenLineage event; raise EventRejected naming what is wrong.

    The returned event's payload is a sanitised (NUL -> U+FFFD) and redacted copy of `obj` that keeps every
    facet as received; `obj` itself is not modified. Facets that needed no change may be shared with `obj`
    rather than copied (catalog/openlineage/redaction.py `_walk_facets`): hand over a freshly decoded
    value and do not change it afterwards. `emitter` and `emitter_key`: the product and id of the key
    that sent it, when the caller has authorised one (stored with the event, not part of its digest).
    """
    if not isinstance(obj, dict):
        raise EventRejected("", f"an OpenLineage event must be a JSON object, got {_describe(obj)}")
    _count_datasets(obj, limits)
    payload, redactions = sanitise_event(obj, max_depth=limits.max_depth, max_string=limits.max_string)
    try:
        canonical = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:
        # Only reachable for objects not decoded by orjson (integers beyond 64 bits, lone surrogates).
        raise EventRejected("", f"the event holds a value that cannot be stored as JSON: {exc}") from None
    # The emitter is given here rather than set later with dataclasses.replace, which copies every field
    # (measurable per event in a batch of thousands).
    digest = hashlib.sha256(canonical).digest()
    return _structure(payload, digest, tuple(redactions), limits, canonical, emitter, emitter_key)


def parse_logged(payload: dict[str, Any], digest: bytes, *, limits: Limits) -> OpenLineageEvent:
    """An event read back from the event log, where `parse_event` stored it: its payload is already the
    sanitised, redacted copy and `digest` is the one computed then. Walking and hashing it again would
    repeat the accepting path's work for nothing (it was 40 % of the projector's time, measured with
    `python bench/ingest.py`); only its structure is read. The log is the source of truth: what it holds
    is projected as it is, even if the redaction rules changed since."""
    return _structure(payload, digest, (), limits)


def _structure(
    payload: dict[str, Any],
    digest: bytes,
    redactions: tuple[str, ...],
    limits: Limits,
    canonical: bytes | None = None,
    emitter: str | None = None,
    emitter_key: str | None = None,
) -> OpenLineageEvent:
    """The typed event of a sanitised payload (EventRejected names what is wrong)."""
    kind = _kind(payload)

    run_id: UUID | None = None
    run_facets: dict[str, Any] = {}
    job_namespace: str | None = None
    job_name: str | None = None
    job_facets: dict[str, Any] = {}
    inputs: tuple[DatasetRef, ...] = ()
    outputs: tuple[DatasetRef, ...] = ()
    dataset: DatasetRef | None = None

    if kind == "run":
        run = payload.get("run")
        if type(run) is not dict:
            what = "is required for a RunEvent" if run is None else f"must be an object, got {_describe(run)}"
            raise EventRejected("/run", f"run {what}: an object with a runId (a UUID)")
        raw_id = run.get("runId")
        if raw_id is None:
            raise EventRejected(
                "/run/runId", "run.runId is required: a UUID such as 0195d3a4-7b1e-7c6a-9f00-3c2d1e0f4a5b"
            )
        if type(raw_id) is not str:
            raise EventRejected("/run/runId", f"run.runId must be a UUID string, got {_describe(raw_id)}")
        try:
            run_id = UUID(raw_id)
        except ValueError:
            raise EventRejected("/run/runId", f"run.runId must be a UUID, got {_describe(raw_id)}") from None
        run_facets = _facets(run, "facets")

    if kind == "dataset":
        raw_dataset = payload.get("dataset")
        if raw_dataset is None:
            raise EventRejected(
                "/dataset", "dataset is required for a DatasetEvent: an object with namespace and name"
            )
        dataset = _dataset(raw_dataset, "/dataset", "dataset", None, limits)
    else:
        job = payload.get("job")
        if type(job) is not dict:
            what = "is required" if job is None else f"must be an object, got {_describe(job)}"
            raise EventRejected("/job", f"job {what}: an object with namespace and name")
        job_namespace = _name(job.get("namespace"), "/job/namespace", "job.namespace", limits)
        job_name = _name(job.get("name"), "/job/name", "job.name", limits)
        job_facets = _facets(job, "facets")
        inputs = _datasets(payload, "inputs", "inputFacets", limits)
        outputs = _datasets(payload, "outputs", "outputFacets", limits)

    event_time = _event_time(payload, limits)

    event_type: str | None = None
    raw_type = payload.get("eventType")
    if raw_type is not None:
        if type(raw_type) is not str or raw_type.upper() not in EVENT_TYPES:
            raise EventRejected(
                "/eventType", f"eventType must be one of {_EVENT_TYPES_TEXT}, got {_describe(raw_type)}"
            )
        event_type = raw_type.upper()

    producer = _optional_string(payload, "producer")
    schema_url = _optional_string(payload, "schemaURL")

    return OpenLineageEvent(
        kind=kind,
        event_type=event_type,
        event_time=event_time,
        producer=producer,
        schema_url=schema_url,
        run_id=run_id,
        run_facets=run_facets,
        job_namespace=job_namespace,
        job_name=job_name,
        job_facets=job_facets,
        inputs=inputs,
        outputs=outputs,
        dataset=dataset,
        payload=payload,
        digest=digest,
        redactions=redactions,
        emitter=emitter,
        emitter_key=emitter_key,
        canonical=canonical,
    )
