"""parse_event: the real corpus, envelope errors and their pointers, timestamps, sanitising and the digest."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest

from catalog.openlineage.events import EventRejected, Limits, OpenLineageEvent
from catalog.openlineage.validation import parse_event, parse_logged
from tests.corpus import corpus_id, event_files, reject_files

CORPUS_EVENTS = event_files()
CORPUS_REJECTS = reject_files()

RUN_ID = "0195d3a4-7b1e-7c6a-9f00-3c2d1e0f4a5b"


def valid_event() -> dict[str, Any]:
    """A minimal, valid RunEvent (a fresh object every time: tests mutate it)."""
    return {
        "eventType": "START",
        "eventTime": "2024-05-01T12:00:00.123Z",
        "producer": "https://github.com/example/producer",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": RUN_ID, "facets": {}},
        "job": {"namespace": "airflow-payments", "name": "dag.task", "facets": {}},
        "inputs": [
            {"namespace": "postgres://db:5432", "name": "public.a", "facets": {}},
            {"namespace": "postgres://db:5432", "name": "public.b", "facets": {}},
        ],
        "outputs": [{"namespace": "bigquery", "name": "proj.ds.c", "facets": {}}],
    }


def resolve(doc: Any, pointer: str) -> tuple[Any, str | int]:
    """The container and key a JSON Pointer designates."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    for part in parts[:-1]:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    last = parts[-1]
    return doc, int(last) if isinstance(doc, list) else last


# -- the corpus ----------------------------------------------------------------------------------------


def test_the_corpus_is_there() -> None:
    # Guards the parametrised tests below against passing vacuously on a missing corpus.
    assert len(CORPUS_EVENTS) > 500
    assert len(CORPUS_REJECTS) >= 5


def test_a_logged_event_reads_back_as_it_was_accepted() -> None:
    # The projector reads stored payloads with parse_logged (no second sanitising walk, the stored digest):
    # for every corpus event it must give the event parse_event gave, redaction pointers aside (the
    # projector takes those from their own column).
    replay = Limits(latest_skew=timedelta(days=365 * 1000))
    for path in CORPUS_EVENTS:
        accepted = parse_event(orjson.loads(path.read_bytes()))
        stored = orjson.loads(orjson.dumps(accepted.payload))  # as jsonb gives it back
        logged = parse_logged(stored, accepted.digest, limits=replay)
        assert logged == replace(accepted, redactions=()), path.name


@pytest.mark.parametrize("path", CORPUS_EVENTS, ids=corpus_id)
def test_every_corpus_event_is_accepted(path: Path) -> None:
    received = orjson.loads(path.read_bytes())
    event = parse_event(received)

    assert event.event_time.tzinfo is UTC
    if event.kind == "run":
        assert event.run_id == UUID(received["run"]["runId"])
        assert event.job_name
        assert event.job_namespace
    if event.kind == "dataset":
        assert event.dataset is not None
        assert event.run_id is None
        assert event.job_name is None
    # Every facet kept as received: the payload differs from the input only where something was redacted.
    expected = copy.deepcopy(received)
    for pointer in event.redactions:
        container, key = resolve(expected, pointer)
        stored, _ = resolve(event.payload, pointer)
        container[key] = stored[key]
    assert event.payload == expected
    assert event.digest == hashlib.sha256(orjson.dumps(event.payload, option=orjson.OPT_SORT_KEYS)).digest()


@pytest.mark.parametrize("path", CORPUS_REJECTS, ids=corpus_id)
def test_every_corpus_reject_is_refused_naming_the_member(path: Path) -> None:
    with pytest.raises(EventRejected) as info:
        parse_event(orjson.loads(path.read_bytes()))
    assert 400 <= info.value.status < 500
    # The corpus README: these have no run id, or a run id that is not a UUID.
    assert info.value.pointer == "/run/runId"
    assert "runId" in info.value.detail


# -- envelope errors -------------------------------------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    def mutate(event: dict[str, Any]) -> None:
        container, key = resolve(event, path)
        container[key] = value

    return mutate


def _delete(path: str) -> Callable[[dict[str, Any]], Any]:
    def mutate(event: dict[str, Any]) -> None:
        container, key = resolve(event, path)
        del container[key]

    return mutate


def _nest(levels: int) -> dict[str, Any]:
    deep: dict[str, Any] = {}
    for _ in range(levels):
        deep = {"x": deep}
    return deep


