"""How the service serves the web UI and the API docs: from committed files, with nothing from a CDN, and
no key needed (the app asks for one; the API behind it checks it). Over a real socket, synchronously: the
browser tests of this folder keep Playwright's event loop in the test thread."""

from __future__ import annotations

import re

import httpx

from tests.conftest import LiveServer


def test_root_redirects_to_the_ui_and_deep_links_get_the_app(live_server: LiveServer) -> None:
    client = httpx.Client(base_url=live_server.url, timeout=30)  # a loaded CI box can stall a moment
    root = client.get("/")
    assert root.status_code == 307
    assert root.headers["location"] == "/ui/"
    index = client.get("/ui/")
    assert index.status_code == 200
    assert '<div id="root">' in index.text
    deep = client.get("/ui/lineage?node=dataset:bigquery:x&level=column")
    assert deep.status_code == 200
    assert deep.text == index.text  # the single-page app routes it
    script = re.search(r'src="(/ui/assets/[^"]+\.js)"', index.text)
    assert script is not None
    asset = client.get(script.group(1))
    assert asset.status_code == 200
    assert "javascript" in asset.headers["content-type"]
    missing = client.get("/ui/assets/nope.js")
    assert missing.status_code == 404  # a missing asset is not the app


def test_api_docs_load_their_assets_from_the_service(live_server: LiveServer) -> None:
    client = httpx.Client(base_url=live_server.url, timeout=30)  # a loaded CI box can stall a moment
    for page in ("/docs", "/redoc"):
        html = (client.get(page)).text
        urls = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert urls, page
        assert all(u.startswith("/static/vendor/") for u in urls), (page, urls)
        assert "https://" not in html.replace("https://github.com", ""), page
        for url in urls:
            served = client.get(url)
            assert served.status_code == 200, url
            assert len(served.content) > 500, url
