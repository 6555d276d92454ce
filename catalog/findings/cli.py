"""`catalog scan`: re-assign products and re-evaluate every governance rule over the whole catalog."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from catalog.cli_support import DbOpt, HomeOpt

if TYPE_CHECKING:
    from catalog.policies_in_force import Policies


def scan(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Evaluate every rule over the whole catalog (after editing policies/, or with incremental rules off);
    findings that no longer fire are resolved."""
    from catalog.cli_support import console, settings_from
    from catalog.db.resolve import migrated
    from catalog.policies_in_force import Policies

    settings = settings_from(home, database_url)
    policies = Policies.from_settings(settings)
    with migrated(settings) as db:
        fired = asyncio.run(_scan(db.service_url, policies))
    console.print(f"scanned the catalog: {fired} findings firing")


async def _scan(url: str, policies: Policies) -> int:
    from catalog.db.engine import create_engine, raw_transaction
    from catalog.findings.service import scan as scan_catalog

    engine = create_engine(url, pool_size=1)
    try:
        async with raw_transaction(engine) as raw:
            return await scan_catalog(raw, policies)
    finally:
        await engine.dispose()
