"""Request bodies and files to JSON values: bounded Content-Encoding decoding, JSON parsing, batch splitting."""

from __future__ import annotations

import zlib
from typing import Any

import orjson

from catalog.openlineage.events import EventRejected

# Output granted per zlib call. The decompressor never holds more than the limit plus one chunk, so a
# gzip bomb is refused after inflating ~limit bytes, not its full size.
_CHUNK = 256 * 1024
# "gzip, gzip, gzip, …" multiplies the work of a bomb: real clients apply one coding.
_MAX_CODINGS = 2
_BOM = b"\xef\xbb\xbf"
_NDJSON_TYPES = frozenset(
    {
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonl",
        "application/jsonlines",
        "application/x-jsonlines",
        "text/plain",
    }
)


def _describe(value: Any) -> str:
    """The JSON type of a value, for an error detail."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _too_large(limit: int) -> EventRejected:
    return EventRejected(
        "", f"the decompressed body exceeds the limit of {limit} bytes", status=413, type_="too-large"
    )


def _looks_zlib(data: bytes) -> bool:
    """Whether a "deflate" body has the zlib wrapper RFC 9110 asks for (some clients send raw deflate)."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and data[0] >> 4 <= 7 and (data[0] << 8 | data[1]) % 31 == 0


def _inflate(data: bytes, coding: str, limit: int) -> bytes:
    """Decompress incrementally, refusing with 413 as soon as the output passes `limit`."""
    if coding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    else:
        wbits = zlib.MAX_WBITS if _looks_zlib(data) else -zlib.MAX_WBITS
    out = bytearray()
    pending = data
    while True:  # once per gzip member: RFC 1952 allows several, concatenated
        inflater = zlib.decompressobj(wbits)
        try:
            while True:
                # max_length caps this call's output; what the input still holds stays in unconsumed_tail.
                chunk = inflater.decompress(pending, min(_CHUNK, limit - len(out) + 1))
                out += chunk
                if len(out) > limit:
                    raise _too_large(limit)
                pending = inflater.unconsumed_tail
                if inflater.eof or (not pending and not chunk):
                    break
        except zlib.error as exc:
            raise EventRejected(
                "", f"the body is not valid {coding} data: {exc}", status=400, type_="invalid-encoding"
            ) from None
        if not inflater.eof:
            raise EventRejected(
                "", f"the {coding} body is empty or truncated", status=400, type_="invalid-encoding"
            )
        rest = inflater.unused_data
        if coding == "gzip" and rest.strip(b"\x00"):
            pending = rest  # another member follows (trailing zero padding is tolerated, as gzip(1) does)
            continue
        if coding == "deflate" and rest:
            raise EventRejected(
                "",
                "the deflate body has data after the end of its stream",
                status=400,
                type_="invalid-encoding",
            )
        return bytes(out)


def decode_body(body: bytes, content_encoding: str | None, *, max_decompressed: int) -> bytes:
    """Undo the request's Content-Encoding (identity, gzip/x-gzip, deflate), bounded by `max_decompressed`.

    Raises EventRejected: 415 "unsupported-encoding" for any other coding, 413 "too-large" once the
    output would pass the bound (before inflating the rest), 400 "invalid-encoding" for corrupt data.
    """
    codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    for coding in codings:
        if coding not in ("gzip", "x-gzip", "deflate"):
            raise EventRejected(
                "",
                f"Content-Encoding {coding!r} is not supported; send gzip, deflate or identity",
                status=415,
                type_="unsupported-encoding",
            )
    if len(codings) > _MAX_CODINGS:
        raise EventRejected(
            "", f"at most {_MAX_CODINGS} content codings are accepted", status=400, type_="invalid-encoding"
        )
    data = body
    # Codings are listed in the order they were applied: undo the last one first.
    for coding in reversed(codings):
        data = _inflate(data, "deflate" if coding == "deflate" else "gzip", max_decompressed)
    if len(data) > max_decompressed:
        raise _too_large(max_decompressed)
    return data


def _json_error(exc: orjson.JSONDecodeError) -> str:
    return f"{exc.msg} at line {exc.lineno}, column {exc.colno} (char {exc.pos})"


def load_json(body: bytes) -> Any:
    """Parse a JSON body with orjson; EventRejected 400 "invalid-json" saying where it breaks."""
    if body.startswith(_BOM):
        body = body[len(_BOM) :]  # some Windows tools write one; it is not JSON but is harmless
    if not body.strip():
        raise EventRejected("", "the body is empty; expected JSON", status=400, type_="invalid-json")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise EventRejected(
            "", f"the body is not valid JSON: {_json_error(exc)}", status=400, type_="invalid-json"
        ) from None


def _ndjson(data: bytes) -> list[Any | EventRejected]:
    """One JSON value a non-blank line; a bad line becomes an EventRejected in its slot."""
    values: list[Any | EventRejected] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if number == 1 and line.startswith(_BOM):
            line = line[len(_BOM) :]
        if not line.strip():
            continue
        try:
            values.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            values.append(
                EventRejected(
                    "",
                    f"line {number}: not valid JSON: {exc.msg} at column {exc.colno}",
                    status=400,
                    type_="invalid-json",
                )
            )
    return values


def split_batch(body: bytes, content_type: str | None) -> list[Any | EventRejected]:
    """The events of a batch body, each a decoded JSON value or the EventRejected of its line.

    NDJSON media types (application/x-ndjson, application/jsonl, text/plain, …) are split by line so that
    one bad line does not cost the others. Anything else is read as JSON (the spec's batch form), which
    must be an array: otherwise the whole body is refused with 400.
    """
    media = (content_type or "application/json").partition(";")[0].strip().lower()
    if media in _NDJSON_TYPES:
        return _ndjson(body)
    value = load_json(body)
    if type(value) is not list:
        raise EventRejected(
            "",
            f"a batch must be a JSON array of events, got {_describe(value)} "
            "(send one event to /api/v1/lineage, or NDJSON with Content-Type: application/x-ndjson)",
            status=400,
            type_="invalid-batch",
        )
    return value


def iter_ndjson_or_json(data: bytes) -> list[Any | EventRejected]:
    """The events in a file: a JSON object is one event, a JSON array its elements, anything else is read
    as NDJSON (the OpenLineage file transport writes one event a line)."""
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    head = data.lstrip()[:1]
    if not head:
        return []
    if head in (b"{", b"["):
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            if head == b"[":
                # A broken array is not NDJSON: report the document's own error rather than one per line.
                return [
                    EventRejected("", f"not valid JSON: {_json_error(exc)}", status=400, type_="invalid-json")
                ]
            # Several objects: NDJSON.
        else:
            return value if type(value) is list else [value]
    return _ndjson(data)
