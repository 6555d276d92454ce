"""Request bodies: Content-Encoding with a bound (gzip bombs), JSON errors, batches and NDJSON files."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from typing import Any

import pytest

from catalog.openlineage.body import decode_body, iter_ndjson_or_json, load_json, split_batch
from catalog.openlineage.events import EventRejected

EVENT = b'{"eventTime": "2024-05-01T12:00:00Z", "run": {"runId": "x"}}'
MB = 1 << 20


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """200 MB of zeros, gzip-compressed to ~200 KB (built once: compressing takes ~0.5 s)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MB)
    return b"".join(compressor.compress(zeros) for _ in range(200)) + compressor.flush()


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        (None, EVENT),
        ("", EVENT),
        ("identity", EVENT),
        ("gzip", gzip.compress(EVENT)),
        ("GZIP", gzip.compress(EVENT)),
        ("x-gzip", gzip.compress(EVENT)),
        ("deflate", zlib.compress(EVENT)),
        ("deflate", _raw_deflate(EVENT)),  # raw deflate, as some clients send it
        ("gzip", gzip.compress(EVENT[:20]) + gzip.compress(EVENT[20:])),  # two gzip members
        ("gzip, identity", gzip.compress(EVENT)),
    ],
    ids=["none", "empty", "identity", "gzip", "GZIP", "x-gzip", "deflate", "raw-deflate", "members", "list"],
)
def test_supported_encodings_decode(encoding: str | None, body: bytes) -> None:
    assert decode_body(body, encoding, max_decompressed=MB) == EVENT


class _CountingInflater:
    """A zlib decompressor that counts the bytes it inflates (the work a bomb costs, deterministically)."""

    def __init__(self, wbits: int, inflated: list[int]) -> None:
        self._inner = _decompressobj(wbits)
        self._inflated = inflated

    def decompress(self, data: bytes, max_length: int = 0) -> bytes:
        out = self._inner.decompress(data, max_length)
        self._inflated.append(len(out))
        return out

    def __getattr__(self, name: str) -> Any:  # eof, unconsumed_tail, unused_data
        return getattr(self._inner, name)


_decompressobj = zlib.decompressobj


def test_a_gzip_bomb_is_refused_before_it_is_inflated(
    gzip_bomb: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(gzip_bomb) < 1 * MB
    inflated: list[int] = []
    monkeypatch.setattr(zlib, "decompressobj", lambda wbits: _CountingInflater(wbits, inflated))
    tracemalloc.start()
    try:
        with pytest.raises(EventRejected) as info:
            decode_body(gzip_bomb, "gzip", max_decompressed=8 * MB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (info.value.status, info.value.type_, info.value.pointer) == (413, "too-large", "")
    assert peak < 24 * MB  # the cap plus a chunk and a copy, never the 200 MB
    # Inflating stops one byte past the cap: 8 MB + 1 of the 200 MB, in chunks of at most 256 KB.
    assert sum(inflated) == 8 * MB + 1
    assert max(inflated) <= 256 * 1024


def test_a_body_just_under_the_bound_is_fine() -> None:
    data = bytes(MB)
    assert decode_body(gzip.compress(data), "gzip", max_decompressed=MB) == data
    with pytest.raises(EventRejected) as info:
        decode_body(gzip.compress(data + b"!"), "gzip", max_decompressed=MB)
    assert info.value.status == 413


def test_an_identity_body_over_the_bound_is_too_large() -> None:
    with pytest.raises(EventRejected) as info:
        decode_body(b"x" * 11, None, max_decompressed=10)
    assert (info.value.status, info.value.type_) == (413, "too-large")


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", b"this is not gzip"),
        ("gzip", gzip.compress(EVENT)[:-12]),  # truncated
        ("gzip", b""),
        ("gzip", gzip.compress(EVENT) + b"garbage"),
        ("deflate", b"\x78\x9c not deflate"),
    ],
    ids=["not-gzip", "truncated", "empty", "trailing-garbage", "corrupt-deflate"],
)
def test_corrupt_compressed_bodies_are_a_400(encoding: str, body: bytes) -> None:
    with pytest.raises(EventRejected) as info:
        decode_body(body, encoding, max_decompressed=MB)
    assert info.value.status == 400
    assert info.value.detail


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, br"])
def test_unsupported_encodings_are_a_415(encoding: str) -> None:
    with pytest.raises(EventRejected) as info:
        decode_body(gzip.compress(EVENT), encoding, max_decompressed=MB)
    assert (info.value.status, info.value.type_) == (415, "unsupported-encoding")
    assert "gzip" in info.value.detail  # says what is supported


