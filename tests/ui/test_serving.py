"""How the service serves the web UI and the API docs: from committed files, with nothing from a CDN."""

from __future__ import annotations

import re

import httpx


async def test_root_redirects_to_the_ui_and_deep_links_get_the_app(client: httpx.AsyncClient) -> None:
    root = await client.get("/", headers={"Authorization": ""})
    assert root.status_code == 307
    assert root.headers["location"] == "/ui/"
    index = await client.get("/ui/", headers={"Authorization": ""})
    assert index.status_code == 200
    assert '<div id="root">' in index.text
    deep = await client.get("/ui/lineage?node=dataset:bigquery:x&level=column", headers={"Authorization": ""})
    assert deep.status_code == 200
    assert deep.text == index.text  # the single-page app routes it
    script = re.search(r'src="(/ui/assets/[^"]+\.js)"', index.text)
    assert script is not None
    asset = await client.get(script.group(1))
    assert asset.status_code == 200
    assert "javascript" in asset.headers["content-type"]
    missing = await client.get("/ui/assets/nope.js")
    assert missing.status_code == 404  # a missing asset is not the app


async def test_api_docs_load_their_assets_from_the_service(client: httpx.AsyncClient) -> None:
    for page in ("/docs", "/redoc"):
        html = (await client.get(page)).text
        urls = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert urls, page
        assert all(u.startswith("/static/vendor/") for u in urls), (page, urls)
        assert "https://" not in html.replace("https://github.com", ""), page
        for url in urls:
            served = await client.get(url)
            assert served.status_code == 200, url
            assert len(served.content) > 500, url
