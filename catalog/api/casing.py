"""The API's one key convention: camelCase, as Marquez answers. Parts of the model are stored with
snake_case keys (a finding's columns, its evidence and subject JSON); their responses say them in
camelCase here, at the edge, so the stored JSON and the exports keep their own documented shape."""

from __future__ import annotations

import re
from typing import Any

_SNAKE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)+$")
_PART = re.compile(r"_([a-z0-9])")


def camel(key: str) -> str:
    """`first_seen` -> `firstSeen`; a key that is not snake_case (`runId`, `cross-product-access`, a
    name with capitals or dots) is returned unchanged."""
    return _PART.sub(lambda m: m.group(1).upper(), key) if _SNAKE.match(key) else key


def camel_keys(value: Any) -> Any:
    """`value` with every dict key, at any depth, in camelCase (values untouched)."""
    if isinstance(value, dict):
        return {camel(k) if isinstance(k, str) else k: camel_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    return value