# (id, mutation, expected pointer, status, type_)
BAD_ENVELOPES: list[tuple[str, Callable[[dict[str, Any]], Any], str, int, str]] = [
    ("missing eventTime", _delete("/eventTime"), "/eventTime", 422, "invalid-event"),
    ("eventTime null", _set("/eventTime", None), "/eventTime", 422, "invalid-event"),
    ("eventTime yesterday", _set("/eventTime", "yesterday"), "/eventTime", 422, "invalid-event"),
    ("eventTime a number", _set("/eventTime", 1714567890), "/eventTime", 422, "invalid-event"),
    ("eventTime date only", _set("/eventTime", "2024-05-01"), "/eventTime", 422, "invalid-event"),
    ("eventTime Feb 30", _set("/eventTime", "2024-02-30T00:00:00Z"), "/eventTime", 422, "invalid-event"),
    (
        "eventTime Arabic digits",
        _set("/eventTime", "٢٠٢٤-05-01T12:00:00Z"),
        "/eventTime",
        422,
        "invalid-event",
    ),
    ("eventTime before 1970", _set("/eventTime", "1969-12-31T23:59:59Z"), "/eventTime", 422, "invalid-event"),
    ("eventTime far future", _set("/eventTime", "2999-01-01T00:00:00Z"), "/eventTime", 422, "invalid-event"),
    ("runId 42", _set("/run/runId", 42), "/run/runId", 422, "invalid-event"),
    ("runId not a UUID", _set("/run/runId", "fake_run_id"), "/run/runId", 422, "invalid-event"),
    ("runId missing", _delete("/run/runId"), "/run/runId", 422, "invalid-event"),
    ("run missing", _delete("/run"), "/run", 422, "invalid-event"),
    ("run a string", _set("/run", "r"), "/run", 422, "invalid-event"),
    ("job missing", _delete("/job"), "/job", 422, "invalid-event"),
    ("job.name empty", _set("/job/name", ""), "/job/name", 422, "invalid-event"),
    ("job.name blank", _set("/job/name", "   "), "/job/name", 422, "invalid-event"),
    ("job.namespace missing", _delete("/job/namespace"), "/job/namespace", 422, "invalid-event"),
    ("job.name over-long", _set("/job/name", "j" * 1025), "/job/name", 422, "too-large"),
    ("inputs not a list", _set("/inputs", {"namespace": "a", "name": "b"}), "/inputs", 422, "invalid-event"),
    ("inputs[1] missing name", _delete("/inputs/1/name"), "/inputs/1/name", 422, "invalid-event"),
    ("outputs[0] not an object", _set("/outputs/0", "bigquery.c"), "/outputs/0", 422, "invalid-event"),
    (
        "outputs[0].namespace a number",
        _set("/outputs/0/namespace", 7),
        "/outputs/0/namespace",
        422,
        "invalid-event",
    ),
    ("unknown eventType", _set("/eventType", "DONE"), "/eventType", 422, "invalid-event"),
    ("eventType a number", _set("/eventType", 3), "/eventType", 422, "invalid-event"),
    ("producer a number", _set("/producer", 5), "/producer", 422, "invalid-event"),
    ("schemaURL an object", _set("/schemaURL", {}), "/schemaURL", 422, "invalid-event"),
    (
        "DatasetEvent without dataset",
        _set("/schemaURL", "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetEvent"),
        "/dataset",
        422,
        "invalid-event",
    ),
    (
        "too deep nesting in a facet",
        _set("/run/facets/deep", _nest(70)),
        # The event is level 1, run 2, facets 3, deep 4: the 65th level is the 61st "x" below deep.
        "/run/facets/deep" + "/x" * 61,
        422,
        "too-deep",
    ),
    (
        "over-long string",
        _set("/job/facets/sql", {"query": "s" * (1_048_576 + 1)}),
        "/job/facets/sql/query",
        422,
        "too-large",
    ),
    (
        "NaN",
        _set("/run/facets/stats", {"rows": float("nan")}),
        "/run/facets/stats/rows",
        422,
        "invalid-event",
    ),
    (
        "a non-JSON value",
        _set("/run/facets/when", datetime.now(UTC)),
        "/run/facets/when",
        422,
        "invalid-event",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "pointer", "status", "type_"),
    [case[1:] for case in BAD_ENVELOPES],
    ids=[c[0] for c in BAD_ENVELOPES],
)
def test_a_bad_envelope_is_refused_naming_the_member(
    mutate: Callable[[dict[str, Any]], Any], pointer: str, status: int, type_: str
) -> None:
    event = valid_event()
    parse_event(event)  # the base event itself is fine
    mutate(event)
    with pytest.raises(EventRejected) as info:
        parse_event(event)
    assert (info.value.pointer, info.value.status, info.value.type_) == (pointer, status, type_)
    assert info.value.detail  # a sentence, not empty


@pytest.mark.parametrize(
    "body", [[valid_event()], "event", 42, None], ids=["array", "string", "number", "null"]
)
def test_the_top_level_must_be_an_object(body: Any) -> None:
    with pytest.raises(EventRejected) as info:
        parse_event(body)
    assert (info.value.pointer, info.value.status) == ("", 422)
    assert "object" in info.value.detail


