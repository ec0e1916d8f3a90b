"""The catalog: one SQLite file holding every indexed file's metadata and every embedding.

SQLite is the source of truth; vector indexes (FAISS, Milvus) are derived from it and can always be
rebuilt. Embeddings are stored once per distinct content (sha256) as float32 blobs; files point at
them, so byte-identical copies share one vector. Every write is one transaction (WAL journal) that
also bumps a `version` counter, which tells a vector index whether it is still in step.

A file that is not a zeroshot catalog (another SQLite database, garbage bytes) is refused before
anything is written to it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zeroshot.errors import UserError

FORMAT = "zeroshot-image-index"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE vectors (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so a vector index can trust ids
    sha256 TEXT NOT NULL UNIQUE,
    embedding BLOB NOT NULL
);
CREATE TABLE files (
    path TEXT PRIMARY KEY,
    vector_id INTEGER NOT NULL REFERENCES vectors(id),
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    width INTEGER,
    height INTEGER,
    indexed_at REAL NOT NULL
);
CREATE INDEX files_by_vector ON files(vector_id);
"""


@dataclass(frozen=True)
class FileRecord:
    """One indexed file as the catalog knows it."""

    path: str
    vector_id: int
    sha256: str
    size: int
    mtime_ns: int
    width: int | None
    height: int | None


