"""The one exception type for mistakes a user can make, and the words for failures of the disk.

The CLI turns a `UserError` into a one-line message and exit code 2; the server turns it into a 4xx
response. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
import shutil


class UserError(Exception):
    """Bad input, a missing file or model, an impossible request: something the user can fix."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


def first_line(exc: BaseException, max_chars: int | None = None) -> str:
    """The first line of `exc`'s message (its type's name when the message is empty), for a one-line error.

    Libraries put the useful sentence first and a traceback, a URL list or a dump after it; a user
    reads one line. `max_chars` cuts a first line that is itself too long (a worker's repr).
    """
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if max_chars is None else line[:max_chars]


# Below this many free bytes a failed write is taken to be a full disk, whatever the layer above said
# (SQLite reports some ENOSPC as a plain "disk I/O error", FAISS as a RuntimeError naming fwrite).
NEARLY_FULL_BYTES = 1 << 20


def disk_full(folder: str | os.PathLike, exc: BaseException | None = None) -> bool:
    """Whether `exc` (or, failing that, the free space under `folder`) says the disk is full."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if exc is not None and "No space left" in str(exc):
        return True
    try:
        return shutil.disk_usage(folder).free < NEARLY_FULL_BYTES
    except OSError:
        return False


def storage_error(exc: BaseException, where: str | os.PathLike, doing: str) -> UserError | None:
    """A one-line `UserError` for a write that failed because of the disk, or None if it was not that.

    `where` is the file or folder written, `doing` what was being done ("saving the search cache").
    """
    folder = where if os.path.isdir(where) else os.path.dirname(os.fspath(where)) or "."
    if disk_full(folder, exc):
        return UserError(f"{where}: no space left on device while {doing}; free some space and run it "
                         "again (what was finished is kept)", 507)
    if isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return UserError(f"{where}: read-only or not writable ({exc.strerror}) while {doing}", 403)
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
        return UserError(f"{where}: a file name in the path is too long", 400)
    return None
