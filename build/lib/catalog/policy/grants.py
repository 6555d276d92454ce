"""Runtime grants: product B may read product A's dataset / namespace / name pattern; and their propagation.
What a grant covers is decided in one place, catalog/policy/scopes.py (`GrantScope.covers`).

Grants live in PostgreSQL (`grants`, every change in `grant_changes`). Each service process keeps its
enforcer in step with a `GrantWatcher`: it polls the newest `grant_changes.id` (an index-only lookup)
every `interval` seconds and reloads the live grants when it moved, or when a grant expires. Polling
rather than LISTEN/NOTIFY keeps it working through poolers and needs no dedicated connection; at 0.25 s
a grant made through one process is enforced by every other within a second.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from catalog.audit import service as audit
from catalog.audit.state import grant_action
from catalog.periodic import Periodic
from catalog.policy.enforcer import GrantRule, PolicyEnforcer
from catalog.policy.scopes import SCOPES, GrantScope

log = logging.getLogger(__name__)

# Live: neither revoked nor expired. The one definition, for the enforcer's rules and the findings rule.
LIVE_GRANTS = (
    "SELECT id, grantor_product, grantee_product, scope, namespace, name, masked_only, expires_at "
    "FROM grants WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) ORDER BY id"
)


class InvalidGrant(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class NewGrant:
    grantor_product: str
    grantee_product: str
    scope: str
    namespace: str
    name: str | None
    masked_only: bool
    reason: str
    expires_at: dt.datetime | None


GRANT_COLUMNS = (
    "id, grantor_product, grantee_product, scope, namespace, name, masked_only, reason, expires_at, "
    "created_by, created_at, revoked_at, revoked_by"
)


def _out(mapping: Any) -> dict[str, Any]:
    row = dict(mapping)
    for key in ("expires_at", "created_at", "revoked_at"):
        if isinstance(row.get(key), dt.datetime):
            row[key] = row[key].isoformat()
    return row


async def create_grant(conn: AsyncConnection, grant: NewGrant, *, actor: str) -> dict[str, Any]:
    """Store a grant and record the change; the caller owns the transaction."""
    if grant.scope not in SCOPES:
        raise InvalidGrant(f"scope must be one of {', '.join(SCOPES)}")
    if grant.scope == "dataset" and not grant.name:
        raise InvalidGrant("a dataset grant needs the dataset's name")
    if grant.grantor_product == grant.grantee_product:
        raise InvalidGrant("a product needs no grant to read its own datasets")
    if not grant.reason.strip():
        raise InvalidGrant("a grant needs a reason")
    if grant.expires_at is not None and grant.expires_at <= dt.datetime.now(dt.UTC):
        raise InvalidGrant("expires_at is in the past")
    row = (
        (
            await conn.execute(
                text(
                    "INSERT INTO grants (grantor_product, grantee_product, scope, namespace, name, masked_only, "
                    "reason, expires_at, created_by) VALUES (:grantor, :grantee, :scope, :namespace, :name, "
                    f":masked, :reason, :expires, :actor) RETURNING {GRANT_COLUMNS}"
                ),
                {
                    "grantor": grant.grantor_product,
                    "grantee": grant.grantee_product,
                    "scope": grant.scope,
                    "namespace": grant.namespace,
                    "name": grant.name if grant.scope != "namespace" else None,
                    "masked": grant.masked_only,
                    "reason": grant.reason,
                    "expires": grant.expires_at,
                    "actor": actor,
                },
            )
        )
        .mappings()
        .one()
    )
    created = _out(row)
    await _record(conn, created["id"], "create", actor, created)
    return created


async def revoke_grant(conn: AsyncConnection, *, grant_id: int, actor: str) -> dict[str, Any] | None:
    """Revoke a live grant; None when no live grant has that id."""
    row = (
        (
            await conn.execute(
                text(
                    "UPDATE grants SET revoked_at = now(), revoked_by = :actor "
                    f"WHERE id = :id AND revoked_at IS NULL RETURNING {GRANT_COLUMNS}"
                ),
                {"id": grant_id, "actor": actor},
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    revoked = _out(row)
    await _record(conn, grant_id, "revoke", actor, revoked)
    return revoked


async def _record(
    conn: AsyncConnection, grant_id: int, action: str, actor: str, detail: dict[str, Any]
) -> None:
    await conn.execute(
        text(
            "INSERT INTO grant_changes (grant_id, action, actor, detail) "
            "VALUES (:id, :action, :actor, CAST(:detail AS jsonb))"
        ),
        {"id": grant_id, "action": action, "actor": actor, "detail": _json(detail)},
    )
    # Chained in the same transaction: `catalog audit verify` replays these rows against the grants
    # table, so a grant deleted or inserted behind the service's back is found (catalog/audit/state.py).
    await audit.record(
        conn, action=grant_action(action), actor=actor, subject=f"grant:{grant_id}", details=detail
    )
    # Wake other processes at once; the watcher's poll is the guarantee, this only shortens the wait.
    await conn.execute(text("SELECT pg_notify('catalog_grants', :id)"), {"id": str(grant_id)})


def _json(value: dict[str, Any]) -> str:
    import orjson

    return orjson.dumps(value, default=str).decode()


async def list_grants(
    conn: AsyncConnection, *, product: str | None, include_revoked: bool = False
) -> list[dict[str, Any]]:
    """Grants given or received by `product` (all when None)."""
    rows = (
        await conn.execute(
            text(
                f"SELECT {GRANT_COLUMNS} FROM grants WHERE (CAST(:product AS text) IS NULL "
                "OR grantor_product = :product OR grantee_product = :product) "
                "AND (:all OR revoked_at IS NULL) ORDER BY id"
            ),
            {"product": product, "all": include_revoked},
        )
    ).mappings()
    return [_out(r) for r in rows]


async def grant_product(conn: AsyncConnection, grant_id: int) -> tuple[bool, str | None]:
    row = (
        await conn.execute(text("SELECT grantor_product FROM grants WHERE id = :id"), {"id": grant_id})
    ).first()
    return (row is not None, row.grantor_product if row is not None else None)


async def live_grants(conn: AsyncConnection) -> tuple[list[GrantRule], dt.datetime | None]:
    """Unrevoked, unexpired grants as enforcer rules, and the soonest expiry among them."""
    rows = (await conn.execute(text(LIVE_GRANTS))).all()
    rules = [
        GrantRule(
            r.id,
            r.grantor_product,
            r.grantee_product,
            GrantScope(r.scope, r.namespace, r.name),
            r.masked_only,
        )
        for r in rows
    ]
    expiries = [r.expires_at for r in rows if r.expires_at is not None]
    return rules, min(expiries) if expiries else None


class GrantWatcher:
    """Keeps one process's enforcer in step with the grants table (see the module docstring)."""

    def __init__(self, engine: AsyncEngine, enforcer: PolicyEnforcer, *, interval: float = 0.25) -> None:
        self._engine = engine
        self._enforcer = enforcer
        self._version: int | None = None
        self._next_expiry: dt.datetime | None = None
        self._task = Periodic(
            "grant-watcher",
            interval,
            self.refresh,
            failure="grant refresh failed; will retry",
            log=log,
            level=logging.DEBUG,
        )

    async def refresh(self, *, force: bool = False) -> bool:
        """Reload the grants if they changed (or one expired); True when reloaded."""
        async with self._engine.connect() as conn:
            version = (
                await conn.execute(text("SELECT coalesce(max(id), 0) FROM grant_changes"))
            ).scalar_one()
            expired = self._next_expiry is not None and self._next_expiry <= dt.datetime.now(dt.UTC)
            if not force and version == self._version and not expired:
                return False
            rules, self._next_expiry = await live_grants(conn)
        self._enforcer.set_grants(rules)
        self._version = version
        return True

    async def start(self) -> None:
        try:
            await self.refresh(force=True)
        except Exception:
            # The database may be down at start-up; the loop keeps trying (no grants until then).
            log.warning("grants not loaded yet; retrying in the background", exc_info=True)
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()
