"""What a grant covers: the one definition of grant matching, used by the enforcer (every read) and by
the cross-product findings rule alike, so a flow is judged granted exactly when the read is allowed.

A grant names a scope:

- `dataset`: that one dataset (namespace and name equal, character for character);
- `namespace`: every dataset of exactly that namespace — not of a namespace it is a prefix of
  (`s3://lake` covers no dataset of `s3://lake/restricted`, `…:5432` none of `…:54321`);
- `pattern`: the datasets whose namespace matches the namespace glob and whose name matches the name
  glob (no name glob: every dataset of the matching namespaces). Globs match the whole string and are
  segment-aware: `*` is any run of characters without `/` or `:`, `?` one such character, `**` any run
  of characters at all (it crosses `/` and `:`); every other character is itself.

A resource is a `DatasetRef`: one dataset, or (name None) a namespace-wide page, which only a grant
covering every dataset of the namespace opens (a namespace grant, or a pattern grant with no name glob
or the name glob `**`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

SCOPES = ("dataset", "namespace", "pattern")


@dataclass(frozen=True, slots=True)
class DatasetRef:
    """A dataset (or, with `name` None, every dataset of a namespace) a read asks a grant for."""

    namespace: str
    name: str | None

    def __str__(self) -> str:
        return f"dataset:{self.namespace}/{'*' if self.name is None else self.name}"


@functools.lru_cache(maxsize=4096)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """The compiled regular expression of a segment-aware glob (see the module docstring)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/:]*")
        elif char == "?":
            out.append("[^/:]")
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def glob_matches(pattern: str, value: str) -> bool:
    return glob_regex(pattern).fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class GrantScope:
    """The datasets one grant covers."""

    scope: str  # one of SCOPES
    namespace: str
    name: str | None

    def covers(self, ref: DatasetRef) -> bool:
        if self.scope == "dataset":
            return ref.name is not None and ref.namespace == self.namespace and ref.name == self.name
        if self.scope == "namespace":
            return ref.namespace == self.namespace
        if self.scope != "pattern" or not glob_matches(self.namespace, ref.namespace):
            return False
        if self.name is None or self.name == "**":
            return True
        return ref.name is not None and glob_matches(self.name, ref.name)

    def __str__(self) -> str:
        name = {"namespace": "*", "dataset": self.name}.get(self.scope, self.name or "**")
        return f"{self.scope}:{self.namespace}/{name}"


def covered(scopes: Iterable[GrantScope], ref: DatasetRef) -> bool:
    """Does any of `scopes` cover `ref`?"""
    return any(s.covers(ref) for s in scopes)
