"""The FastAPI application: routers, security, error shapes, health/info and the web page.

`create_app(settings)` builds everything; the routes only parse requests and call the same library
functions as the CLI (`zeroshot.text`, `zeroshot.vision`, `zeroshot.models`), so every interface gives
the same answers.

    >>> from zeroshot.server.app import create_app, ServerSettings
    >>> app = create_app(ServerSettings(clip_model="path/to/clip", db="index/"))
    >>> # uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import logging
import platform
from contextlib import asynccontextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from zeroshot.errors import UserError
from zeroshot.optional import OPTIONAL
from zeroshot.server import (
    docs_assets,
    openai_compat,
    routes_caption,
    routes_chat,
    routes_embeddings,
    routes_generated,
    routes_text,
    routes_tokens,
    routes_vision,
)
from zeroshot.server.guard import LastResort, RequestGuard
from zeroshot.server.resources import Resources
from zeroshot.server.security import check_api_key
from zeroshot.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("zeroshot.server")

# The page's own script and style only: no inline code, no third-party origins.
_PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
                                            "object-src 'none'; frame-ancestors 'none'",
                 "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}

_DISTRIBUTIONS = ("zeroshot", "torch", "transformers", "fastapi", "uvicorn", "llama-cpp-python")


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    """The whole service for `settings`; models load on first use (or at start-up with `preload`)."""
    settings = settings or ServerSettings()
    resources = Resources(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.preload:
            resources.preload()
        yield
        await resources.close()

    app = FastAPI(title="zeroshot", version=_version("zeroshot"), lifespan=lifespan,
                  description="Zero- and few-shot learning with frozen Transformers: generation (with an "
                              "OpenAI-compatible endpoint), text and image classification, image search "
                              "and detection. Send `Authorization: Bearer KEY` when the server has a key.",
                  docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.resources = resources
    protected = [Depends(check_api_key)]
    for module in (routes_text, openai_compat, routes_vision, routes_chat, routes_embeddings, routes_tokens,
                   routes_caption, routes_generated):
        app.include_router(module.router, dependencies=protected)
    docs_assets.install(app)
    _add_error_handlers(app)
    # Added innermost first: the guard (size, headers, host, body, cost) is the outermost door, and the
    # last resort sits just outside the routes.
    app.add_middleware(LastResort)
    app.add_middleware(RequestGuard, settings=settings)

    @app.get("/health", tags=["service"])
    async def health() -> dict[str, Any]:
        """Liveness: answers without loading anything and without a key."""
        return {"status": "ok", "models_loaded": {k: v is not None for k, v in resources.loaded().items()}}

    @app.get("/v1/info", tags=["service"], dependencies=protected)
    async def info() -> dict[str, Any]:
        """Loaded models, installed capabilities, versions, limits and batching counters."""
        return {"models": resources.loaded(),
                "optional_dependencies": {dep.module: dep.available() for dep in OPTIONAL},
                "versions": {"python": platform.python_version(),
                             **{name: _version(name) for name in _DISTRIBUTIONS}},
                "settings": settings.public(),
                "batching": {"text_classification": resources.text_batcher.stats.as_dict(),
                             "image_classification": resources.image_batcher.stats.as_dict()}}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=_PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def error_body(message: str, status: int, param: str | None = None,
               details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """OpenAI's error shape, used by every endpoint so one client-side handler fits all; `details` lists
    each field a request got wrong (422)."""
    kinds = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
             413: "request_too_large", 415: "invalid_request_error", 503: "service_unavailable"}
    kind = kinds.get(status, "invalid_request_error" if status < 500 else "server_error")
    error = {"message": message, "type": kind, "param": param, "code": status}
    if details is not None:
        error["details"] = details
    return {"error": error}


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        status = exc.status_code if 400 <= exc.status_code < 600 else 400
        return JSONResponse(error_body(str(exc), status, getattr(exc, "param", None)), status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404 and exc.detail == "Not Found":  # no such route (a route's 404 says more)
            body = error_body(f"no route {request.method} {request.url.path} on this server; "
                              f"{docs_assets.route_hint(app)}", 404)
            return JSONResponse(body, status_code=404)
        return JSONResponse(error_body(str(exc.detail), exc.status_code), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg", "")),
                     "type": str(error.get("type", ""))} for error in exc.errors()]
        if any(problem["type"] == "json_invalid" for problem in problems):
            return JSONResponse(error_body("the request body is not valid JSON", 400), status_code=400)
        summary = "; ".join(f"{'.'.join(p['loc'][1:] if p['loc'][:1] == ['body'] else p['loc'])}: {p['msg']}"
                            for p in problems[:5])
        param = ".".join(problems[0]["loc"][1:]) if problems else None
        return JSONResponse(error_body(f"invalid request: {summary}", 422, param or None, details=problems),
                            status_code=422)

    # Nets under the guard (`guard.RequestGuard` refuses these in JSON bodies): text that cannot be
    # encoded (a form field, a file name), and structures too deep to walk. Anything else that escapes
    # a route is a bug, answered by `guard.LastResort` with a 500 that closes the connection.
    @app.exception_handler(UnicodeError)
    async def unicode_error(request: Request, exc: UnicodeError) -> JSONResponse:
        return JSONResponse(error_body("the request holds text that is not valid Unicode", 400),
                            status_code=400)

    @app.exception_handler(RecursionError)
    async def recursion_error(request: Request, exc: RecursionError) -> JSONResponse:
        return JSONResponse(error_body("the request is nested too deeply", 400), status_code=400)
