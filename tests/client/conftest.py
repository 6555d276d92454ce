"""Clients pointed at the real service on a socket (the `live_server` fixture)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from catalog_client import AsyncCatalogClient, CatalogClient
from tests.conftest import ADMIN_TOKEN, LiveServer


@pytest.fixture
def catalog(live_server: LiveServer) -> Iterator[CatalogClient]:
    with CatalogClient(live_server.url, ADMIN_TOKEN, page_size=3) as client:
        yield client


@pytest.fixture
async def async_catalog(live_server: LiveServer) -> AsyncIterator[AsyncCatalogClient]:
    async with AsyncCatalogClient(live_server.url, ADMIN_TOKEN, page_size=3) as client:
        yield client
