"""`/docs` (Swagger UI) from files on this machine, the favicon, and the 404 that lists the routes.

FastAPI's own `/docs` loads Swagger UI from a CDN, so it is blank offline. Swagger UI 5 (npm's
`swagger-ui-dist`, its version in `static/swagger/VERSION`, its licence beside it) ships inside the
package under `static/swagger/`, served with the other static files: FastAPI writes OpenAPI 3.1, which
Swagger UI reads from 5.0 on (the 4.x of the `swagger-ui-bundle` PyPI package showed "Unable to render
this definition").
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Add `/docs` and `/favicon.ico` to `app` (the app serves `static/` under `/static`)."""

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
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
