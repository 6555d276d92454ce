"""Create, list, revoke and verify API keys.

A key reads `cat_<key id>_<secret>`. The key id is public (shown in listings and logs); only a SHA-256
of the secret is stored. The secret is 256 random bits, so a fast hash is enough: there is nothing to
brute-force the way there is with a password.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from catalog.audit.service import record
from catalog.audit.state import secret_fingerprint
from catalog.auth.models import CROSS_PRODUCT_ROLES, PRODUCT_ROLES, ROLES, ApiKey

PREFIX = "cat_"
# The role of CATALOG_METRICS_TOKEN (no API key has it): policies/policy.csv lets it read metrics only.
MONITOR_ROLE = "monitor"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: what the authorisation layer and the logs see (never the token)."""

    key_id: str
    name: str
    role: str
    product: str | None


@dataclass(frozen=True, slots=True)
class CreatedKey:
    token: str  # shown once, never stored
    key_id: str
    name: str
    role: str
    product: str | None
    expires_at: dt.datetime | None


class InvalidRole(ValueError):
    pass


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def split_token(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed token, else None."""
    if not token.startswith(PREFIX):
        return None
    key_id, sep, secret = token[len(PREFIX) :].partition("_")
    if not sep or not key_id or not secret:
        return None
    return key_id, secret


async def create_key(
    conn: AsyncConnection,
    *,
    name: str,
    role: str,
    product: str | None = None,
    expires_at: dt.datetime | None = None,
    actor: str | None = None,
) -> CreatedKey:
    """Make a key (audited); the returned token is the only time the secret exists outside the caller."""
    if role not in ROLES:
        raise InvalidRole(f"role must be one of {', '.join(ROLES)}; got {role!r}")
    # A role/product pair the policy has no subject for would make a key that every decision denies:
    # refuse it here rather than hand out a key that silently can do nothing.
    if role in CROSS_PRODUCT_ROLES and product is not None:
        raise InvalidRole(
            f"the {role} role is cross-product (it acts in every product), so its key takes no product: "
            f"leave out --product {product!r}"
        )
    if role in PRODUCT_ROLES and not product:
        raise InvalidRole(f"the {role} role acts for one product: give the key its product (--product NAME)")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    secret_digest = _hash(secret)
    await conn.execute(
        insert(ApiKey).values(
            key_id=key_id,
            secret_hash=secret_digest,
            name=name,
            role=role,
            product=product,
            expires_at=expires_at,
        )
    )
    await record(
        conn,
        action="api_key.created",
        actor=actor,
        subject=f"api_key:{key_id}",
        details={
            "name": name,
            "role": role,
            "product": product,
            "expires_at": expires_at,
            # lets `audit verify` see a stored hash swapped for another one (a key taken over)
            "secret_fingerprint": secret_fingerprint(secret_digest),
        },
    )
    return CreatedKey(f"{PREFIX}{key_id}_{secret}", key_id, name, role, product, expires_at)


async def list_keys(conn: AsyncConnection, *, include_revoked: bool = False) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    rows = (await conn.execute(query)).all()
    return [ApiKey(**row._mapping) for row in rows]


async def revoke_key(conn: AsyncConnection, *, key_id: str, actor: str | None = None) -> bool:
    """Revoke a key (audited); False when no active key has that id."""
    result = await conn.execute(
        update(ApiKey)
        .where(ApiKey.key_id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=func.now())
        .returning(ApiKey.id)
    )
    if result.first() is None:
        return False
    await record(conn, action="api_key.revoked", actor=actor, subject=f"api_key:{key_id}", details={})
    return True


async def verify_token(conn: AsyncConnection, token: str) -> Principal | None:
    """The principal of a valid, unrevoked, unexpired key; None otherwise."""
    parts = split_token(token)
    if parts is None:
        return None
    key_id, secret = parts
    row = (
        await conn.execute(
            select(ApiKey.secret_hash, ApiKey.name, ApiKey.role, ApiKey.product).where(
                ApiKey.key_id == key_id,
                ApiKey.revoked_at.is_(None),
                (ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > func.now()),
            )
        )
    ).first()
    if row is None or not hmac.compare_digest(bytes(row.secret_hash), _hash(secret)):
        return None
    return Principal(key_id, row.name, row.role, row.product)


class Authenticator:
    """Verifies bearer tokens, with a short cache so the ingest path does not pay a query per request.

    The cache is keyed by a hash of the token (the token itself is never kept) and entries live
    `ttl` seconds: a revoked key stops working on every replica within that time.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        admin_token: str | None,
        ttl: float = 2.0,
        metrics_token: str | None = None,
    ) -> None:
        self._engine = engine
        self._admin_hash = _hash(admin_token) if admin_token else None
        self._metrics_hash = _hash(metrics_token) if metrics_token else None
        self._ttl = ttl
        self._cache: dict[bytes, tuple[float, Principal | None]] = {}

    async def authenticate(self, token: str) -> Principal | None:
        digest = _hash(token)
        if self._admin_hash is not None and hmac.compare_digest(digest, self._admin_hash):
            return Principal("admin-token", "bootstrap admin", "admin", None)
        if self._metrics_hash is not None and hmac.compare_digest(digest, self._metrics_hash):
            # CATALOG_METRICS_TOKEN: the `monitor` role, which the policy lets read /metrics only.
            return Principal("metrics-token", "metrics scraper", MONITOR_ROLE, None)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self._engine.connect() as conn:
            principal = await verify_token(conn, token)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now + self._ttl, principal)
        return principal
