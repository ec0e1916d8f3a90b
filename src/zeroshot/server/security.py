"""The server's defences: API-key check and image-root confinement (the body limits are `guard`'s)."""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi import HTTPException, Request

from zeroshot.errors import UserError


def check_api_key(request: Request) -> None:
    """FastAPI dependency: 401 unless the request carries the configured key as a Bearer token.

    Compared in constant time so response timing does not leak the key. No key configured: open.
    """
    expected = request.app.state.settings.api_key
    if expected is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), expected.encode()):
        raise HTTPException(status_code=401,
                            detail="missing or wrong API key: send `Authorization: Bearer KEY`",
                            headers={"WWW-Authenticate": "Bearer"})


def resolve_under_roots(path: str, roots: list[Path]) -> Path:
    """The real path of `path` if it lies inside one of `roots`; otherwise a 403 `UserError`.

    Resolves symlinks and `..` first and checks afterwards, so neither can escape a root. A relative
    path is taken relative to each root in turn. `~` is not expanded: it is a shell's convenience, and
    expanding `~user` would tell a client which user names exist (403 for real ones, 404 for others).
    Names no file system could hold (over 255 bytes, not encodable) are a 400, never an `OSError`.
    """
    if not roots:
        raise UserError("reading images by path is disabled: start the server with --image-root DIR", 403)
    if "\x00" in path:
        raise UserError("path contains a NUL byte", 400)
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError("the path is not valid Unicode (a lone surrogate)", 400) from None
    if len(encoded) > _PATH_MAX or any(len(part) > _NAME_MAX for part in encoded.split(b"/")):
        raise UserError(f"the path is too long (a name over {_NAME_MAX} bytes, or over {_PATH_MAX} in all)",
                        400)
    candidate = Path(path)
    tries = [candidate] if candidate.is_absolute() else [root / candidate for root in roots]
    try:
        inside = [real for real in (attempt.resolve() for attempt in tries)
                  if any(real == root or real.is_relative_to(root) for root in roots)]
        if not inside:
            raise UserError(f"{path}: outside the allowed image roots", 403)
        for real in inside:
            if real.is_file():
                return real
        exists = any(real.exists() for real in inside)
    except OSError as exc:  # a symlink loop, a name too long after resolving links
        raise UserError(f"{path}: cannot be resolved ({exc.strerror or 'bad path'})", 400) from None
    if exists:
        raise UserError(f"{path}: not a file", 400)
    raise UserError(f"{path}: no such file", 404)


_NAME_MAX = 255  # bytes in one path component, on every common file system
_PATH_MAX = 4096
