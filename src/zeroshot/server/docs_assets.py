"""`/docs` (Swagger UI) from files on this machine, the favicon, and the 404 that lists the routes.

FastAPI's own `/docs` loads Swagger UI from a CDN, so it is blank offline; the PyPI package
`swagger-ui-bundle` ships the same files, served here under `/static/swagger/`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Add `/docs` (when `swagger-ui-bundle` is installed) and `/favicon.ico` to `app`."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:  # without the package there is no offline copy: say so instead of a blank page
        swagger_ui_path = None
    if swagger_ui_path is not None:
        app.mount("/static/swagger", StaticFiles(directory=swagger_ui_path), name="swagger")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        if swagger_ui_path is None:
            return HTMLResponse("<p>Interactive docs need the swagger-ui-bundle package "
                                "(<code>pip install swagger-ui-bundle</code>); the schema is at "
                                "<a href='/openapi.json'>/openapi.json</a>.</p>", status_code=503)
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title="zeroshot API",
                                   swagger_js_url="/static/swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger/swagger-ui.css",
                                   swagger_favicon_url="/static/favicon.svg")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")


def route_hint(app: FastAPI) -> str:
    """One line naming every route, for the 404 of a path that does not exist (from the OpenAPI schema,
    which lists included routers too)."""
    paths = [f"{'/'.join(sorted(m.upper() for m in methods))} {path}"
             for path, methods in app.openapi().get("paths", {}).items()]
    return "routes: " + ", ".join(paths) + ", GET /docs"