def test_the_detail_says_what_was_received_and_what_is_expected() -> None:
    event = valid_event()
    event["run"]["runId"] = "fake_run_id"
    with pytest.raises(EventRejected) as info:
        parse_event(event)
    assert info.value.detail == "run.runId must be a UUID, got 'fake_run_id'"


def test_too_many_datasets_are_refused_before_the_walk() -> None:
    event = valid_event()
    with pytest.raises(EventRejected) as info:
        parse_event(event, limits=Limits(max_datasets=2))
    assert (info.value.pointer, info.value.type_) == ("/outputs", "too-large")


def test_limits_below_the_memo_size_still_apply_to_repeated_strings() -> None:
    event = valid_event()
    parse_event(event)  # memoises "airflow-payments" as a clean string
    with pytest.raises(EventRejected) as info:
        parse_event(event, limits=Limits(max_string=10))
    assert info.value.type_ == "too-large"


# -- what is accepted --------------------------------------------------------------------------------------


def test_the_fields_of_a_run_event() -> None:
    event = valid_event()
    event["eventType"] = "complete"
    event["run"]["runId"] = RUN_ID.upper()
    event["outputs"][0]["outputFacets"] = {"outputStatistics": {"rowCount": 3}}
    parsed = parse_event(event)
    assert isinstance(parsed, OpenLineageEvent)
    assert parsed.kind == "run"
    assert parsed.event_type == "COMPLETE"
    assert parsed.run_id == UUID(RUN_ID)
    assert (parsed.job_namespace, parsed.job_name) == ("airflow-payments", "dag.task")
    assert [(d.namespace, d.name) for d in parsed.inputs] == [
        ("postgres://db:5432", "public.a"),
        ("postgres://db:5432", "public.b"),
    ]
    assert parsed.outputs[0].io_facets == {"outputStatistics": {"rowCount": 3}}
    assert parsed.inputs[0].io_facets == {}
    assert parsed.dataset is None
    assert parsed.redactions == ()
    assert parsed.payload["run"]["runId"] == RUN_ID.upper()  # stored as received


def test_optional_members_may_be_absent_or_null() -> None:
    event = valid_event()
    for key in ("eventType", "producer", "schemaURL", "inputs"):
        del event[key]
    event["outputs"] = None
    parsed = parse_event(event)
    assert (parsed.event_type, parsed.producer, parsed.schema_url) == (None, None, None)
    assert parsed.inputs == parsed.outputs == ()
    assert parsed.kind == "run"  # told by its shape


def test_facets_of_any_shape_are_stored_as_received() -> None:
    event = valid_event()
    event["run"]["facets"] = None
    event["job"]["facets"] = ["not", "an", "object"]
    event["inputs"][0]["facets"] = {
        "custom_thing": {"anything": [1, {"b": None}]},
        "schema": {"fields": [{"name": "a", "type": None}], "_deleted": None},
    }
    event["inputs"][1]["facets"] = "oops"
    parsed = parse_event(event)
    assert parsed.run_facets == {}
    assert parsed.job_facets == {}
    assert parsed.inputs[1].facets == {}
    assert parsed.payload["run"]["facets"] is None
    assert parsed.payload["job"]["facets"] == ["not", "an", "object"]
    assert parsed.payload["inputs"][1]["facets"] == "oops"
    assert parsed.inputs[0].facets == event["inputs"][0]["facets"]
    assert parsed.inputs[0].facets is parsed.payload["inputs"][0]["facets"]  # the payload's own dicts


def test_dataset_and_job_events() -> None:
    dataset_event = {
        "eventTime": "2024-05-01T12:00:00Z",
        "producer": "p",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetEvent",
        "dataset": {"namespace": "bigquery", "name": "a.b", "facets": {"schema": {"fields": []}}},
    }
    parsed = parse_event(dataset_event)
    assert parsed.kind == "dataset"
    assert parsed.dataset is not None
    assert parsed.dataset.facets == {"schema": {"fields": []}}
    assert parsed.job_namespace is None
    assert parsed.run_id is None

    del dataset_event["schemaURL"]
    assert parse_event(dataset_event).kind == "dataset"  # by shape

    job_event = valid_event()
    del job_event["run"], job_event["eventType"]
    job_event["schemaURL"] = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/JobEvent"
    parsed = parse_event(job_event)
    assert (parsed.kind, parsed.run_id, parsed.job_name, len(parsed.inputs)) == ("job", None, "dag.task", 2)


def test_a_run_event_with_a_stray_dataset_member_is_a_run_event() -> None:
    event = valid_event()
    event["dataset"] = {"namespace": "123", "name": "1"}
    parsed = parse_event(event)
    assert parsed.kind == "run"
    assert parsed.dataset is None
    assert parsed.payload["dataset"] == {"namespace": "123", "name": "1"}


