"""Embeddings as float16 rows of one flat file beside the catalog, read row by row where they lie.

Row r holds the vector of catalog id r + 1 (ids start at 1 and are never reused once committed), so
finding a vector is an offset: nothing to load, nothing to keep in step. A query that re-ranks 500
candidates reads 500 rows with `pread` (p50 1.1 ms at 1M rows, against 2.8 ms for the same rows as
float16 blobs in SQLite, which also took 1,369 bytes a vector on disk against 1,024 here). A memory map
was 0.6 ms, but every page a map has touched stays counted in the process's RSS: 3.3 GiB after 2,400
queries over 3M vectors, the whole file (10 GB at 10M) for a long-running server. Scans read whole
spans. Rows of removed vectors stay as holes. When the rows are not in the page cache (a cold start),
one `pread` at a time waits for the disk once per row: announcing them all first (`posix_fadvise`
WILLNEED) lets the disk serve them together, and took a 10M-vector search's p50 from 65-68 ms to
43-53 ms with the cache dropped; it costs 0.3 ms when they are cached.

Writes are staged by the catalog during a transaction and written, then `fdatasync`ed, just before it
commits: a crash before the commit leaves rows no committed id points at (overwritten next time), a
crash after it leaves rows that are on disk. A row that reads back as zeros or as non-finite numbers
(a hole where a vector should be, scribbled bytes) is reported, never used.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

DTYPE = np.dtype("<f2")
BULK_ROWS = 4_096  # a read of at least this many nearby rows reads their whole span at once
PREFETCH_ROWS = 32  # a scattered read of at least this many rows announces them all first (see `read`)


class VectorFileError(Exception):
    """The file is missing, shorter than the catalog needs, or holds damaged rows."""


class VectorFile:
    """Float16 rows addressed by catalog id (see the module docstring)."""

    def __init__(self, path: Path, dim: int) -> None:
        self.path = Path(path)
        self.dim = dim
        self.row_bytes = dim * DTYPE.itemsize
        self._known_rows = 0  # rows the file was last seen to hold
        self._fd: int | None = None  # kept open for reads
        self._staged: dict[int, np.ndarray] = {}

    # --- reading ------------------------------------------------------------------------------------

    def rows(self) -> int:
        """Complete rows in the file now (0 when there is no file)."""
        try:
            return os.path.getsize(self.path) // self.row_bytes
        except FileNotFoundError:
            return 0

    def read(self, ids: np.ndarray) -> np.ndarray:
        """The vectors of `ids` (any order) as float32, one row each; `VectorFileError` if one is bad."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return np.zeros((0, self.dim), dtype=np.float32)
        low, high = int(ids.min()), int(ids.max())
        self._check_span(low, high)
        if len(ids) >= BULK_ROWS and high - low < 2 * len(ids):
            # A scan (an index build): one plain read of the span.
            span = np.fromfile(self.path, dtype=DTYPE, count=(high - low + 1) * self.dim,
                               offset=(low - 1) * self.row_bytes).reshape(-1, self.dim)
            out = span[ids - low].astype(np.float32)
        else:
            buffer = bytearray(len(ids) * self.row_bytes)
            view = memoryview(buffer)
            fd = self._reader()
            size = self.row_bytes
            if len(ids) >= PREFETCH_ROWS and hasattr(os, "posix_fadvise"):
                # Ask for every row first, in file order, so that the disk serves them together; the
                # reads below then wait for one queue of requests instead of one request at a time.
                for vector_id in np.unique(ids).tolist():
                    os.posix_fadvise(fd, (vector_id - 1) * size, size, os.POSIX_FADV_WILLNEED)
            for n, vector_id in enumerate(ids.tolist()):
                if _read_at(fd, view[n * size:(n + 1) * size], (vector_id - 1) * size) != size:
                    raise VectorFileError(f"{self.path}: holds fewer vectors than the catalog needs "
                                          "(truncated while open)")
            out = np.frombuffer(buffer, dtype=DTYPE).reshape(len(ids), self.dim).astype(np.float32)
        check_rows(out, ids, self.path)
        return out

    def _check_span(self, lowest: int, highest: int) -> None:
        if lowest < 1:
            raise VectorFileError(f"{self.path}: no row for vector id {lowest}")
        if self._known_rows < highest:
            self._known_rows = self.rows()
            if self._known_rows < highest:  # shorter than the catalog: lost or truncated, never guessed at
                raise VectorFileError(f"{self.path}: holds {self._known_rows:,} vectors, the catalog needs "
                                      f"{highest:,} (missing or truncated)")

    def _reader(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        return self._fd

    # --- writing ------------------------------------------------------------------------------------

    def stage(self, vector_id: int, vector: np.ndarray) -> None:
        """Keep `vector` for id `vector_id` until `flush` (called just before the catalog commits)."""
        with np.errstate(over="ignore"):  # too large for float16 becomes inf, refused just below
            row = np.asarray(vector, dtype=np.float32).reshape(-1).astype(DTYPE)
        if row.shape != (self.dim,):
            raise ValueError(f"a {self.dim}-d vector is needed, not {row.shape}")
        if not np.isfinite(row).all():
            raise ValueError("the vector has values that do not fit float16 (not finite, or > 65504)")
        self._staged[int(vector_id)] = row

    def stage_block(self, first_id: int, vectors: np.ndarray) -> None:
        """`stage` for rows of consecutive ids starting at `first_id`."""
        with np.errstate(over="ignore"):
            rows = np.asarray(vectors, dtype=np.float32).astype(DTYPE)
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise ValueError(f"{self.dim}-d vectors are needed, not {rows.shape}")
        if not np.isfinite(rows).all():
            raise ValueError("a vector has values that do not fit float16 (not finite, or > 65504)")
        for offset, row in enumerate(rows):
            self._staged[first_id + offset] = row

    def flush(self) -> None:
        """Write the staged rows, each run of consecutive ids in one write, and sync them to disk."""
        if not self._staged:
            return
        ids = sorted(self._staged)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0)
        fd = os.open(self.path, flags, 0o644)
        try:
            start = 0
            for end in range(1, len(ids) + 1):
                if end == len(ids) or ids[end] != ids[end - 1] + 1:
                    block = np.stack([self._staged[i] for i in ids[start:end]])
                    _write_at(fd, block.tobytes(), (ids[start] - 1) * self.row_bytes)
                    start = end
            os.fsync(fd)
        finally:
            os.close(fd)
        self._staged.clear()

    def discard(self) -> None:
        """Forget staged rows (their transaction rolled back)."""
        self._staged.clear()

    def close(self) -> None:
        self._staged.clear()
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def check_rows(rows: np.ndarray, ids: np.ndarray, where: Path | str) -> None:
    """`VectorFileError` naming the first row that is zeros (a hole) or not finite (scribbled bytes)."""
    bad = ~np.isfinite(rows).all(axis=1) | ~rows.any(axis=1)
    if bad.any():
        raise VectorFileError(f"{where}: the vector of id {int(ids[np.argmax(bad)])} is damaged "
                              "(zeros or not a number)")


def _read_at(fd: int, into: memoryview, offset: int) -> int:
    if hasattr(os, "preadv"):
        return os.preadv(fd, [into], offset)
    os.lseek(fd, offset, os.SEEK_SET)  # Windows
    data = os.read(fd, len(into))
    into[:len(data)] = data
    return len(data)


def _write_at(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        if hasattr(os, "pwrite"):
            written = os.pwrite(fd, view, offset)
        else:  # Windows
            os.lseek(fd, offset, os.SEEK_SET)
            written = os.write(fd, view)
        view = view[written:]
        offset += written