class Catalog:
    """Metadata and embeddings of an image index, in one SQLite file (see the module docstring)."""

    def __init__(self, path: str | Path, create: bool = True) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()  # one connection shared by the threads of a server
        exists = self.path.exists()
        if not exists and not create:
            raise UserError(f"{self.path.parent}: no image index here (run `zeroshot index` first)")
        if exists and not self.path.is_file():
            raise UserError(f"{self.path}: expected a file, found a folder")
        if exists:
            _check_header(self.path)
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            if exists:
                self._check_format()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives process crashes
            if not exists:
                with self.transaction():
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                    first = [("format", FORMAT), ("schema", str(SCHEMA_VERSION)), ("version", "0")]
                    self._db.executemany("INSERT INTO info VALUES (?, ?)", first)
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path}: not a readable zeroshot image index ({exc})") from exc

    def _check_format(self) -> None:
        try:
            rows = dict(self._db.execute("SELECT key, value FROM info").fetchall())
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise UserError(f"{self.path}: not a zeroshot image index, or corrupt ({exc}); "
                            "nothing was changed") from exc
        if rows.get("format") != FORMAT:
            self._db.close()
            raise UserError(f"{self.path}: an SQLite database, but not a zeroshot image index; "
                            "nothing was changed")
        if int(rows.get("schema", "0")) > SCHEMA_VERSION:
            self._db.close()
            raise UserError(f"{self.path}: written by a newer zeroshot (schema {rows['schema']}); "
                            "upgrade zeroshot")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: everything inside commits together, and `version` goes up by one."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("UPDATE info SET value = CAST(value AS INTEGER) + 1 WHERE key = 'version'")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # --- info -------------------------------------------------------------------------------------

    def info(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT key, value FROM info").fetchall())

    def set_info(self, values: dict[str, str]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO info VALUES (?, ?)", list(values.items()))

    @property
    def version(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT value FROM info WHERE key = 'version'").fetchone()[0])

    # --- reads ------------------------------------------------------------------------------------

    def file(self, path: str) -> FileRecord | None:
        with self._lock:
            row = self._db.execute(_SELECT_FILES + " WHERE f.path = ?", (path,)).fetchone()
        return FileRecord(*row) if row else None

    def files_under(self, folder: str) -> list[str]:
        """Paths of indexed files inside `folder` (at any depth)."""
        prefix = folder.rstrip("/") + "/"
        with self._lock:
            rows = self._db.execute("SELECT path FROM files WHERE substr(path, 1, ?) = ?",
                                    (len(prefix), prefix)).fetchall()
        return [row[0] for row in rows]

    def files_for_vectors(self, vector_ids: Iterable[int]) -> dict[int, list[FileRecord]]:
        """Every file of each vector id, sorted by path."""
        ids = [int(i) for i in vector_ids]
        found: dict[int, list[FileRecord]] = {}
        with self._lock:
            for start in range(0, len(ids), 500):
                part = ids[start:start + 500]
                marks = ",".join("?" * len(part))
                query = _SELECT_FILES + f" WHERE f.vector_id IN ({marks}) ORDER BY f.path"
                for row in self._db.execute(query, part):
                    record = FileRecord(*row)
                    found.setdefault(record.vector_id, []).append(record)
        return found

    def vector_id(self, sha256: str) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT id FROM vectors WHERE sha256 = ?", (sha256,)).fetchone()
        return int(row[0]) if row else None

    def vector_ids(self) -> np.ndarray:
        with self._lock:
            rows = self._db.execute("SELECT id FROM vectors ORDER BY id").fetchall()
        return np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))

    def count_vectors(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM vectors").fetchone()[0])

    def count_files(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM files").fetchone()[0])

    def iter_vectors(self, ids: Sequence[int] | None = None, batch: int = 20_000
                     ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, embeddings) in chunks: all vectors, or those of `ids`."""
        dim = int(self.info().get("embedding_dim", "0"))
        if ids is None:
            last = 0
            while True:
                with self._lock:
                    rows = self._db.execute("SELECT id, embedding FROM vectors WHERE id > ? ORDER BY id "
                                            "LIMIT ?", (last, batch)).fetchall()
                if not rows:
                    return
                last = rows[-1][0]
                yield _unpack(rows, dim)
        else:
            wanted = [int(i) for i in ids]
            for start in range(0, len(wanted), 500):
                part = wanted[start:start + 500]
                marks = ",".join("?" * len(part))
                with self._lock:
                    rows = self._db.execute(f"SELECT id, embedding FROM vectors WHERE id IN ({marks})",
                                            part).fetchall()
                if rows:
                    yield _unpack(rows, dim)

    # --- writes (call inside `transaction`) ----------------------------------------------------------

    def insert_vector(self, db: sqlite3.Connection, sha256: str, embedding: np.ndarray) -> int:
        blob = np.ascontiguousarray(embedding, dtype="<f4").tobytes()
        cursor = db.execute("INSERT INTO vectors (sha256, embedding) VALUES (?, ?)", (sha256, blob))
        return int(cursor.lastrowid)

    def put_file(self, db: sqlite3.Connection, path: str, vector_id: int, size: int, mtime_ns: int,
                 width: int | None, height: int | None) -> None:
        """Insert or replace a file's row. A vector it no longer uses is left for `delete_orphans`."""
        db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (path, vector_id, size, mtime_ns, width, height, time.time()))

    def touch_file(self, db: sqlite3.Connection, path: str, size: int, mtime_ns: int) -> None:
        """Record a new size/mtime for a file whose content did not change."""
        db.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?", (size, mtime_ns, path))

    def delete_file(self, db: sqlite3.Connection, path: str) -> bool:
        """Forget a file (its vector stays until `delete_orphans`); whether it was there."""
        return db.execute("DELETE FROM files WHERE path = ?", (path,)).rowcount > 0

    def delete_orphans(self, db: sqlite3.Connection) -> list[int]:
        """Drop the vectors no file points at any more; return their ids.

        Run once at the end of a write session rather than per file: a vector unused for a moment (file
        A changed away from content X while file B with content X is still queued) must not vanish.
        """
        rows = db.execute("DELETE FROM vectors WHERE NOT EXISTS "
                          "(SELECT 1 FROM files WHERE files.vector_id = vectors.id) RETURNING id").fetchall()
        return [int(row[0]) for row in rows]


_SELECT_FILES = ("SELECT f.path, f.vector_id, v.sha256, f.size, f.mtime_ns, f.width, f.height "
                 "FROM files f JOIN vectors v ON v.id = f.vector_id")


def _unpack(rows: list[tuple[int, bytes]], dim: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype="<f4").reshape(len(rows), dim)
    return ids, vectors.astype(np.float32, copy=False)


def _check_header(path: Path) -> None:
    # SQLite would happily "open" any file and only fail later, possibly after writing a journal next to
    # it; reading the 16-byte magic first means a foreign file is refused untouched.
    with open(path, "rb") as handle:
        magic = handle.read(16)
    if magic and magic != b"SQLite format 3\x00":
        raise UserError(f"{path}: not a zeroshot image index (not an SQLite file, or corrupt); "
                        "nothing was changed")
