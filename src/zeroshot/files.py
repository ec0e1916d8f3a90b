"""Files written whole or not at all, and output folders made with one message.

A crash or a full disk never leaves a half-written file where a user's (or a resumed run's) file was.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from zeroshot.errors import UserError


def write_atomic(path: Path, content: str | bytes | Callable[[Path], object], fsync: bool = False) -> None:
    """Write `content` to `path` through a temporary file and a rename.

    `content` is text (written as UTF-8), bytes, or a function that writes a file at the path it is
    given (for writers that want a file name: safetensors, FAISS, matplotlib). `fsync` flushes the data
    to disk before the rename, for files whose loss after a power cut would corrupt an index.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if isinstance(content, bytes):
            temporary.write_bytes(content)
        elif isinstance(content, str):
            temporary.write_text(content, encoding="utf-8")
        else:
            content(temporary)
        if fsync:
            with open(temporary, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def make_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create `path` (and its parents) for a command's results; `UserError` with the reason if it cannot."""
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"cannot create the {what} {folder}: a file of that name is in the way")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the {what} {folder}: {exc.strerror or exc}") from None
    return folder
