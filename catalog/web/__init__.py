"""The web UI and the API docs, served from files committed in the package (no Node, no CDN at run time).

`static/ui/` is the Vite build of `ui/` (`make ui` rebuilds it; tests/ui/test_build_drift.py checks it is
current), served at `/ui` with every other `/ui/...` path answered by its index.html, so a deep link such
as `/ui/lineage?node=...` opens the single-page app there. `static/vendor/` holds Swagger UI's and Redoc's
browser bundles (copied from their npm packages by the same build) for `/docs` and `/redoc`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

STATIC_DIR = Path(__file__).with_name("static")
UI_DIR = STATIC_DIR / "ui"
VENDOR_DIR = STATIC_DIR / "vendor"
UI_PATH = "/ui"
VENDOR_PATH = "/static/vendor"


class _UiFiles(StaticFiles):
    """The built UI; a path that is not a file is a route of the app, answered by index.html."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        _, stat = self.lookup_path(path)
        if (stat is None and not path.startswith("assets/")) or path in ("", "."):
            return FileResponse(UI_DIR / "index.html", headers={"Cache-Control": "no-cache"})
        return await super().get_response(path, scope)  # a missing asset is a 404


def mount_web(app: FastAPI) -> None:
    """`/` → `/ui/`, the UI under `/ui`, and `/docs` + `/redoc` on vendored assets (app made with
    docs_url=None, redoc_url=None, so FastAPI's CDN-loading pages are not registered)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def root() -> RedirectResponse:
        return RedirectResponse(f"{UI_PATH}/", status_code=307)

    @router.get(UI_PATH)
    async def ui_root() -> RedirectResponse:
        return RedirectResponse(f"{UI_PATH}/", status_code=307)

    @router.get("/docs")
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} — API",
            swagger_js_url=f"{VENDOR_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{VENDOR_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{VENDOR_PATH}/favicon-32x32.png",
            swagger_ui_parameters={"persistAuthorization": False},
        )

    @router.get("/redoc")
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} — API",
            redoc_js_url=f"{VENDOR_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{VENDOR_PATH}/favicon-32x32.png",
            with_google_fonts=False,
        )

    app.include_router(router)
    app.mount(VENDOR_PATH, StaticFiles(directory=VENDOR_DIR, check_dir=False), name="vendor-static")
    app.mount(UI_PATH, _UiFiles(directory=UI_DIR, check_dir=False), name="ui")
