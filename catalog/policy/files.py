"""Where the policy files live, and the process-wide, self-reloading views of them.

The ingest hot path is called by the HTTP writer, the CLI and rebuild alike, none of which carries the
settings down to it; so the parsed files are held here, once per process and per directory, and each
follows its file's mtime. `configure()` (app lifespan, CLI) points them at `Settings.policies_dir`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
from pathlib import Path

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from catalog.audit import service as audit
from catalog.classification.rules import ReloadingRuleSet, RuleSet
from catalog.findings.rules import RulesConfig, load_rules
from catalog.periodic import Periodic
from catalog.policy.products import ReloadingProductMap

log = logging.getLogger(__name__)

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "policies"  # package data: catalog/policies/

_lock = threading.Lock()
_dir: Path | None = None
_products: dict[Path, ReloadingProductMap] = {}
_rules: dict[Path, tuple[int, float, RulesConfig]] = {}
_classification: dict[Path, ReloadingRuleSet] = {}


def configure(policies_dir: Path | None) -> None:
    """Use `policies_dir` (None: `$CATALOG_POLICIES_DIR`, else the packaged `catalog/policies/`)."""
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


def classification_file(directory: Path | None = None) -> ReloadingRuleSet:
    """classification.yaml (the PII name rules) of the policies directory, following its mtime."""
    path = (directory or policies_dir()) / "classification.yaml"
    with _lock:
        current = _classification.get(path)
        if current is None:
            current = _classification[path] = ReloadingRuleSet(path)
        return current


def classification_rules(directory: Path | None = None) -> RuleSet:
    """The PII name rules the ingest path applies now."""
    return classification_file(directory).current


POLICY_FILES = ("products.yaml", "policy.csv", "model.conf", "rules.yaml", "classification.yaml")
POLICY_ACTIONS = ("policy.reloaded", "policy.changed")


def policy_digests(directory: Path) -> dict[str, str]:
    """SHA-256 of each policy file present: what the audit trail says was in force."""
    return {
        name: hashlib.sha256((directory / name).read_bytes()).hexdigest()
        for name in POLICY_FILES
        if (directory / name).is_file()
    }


async def record_policy_reload(
    conn: AsyncConnection, directory: Path, *, actor: str, products: list[str]
) -> None:
    """Chain a reload with the SHA-256 of each policy file, so the audit trail says which policy was in
    force from when (the files themselves live outside the database)."""
    await audit.record(
        conn,
        action="policy.reloaded",
        actor=actor,
        subject=f"policy:{directory}",
        details={"files": policy_digests(directory), "products": products},
    )


class PolicyFileWatcher:
    """Chains an edit of the policy files that a process picks up by itself (products.yaml is reloaded
    on its mtime, and policy.csv with it), not only reloads through the endpoint.

    Every process watches (a `stat` a second, no database work while nothing changes). The first to
    notice a change records `policy.changed`; the others find that row — or the endpoint's
    `policy.reloaded` — with the same digests among the last minutes' rows, under the append lock, and
    record nothing.
    """

    def __init__(self, engine: AsyncEngine, directory: Path, *, interval: float = 1.0) -> None:
        self._engine = engine
        self._directory = directory
        self._stamp: tuple[tuple[str, int, int], ...] | None = None
        self._digests: dict[str, str] | None = None
        self._task = Periodic(
            "policy-file-watcher",
            interval,
            self.check,
            failure="could not record a policy file change; retrying",
            log=log,
        )

    def _stat(self) -> tuple[tuple[str, int, int], ...]:
        out = []
        for name in POLICY_FILES:
            with contextlib.suppress(OSError):
                st = (self._directory / name).stat()
                out.append((name, st.st_mtime_ns, st.st_size))
        return tuple(out)

    async def check(self) -> bool:
        """Record the files' digests when they changed since the last check; True when a row was added."""
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        digests = policy_digests(self._directory)
        if self._digests is None or digests == self._digests:
            self._stamp, self._digests = stamp, digests  # start-up, or touched without a change
            return False
        files_json = orjson.dumps(digests).decode()
        async with self._engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": audit.AUDIT_LOCK_KEY})
            # The newest policy row of the last minutes (index on recorded_at): is it this very state?
            latest = (
                await conn.execute(
                    text(
                        "SELECT details -> 'files' = CAST(:files AS jsonb) AS same FROM audit_log "
                        "WHERE recorded_at > now() - interval '10 minutes' AND action = ANY(:actions) "
                        "ORDER BY seq DESC LIMIT 1"
                    ),
                    {"actions": list(POLICY_ACTIONS), "files": files_json},
                )
            ).first()
            seen = latest is not None and bool(latest.same)
            if not seen:
                await audit.record(
                    conn,
                    action="policy.changed",
                    actor=None,
                    subject=f"policy:{self._directory}",
                    details={"files": digests, "observed_by": f"{socket.gethostname()}:{os.getpid()}"},
                )
        # Only once it is recorded (or found recorded): a failed round is retried with the same change.
        self._stamp, self._digests = stamp, digests
        return not seen

    async def start(self) -> None:
        with contextlib.suppress(OSError):
            self._stamp, self._digests = self._stat(), policy_digests(self._directory)
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()
