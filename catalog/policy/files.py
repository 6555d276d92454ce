"""Where the policy files live, what the audit trail records of them, and the watcher that chains an edit.

The parsed files themselves are views of a `Policies` object (catalog/policies_in_force.py) built once from the
settings and passed down.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
from pathlib import Path

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from catalog.audit import service as audit
from catalog.periodic import Periodic

log = logging.getLogger(__name__)

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "policies"  # package data: catalog/policies/


def resolve_dir(configured: Path | None) -> Path:
    """`configured` (Settings.policies_dir), else `$CATALOG_POLICIES_DIR`, else the packaged policies."""
    if configured is not None:
        return configured
    env = os.environ.get("CATALOG_POLICIES_DIR")
    return Path(env) if env else DEFAULT_DIR


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
