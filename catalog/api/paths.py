"""The path the router sees for a raw request path: `%2F` and `%25` stay encoded (an OpenLineage name such
as `postgres://db:5432` sent as one URL-encoded segment stays one path parameter), the rest is decoded."""

from __future__ import annotations

from urllib.parse import unquote

# Placeholders for the two escapes kept while the rest is decoded; they hold characters no decoded
# path can contain at this point (paths with NUL are refused before routing, catalog/api/text_guard.py).
_SLASH = "\x00sl"
_PERCENT = "\x00pct"


def routing_path(raw_path: str) -> str:
    """`raw_path` (latin-1 text of the raw bytes, without the query) decoded except `%2F`/`%25`."""
    protected = raw_path.replace("%25", _PERCENT).replace("%2F", _SLASH).replace("%2f", _SLASH)
    return unquote(protected).replace(_SLASH, "%2F").replace(_PERCENT, "%25")
