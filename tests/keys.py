"""API keys for the roles of the policy (pipeline, engineer, steward per product; auditor, admin)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.auth.service import create_key


@dataclass(frozen=True)
class Key:
    key_id: str
    role: str
    product: str | None
    headers: dict[str, str]


async def make_key(engine: AsyncEngine, role: str, product: str | None = None) -> Key:
    """A fresh key for `role` (of `product` for the per-product roles), as request headers."""
    async with engine.begin() as conn:
        created = await create_key(conn, name=f"{role}-{product or 'all'}", role=role, product=product)
    return Key(created.key_id, role, product, {"Authorization": f"Bearer {created.token}"})
