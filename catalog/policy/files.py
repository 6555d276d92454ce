"""Where the policy files live, and the process-wide, self-reloading views of them.

The ingest hot path is called by the HTTP writer, the CLI and rebuild alike, none of which carries the
settings down to it; so the parsed files are held here, once per process and per directory, and each
follows its file's mtime. `configure()` (app lifespan, CLI) points them at `Settings.policies_dir`.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.audit import service as audit
from catalog.findings.rules import RulesConfig, load_rules
from catalog.policy.products import ReloadingProductMap

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "policies"

_lock = threading.Lock()
_dir: Path | None = None
_products: dict[Path, ReloadingProductMap] = {}
_rules: dict[Path, tuple[int, float, RulesConfig]] = {}


def configure(policies_dir: Path | None) -> None:
    """Use `policies_dir` (None: `$CATALOG_POLICIES_DIR`, else the repository's `policies/`)."""
    global _dir
    _dir = policies_dir


def policies_dir() -> Path:
    if _dir is not None:
        return _dir
    env = os.environ.get("CATALOG_POLICIES_DIR")
    return Path(env) if env else DEFAULT_DIR


def product_map(directory: Path | None = None) -> ReloadingProductMap:
    path = (directory or policies_dir()) / "products.yaml"
    with _lock:
        current = _products.get(path)
        if current is None:
            current = _products[path] = ReloadingProductMap(path)
        return current


def rules_config(directory: Path | None = None) -> RulesConfig:
    """rules.yaml, re-read when its mtime changes (checked at most once a second)."""
    path = (directory or policies_dir()) / "rules.yaml"
    now = time.monotonic()
    with _lock:
        cached = _rules.get(path)
        if cached is not None and now - cached[1] < 1.0:
            return cached[2]
        mtime = path.stat().st_mtime_ns
        if cached is not None and cached[0] == mtime:
            _rules[path] = (mtime, now, cached[2])
            return cached[2]
        config = load_rules(path)
        _rules[path] = (mtime, now, config)
        return config


POLICY_FILES = ("products.yaml", "policy.csv", "model.conf", "rules.yaml", "classification.yaml")


async def record_policy_reload(
    conn: AsyncConnection, directory: Path, *, actor: str, products: list[str]
) -> None:
    """Chain a reload with the SHA-256 of each policy file, so the audit trail says which policy was in
    force from when (the files themselves live outside the database)."""
    digests = {
        name: hashlib.sha256((directory / name).read_bytes()).hexdigest()
        for name in POLICY_FILES
        if (directory / name).is_file()
    }
    await audit.record(
        conn,
        action="policy.reloaded",
        actor=actor,
        subject=f"policy:{directory}",
        details={"files": digests, "products": products},
    )
