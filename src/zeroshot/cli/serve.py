"""`zeroshot serve`: the HTTP API and web page (see docs/server.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from zeroshot.cli import app, options
from zeroshot.server.settings import ServerSettings


def _default(name: str):
    """The default of a `ServerSettings` field: the server's limits are written once, there."""
    field = ServerSettings.__dataclass_fields__[name]
    return field.default


@app.command("serve")
def serve(
    host: str = typer.Option(_default("host"), help="Address to bind; 0.0.0.0 exposes it to the network."),
    port: int = typer.Option(_default("port"), help="TCP port."),
    model: str | None = options.lm_model(),
    backend: str = options.lm_backend(),
    clip_model: str | None = options.clip_model(),
    performer: str | None = options.performer(),
    device: str | None = options.device(),
    dtype: str | None = options.dtype(),
    db: Path | None = options.db(),
    captioner: Path | None = options.captioner(),
    image_root: list[Path] = typer.Option([], help="Folder whose images may be read by path (repeatable)."),
    api_key: str | None = typer.Option(None, envvar="ZEROSHOT_API_KEY",
                                       help="Require `Authorization: Bearer KEY` on /v1."),
    allowed_origins: list[str] = typer.Option(
        [], "--allowed-origins", help="Without an API key, also serve web pages from this origin "
                                      "(http://host:port, or * for any); repeatable."),
    allowed_hosts: list[str] = typer.Option(
        [], "--allowed-hosts", help="Without an API key, also answer requests for this Host name (on "
                                    "0.0.0.0 the machine's own names and addresses are answered already; * "
                                    "for any); repeatable."),
    max_upload_mb: float = typer.Option(_default("max_upload_mb"),
                                        help="Largest request body, in MiB (413 above)."),
    max_pixels: int = typer.Option(_default("max_pixels"), help="Largest image, in pixels (413 above)."),
    max_prompt_chars: int = typer.Option(_default("max_prompt_chars"),
                                         help="Longest prompt or text, in characters (413 above)."),
    max_tokens: int = options.max_tokens("serve"),
    preload: bool = typer.Option(False, help="Load the LM and CLIP at start-up instead of on first use."),
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs) and the web page (at /). --db serves image search,
    --captioner /v1/caption; a request asking for more than --max-tokens gets a 400."""
    import uvicorn

    from zeroshot.server.app import create_app
    from zeroshot.server.background import listening_socket

    # One checked object: every rule (port, folders, backend, --db, --captioner, dtype, limits) runs
    # here, before any model loads.
    settings = ServerSettings(host=host, port=port, model=model, backend=backend, clip_model=clip_model,
                              performer=performer,
                              device=device, dtype=dtype, db=db, captioner=captioner,
                              image_roots=list(image_root), api_key=api_key,
                              allowed_origins=list(allowed_origins), allowed_hosts=list(allowed_hosts),
                              max_upload_mb=max_upload_mb, max_pixels=max_pixels,
                              max_prompt_chars=max_prompt_chars, max_tokens=max_tokens, preload=preload)
    # Bound here, before uvicorn starts: a bad --host or a busy --port is one line and exit 2.
    sock = listening_socket(host, port)
    if host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        typer.echo(f"warning: serving on {host} without an API key: anyone who can reach this port can use "
                   f"it (set --api-key or ZEROSHOT_API_KEY)", err=True)
    typer.echo(f"zeroshot: http://{host}:{port}/  (API docs at /docs)", err=True)
    try:
        uvicorn.Server(uvicorn.Config(create_app(settings), log_level="info")).run(sockets=[sock])
    finally:
        sock.close()