def test_stacked_codings_are_bounded() -> None:
    body = gzip.compress(gzip.compress(gzip.compress(EVENT)))
    with pytest.raises(EventRejected) as info:
        decode_body(body, "gzip, gzip, gzip", max_decompressed=MB)
    assert info.value.status == 400


# -- JSON --------------------------------------------------------------------------------------------------


def test_load_json() -> None:
    assert load_json(b'{"a": [1, 2]}') == {"a": [1, 2]}
    assert load_json(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}  # a UTF-8 BOM is tolerated


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"a": 1,\n "b": }', "line 2, column 7"),
        (b'{"a": 1', "line 1"),
        (b"", "empty"),
        (b"  \n ", "empty"),
        (b'{"a": "\xff"}', "line 1"),  # not UTF-8
    ],
    ids=["syntax", "truncated", "empty", "blank", "not-utf8"],
)
def test_invalid_json_is_a_400_saying_where(body: bytes, where: str) -> None:
    with pytest.raises(EventRejected) as info:
        load_json(body)
    assert (info.value.status, info.value.type_, info.value.pointer) == (400, "invalid-json", "")
    assert where in info.value.detail


# -- batches -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "application/json", "application/json; charset=utf-8"])
def test_a_json_batch_is_an_array(content_type: str | None) -> None:
    assert split_batch(b'[{"a": 1}, {"b": 2}, 3]', content_type) == [{"a": 1}, {"b": 2}, 3]


@pytest.mark.parametrize("body", [b'{"a": 1}', b'"events"', b"null"])
def test_a_json_batch_that_is_not_an_array_is_refused_whole(body: bytes) -> None:
    with pytest.raises(EventRejected) as info:
        split_batch(body, "application/json")
    assert (info.value.status, info.value.pointer) == (400, "")
    assert "array" in info.value.detail


def test_a_broken_json_batch_is_refused_whole() -> None:
    with pytest.raises(EventRejected) as info:
        split_batch(b'[{"a": 1},', None)
    assert (info.value.status, info.value.type_) == (400, "invalid-json")


@pytest.mark.parametrize(
    "content_type",
    ["application/x-ndjson", "application/jsonl", "text/plain; charset=utf-8", "Application/X-NDJSON"],
)
def test_ndjson_with_a_bad_line_keeps_the_others(content_type: str) -> None:
    body = b'{"a": 1}\r\n\n{"b": \n{"c": 3}\n   \n[4]'
    items = split_batch(body, content_type)
    assert len(items) == 4
    assert items[0] == {"a": 1}
    assert items[2] == {"c": 3}
    assert items[3] == [4]  # valid JSON; parse_event will say it is not an event
    bad = items[1]
    assert isinstance(bad, EventRejected)
    assert (bad.status, bad.pointer, bad.type_) == (400, "", "invalid-json")
    assert bad.detail.startswith("line 3: ")


# -- files ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"a": 1}', [{"a": 1}]),
        (b'{\n  "a": 1,\n  "b": [1, 2]\n}\n', [{"a": 1, "b": [1, 2]}]),  # one pretty-printed event
        (b'[{"a": 1}, {"b": 2}]', [{"a": 1}, {"b": 2}]),
        (b'{"a": 1}\n{"b": 2}\n', [{"a": 1}, {"b": 2}]),  # the file transport's output
        (b"\xef\xbb\xbf" + b'{"a": 1}\n{"b": 2}', [{"a": 1}, {"b": 2}]),
        (b"", []),
        (b" \n ", []),
    ],
    ids=["object", "pretty", "array", "ndjson", "bom-ndjson", "empty", "blank"],
)
def test_files_hold_an_event_an_array_or_ndjson(data: bytes, expected: list[object]) -> None:
    assert iter_ndjson_or_json(data) == expected


def test_a_bad_line_in_a_file_is_reported_in_its_slot() -> None:
    items = iter_ndjson_or_json(b'{"a": 1}\n{"b": oops}\n{"c": 3}\n')
    assert items[0] == {"a": 1}
    assert items[2] == {"c": 3}
    assert isinstance(items[1], EventRejected)
    assert items[1].detail.startswith("line 2: ")


def test_a_broken_array_file_is_one_error() -> None:
    items = iter_ndjson_or_json(b'[{"a": 1},\n{"b": 2}\n')
    assert len(items) == 1
    assert isinstance(items[0], EventRejected)
    assert items[0].status == 400
