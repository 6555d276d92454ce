"""Text PostgreSQL cannot store, refused at the edge with a 400 naming the parameter.

PostgreSQL `text` holds neither NUL nor anything that is not valid UTF-8; asyncpg cannot even encode a
lone surrogate. Such a value used to reach a query and fail there (a 500, or GraphQL's "internal
error"). Every way text enters goes through `text_defect`:

- path segments and query parameters: `ParameterTextMiddleware` (catalog/api/text_guard.py), before routing, on the raw bytes (after
  percent-decoding, an invalid UTF-8 sequence would otherwise become U+FFFD silently);
- JSON bodies of REST routes: `StoredText` fields / `InputModel` (catalog/api/rest/inputs.py);
- GraphQL variables and string literals: the GraphQL router (catalog/api/graphql/__init__.py).

The ingest path keeps its own rule (NUL replaced by U+FFFD, see catalog/openlineage/redaction.py): an
event is stored as received, and a producer cannot be asked to resend a facet it does not control.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import Scope

NUL = "\x00"


def text_defect(value: str) -> str | None:
    """Why `value` cannot be stored as PostgreSQL text, or None when it can."""
    if NUL in value:
        return "must not contain NUL (\\u0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"must be valid Unicode (a lone surrogate at character {exc.start})"
    return None


def bytes_defect(raw: bytes) -> str | None:
    """Why percent-decoded bytes cannot be a parameter value, or None."""
    if b"\x00" in raw:
        return "must not contain NUL (%00)"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"must be valid UTF-8 (invalid byte 0x{raw[exc.start]:02X} at byte {exc.start})"
    return None


def json_defect(value: Any, pointer: str = "") -> tuple[str, str] | None:
    """The JSON pointer and reason of the first string (member name or value) that cannot be stored."""
    if isinstance(value, str):
        reason = text_defect(value)
        return (pointer, reason) if reason else None
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{pointer}/{_escape(str(key))}"
            reason = text_defect(str(key))
            if reason:
                return child, f"member name {reason}"
            found = json_defect(item, child)
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = json_defect(item, f"{pointer}/{index}")
            if found:
                return found
    return None


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _printable(raw: bytes) -> str:
    """A parameter name for a message (it may itself be the bad text)."""
    return raw.decode("utf-8", "backslashreplace").replace(NUL, "\\x00")


# -- path and query --------------------------------------------------------------------------------------


def query_defects(query: bytes) -> Iterator[tuple[str, str]]:
    for pair in query.split(b"&"):
        if not pair:
            continue
        name, _, value = pair.partition(b"=")
        raw_name = unquote_to_bytes(name.replace(b"+", b" "))
        reason = bytes_defect(raw_name)
        if reason:
            shown = _printable(raw_name)
            yield shown, f"the name of query parameter '{shown}' {reason}"
            continue
        reason = bytes_defect(unquote_to_bytes(value.replace(b"+", b" ")))
        if reason:
            yield raw_name.decode(), f"query parameter {raw_name.decode()!r} {reason}"


# A bad segment is replaced by a marker holding its index, and the request is routed as usual: the
# route's own parameter names then say which parameter it was (text_guard.reject_marked_path_parameters, a
# dependency of every route). Matching routes by hand before routing would duplicate the router.
BAD_SEGMENTS = "bad_path_segments"
_MARK = "\x01bad{}\x01"


def path_defects(raw_path: bytes) -> dict[int, str]:
    defects = {}
    for index, segment in enumerate(raw_path.split(b"/")):
        reason = bytes_defect(unquote_to_bytes(segment))
        if reason:
            defects[index] = reason
    return defects


def mark_segments(raw_path: bytes, defects: dict[int, str]) -> bytes:
    segments = raw_path.split(b"/")
    for index in defects:
        segments[index] = _MARK.format(index).encode()
    return b"/".join(segments)


def path_segment_problem(scope: Scope, path_params: dict[str, Any]) -> tuple[str, str] | None:
    """(detail, parameter) for a path segment the middleware marked, or None."""
    defects: dict[int, str] = (scope.get("state") or {}).get(BAD_SEGMENTS) or {}
    for index, reason in defects.items():
        mark = _MARK.format(index)
        for name, value in path_params.items():
            if isinstance(value, str) and mark in value:
                return f"path parameter {name!r} {reason}", str(name)
        return f"path segment {index} {reason}", f"path segment {index}"
    return None
