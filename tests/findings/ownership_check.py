"""A check run after every governance scenario test: no finding without a product (DESIGN.md: every finding
belongs to a product whose steward sees it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from catalog.db.engine import asyncpg_url


@pytest.fixture(autouse=True)
def every_finding_has_a_product(request: pytest.FixtureRequest) -> Iterator[None]:
    if "database_url" not in request.fixturenames:
        yield
        return
    url: str = request.getfixturevalue("database_url")
    yield
    engine = create_engine(asyncpg_url(url).replace("+asyncpg", "+psycopg"))
    try:
        with engine.connect() as conn:
            exists = conn.execute(text("SELECT to_regclass('findings') IS NOT NULL")).scalar()
            orphans = (
                conn.execute(text("SELECT rule, subject_key FROM findings WHERE product IS NULL")).all()
                if exists
                else []
            )
    finally:
        engine.dispose()
    assert orphans == [], f"findings without a product: {orphans}"
