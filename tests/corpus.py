"""Where the corpus of real OpenLineage events lives, and its files.

The corpus is vendored in `tests/data/corpus` (a copy of the team's `../shared/corpus`, with its
PROVENANCE.md) so that a clone anywhere runs the suite; `CATALOG_CORPUS_DIR` points at another copy.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("CATALOG_CORPUS_DIR") or REPO_ROOT / "tests" / "data" / "corpus")


def _json_files(folder: str) -> list[Path]:
    # Only the events: PROVENANCE.md / PROVENANCE.tsv sit beside them.
    return sorted((CORPUS / folder).rglob("*.json"))


def event_files() -> list[Path]:
    """Every event the server must accept (`events/**.json`), sorted."""
    return _json_files("events")


def reject_files() -> list[Path]:
    """Every event the server must refuse with a 4xx (`reject/**.json`), sorted."""
    return _json_files("reject")


def corpus_id(path: Path) -> str:
    """A test id for a corpus file: its path below events/ or reject/."""
    for folder in ("events", "reject"):
        root = CORPUS / folder
        if path.is_relative_to(root):
            return path.relative_to(root).as_posix()
    return path.name