def test_parse_event_does_not_touch_its_input_and_the_payload_is_its_own() -> None:
    event = valid_event()
    event["inputs"][0]["namespace"] = "postgres://u:hunter2@db:5432"
    before = copy.deepcopy(event)
    parsed = parse_event(event)
    assert event == before
    event["run"]["facets"]["added"] = {"later": True}
    event["inputs"][1]["name"] = "changed"
    assert "added" not in parsed.payload["run"]["facets"]
    assert parsed.payload["inputs"][1]["name"] == "public.b"


def test_a_replay_with_an_unbounded_skew_does_not_overflow() -> None:
    parsed = parse_event(valid_event(), limits=Limits(latest_skew=timedelta(days=365 * 1000)))
    assert parsed.event_time.year == 2024


# -- timestamps ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2021-01-01T00:00:00Z", datetime(2021, 1, 1, tzinfo=UTC)),
        ("2021-01-01T00:00:00.123Z", datetime(2021, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)),
        ("2021-01-01T00:00:00.123456Z", datetime(2021, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
        ("2021-01-01T00:00:00.123456789Z", datetime(2021, 1, 1, 0, 0, 0, 123457, tzinfo=UTC)),  # rounded
        ("2021-01-01T00:00:00.1234564Z", datetime(2021, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
        ("2021-12-31T23:59:59.9999996Z", datetime(2022, 1, 1, tzinfo=UTC)),  # the carry crosses a year
        ("2020-12-28T19:52:00.001+10:00", datetime(2020, 12, 28, 9, 52, 0, 1000, tzinfo=UTC)),
        ("2020-12-28T19:52:00.001+1000", datetime(2020, 12, 28, 9, 52, 0, 1000, tzinfo=UTC)),
        ("2020-12-28T19:52:00.001-03:30", datetime(2020, 12, 28, 23, 22, 0, 1000, tzinfo=UTC)),
        ("2020-12-28T19:52:00.12345-07:00", datetime(2020, 12, 29, 2, 52, 0, 123450, tzinfo=UTC)),
        ("2021-11-03T10:53:52.427343", datetime(2021, 11, 3, 10, 53, 52, 427343, tzinfo=UTC)),  # naive = UTC
        ("2021-11-03 10:53:52Z", datetime(2021, 11, 3, 10, 53, 52, tzinfo=UTC)),
    ],
)
def test_event_times_are_utc_rounded_to_microseconds(raw: str, expected: datetime) -> None:
    event = valid_event()
    event["eventTime"] = raw
    parsed = parse_event(event)
    assert parsed.event_time == expected
    assert parsed.event_time.tzinfo is UTC
    assert parsed.payload["eventTime"] == raw  # stored as received


# -- sanitising and the digest -------------------------------------------------------------------------


def test_nul_characters_are_replaced_in_values_and_keys() -> None:
    event = valid_event()
    event["job"]["name"] = "dag\x00task"
    event["run"]["facets"]["cu\x00stom"] = {"text": "a\x00b", "list": ["\x00"]}
    parsed = parse_event(event)
    assert parsed.job_name == "dag\ufffdtask"
    assert parsed.run_facets == {"cu\ufffdstom": {"text": "a\ufffdb", "list": ["\ufffd"]}}
    assert b"\\u0000" not in orjson.dumps(parsed.payload)
    assert parsed.redactions == ()
    assert event["job"]["name"] == "dag\x00task"  # the input is left alone


def _reversed_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reversed_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reversed_keys(v) for v in value]
    return value


def test_the_digest_is_stable_and_independent_of_key_order() -> None:
    event = valid_event()
    first = parse_event(event)
    assert parse_event(valid_event()).digest == first.digest
    assert parse_event(_reversed_keys(event)).digest == first.digest
    assert parse_event(orjson.loads(orjson.dumps(event, option=orjson.OPT_INDENT_2))).digest == first.digest
    assert len(first.digest) == 32

    changed = valid_event()
    changed["eventType"] = "COMPLETE"
    assert parse_event(changed).digest != first.digest


def test_parsing_a_stored_payload_again_changes_nothing() -> None:
    # `catalog rebuild` re-parses stored payloads: redaction must be idempotent so the digest holds.
    event = valid_event()
    event["inputs"][0]["namespace"] = "postgres://u:hunter2@db:5432"
    event["job"]["facets"]["sql"] = {"query": "CREATE USER x WITH PASSWORD 'hunter2'"}
    event["run"]["facets"]["conn"] = {"password": "hunter2", "nul": "a\x00b"}
    first = parse_event(event)
    assert len(first.redactions) == 3
    again = parse_event(first.payload)
    assert again.payload == first.payload
    assert again.digest == first.digest
    assert again.redactions == ()
