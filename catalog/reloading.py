"""A parsed policy file that follows its file's mtime: one mechanism for products.yaml, rules.yaml and
classification.yaml (catalog/policies_in_force.py holds one of each)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

import yaml

T = TypeVar("T")


class ReloadingFile(Generic[T]):
    """`current` re-reads the file when its mtime changed (checked at most every `interval` seconds)."""

    def __init__(self, path: Path, load: Callable[[Path], T], *, interval: float = 1.0) -> None:
        self.path = path
        self._load = load
        self._interval = interval
        self._lock = threading.Lock()
        # A missing or broken file fails here, when the service starts, not in the first ingest batch.
        self._mtime = path.stat().st_mtime_ns
        self._value = load(path)
        self._checked = time.monotonic()

    def reload(self) -> T:
        """Re-read the file now (POST /api/v1/policy/reload); raises, keeping the previous value, when the
        file is unreadable or invalid."""
        with self._lock:
            mtime = self.path.stat().st_mtime_ns
            self._value = self._load(self.path)
            self._mtime = mtime
            self._checked = time.monotonic()
            return self._value

    @property
    def current(self) -> T:
        now = time.monotonic()
        if now - self._checked >= self._interval:
            self._checked = now
            try:
                if self.path.stat().st_mtime_ns != self._mtime:
                    self.reload()
            except (OSError, ValueError, yaml.YAMLError):
                # A half-written or broken edit must not stop ingestion: keep the last good value (the
                # reload endpoint reports what is wrong with the file).
                pass
        return self._value
