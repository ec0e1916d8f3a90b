"""The catalog: an SQLite file holding every indexed file's metadata, and every embedding beside it.

The catalog is the source of truth; vector indexes (FAISS, Milvus) are derived from it and can always
be rebuilt. Embeddings are stored once per distinct content (sha256); files point at them, so
byte-identical copies share one vector. Every write is one transaction (WAL journal) that also bumps a
`version` counter, which tells a vector index whether it is still in step.

Where the embeddings live depends on the catalog's schema:
- schema 2 (every new catalog): float16 rows in `embeddings.f16` next to the SQLite file, row = id - 1,
  read through a memory map (`vector_file.py`): 1 KiB a 512-d vector, and a query touches only the rows
  it re-ranks. A transaction writes and syncs its rows just before it commits.
- schema 1 (catalogs written before): float32 blobs in the `vectors` table. Such a catalog is read and
  written as it is, never converted behind the user's back; `convert_to_float16` converts it on request.

A file that is not a zeroshot catalog (another SQLite database, garbage bytes) is refused before
anything is written to it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np

from zeroshot.errors import UserError, disk_full
from zeroshot.files import write_atomic
from zeroshot.numerics import batched
from zeroshot.search.stores.vector_file import VectorFile, VectorFileError

FORMAT = "zeroshot-image-index"
SCHEMA_VERSION = 2
LEGACY_SCHEMA = 1  # float32 blobs in SQLite
FLOAT16_FILE, FLOAT32_SQLITE = "float16-file", "float32-sqlite"
VECTOR_FILE_NAME = "embeddings.f16"

_SCHEMA = """
CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE vectors (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so a vector index can trust ids
    sha256 TEXT NOT NULL UNIQUE,
    embedding BLOB NOT NULL  -- schema 1: float32; schema 2: empty (the vector is in embeddings.f16)
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
_FIRST_ROWS = (f"INSERT INTO info VALUES ('format', '{FORMAT}'), ('schema', '{SCHEMA_VERSION}'), "
               f"('vector_storage', '{FLOAT16_FILE}'), ('version', '0')")


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
    """Metadata and embeddings of an image index, in one SQLite file (see the module docstring).

    A catalog in a folder this process cannot write is opened read-only (`read_only`): queries work,
    writes raise a `UserError` that says so.
    """

    def __init__(self, path: str | Path, create: bool = True) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()  # one connection shared by the threads of a server
        if self.path.exists() and not self.path.is_file():
            raise UserError(f"{self.path}: expected a file, found a folder")
        if not self.path.exists():
            if not create:
                raise UserError(f"{self.path.parent}: no image index here (run `zeroshot index` first)")
            _create(self.path)
        _check_header(self.path)
        self.read_only = not (os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK))
        try:
            if self.read_only:
                # No -wal/-shm files can be made here, which SQLite's WAL mode needs even to read;
                # `immutable` reads the file as it stands (no writer can change it in such a folder).
                uri = f"file:{quote(str(self.path.absolute()))}?mode=ro&immutable=1"
                self._db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            else:
                self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                           check_same_thread=False)
            self._check_format(create)
            self._vectors: VectorFile | None = None
            self.storage = self.info().get("vector_storage", FLOAT32_SQLITE)
            self._check_vector_file()
            if not self.read_only:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives process crashes
        except sqlite3.DatabaseError as exc:
            with contextlib.suppress(Exception):
                self._db.close()
            raise database_error(exc, self.path, "opening the index") from exc

    def _check_format(self, create: bool = True) -> None:
        try:
            rows = dict(self._db.execute("SELECT key, value FROM info").fetchall())
        except sqlite3.OperationalError as exc:
            tables = self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if not tables and not create:
                # a reader (search, serve) finds an empty catalog: say so, instead of "repairing" it into
                # an index with no model, whose search then blames the default CLIP's download
                raise UserError(f"{self.path}: the catalog is empty or damaged ({self.path.stat().st_size} "
                                "bytes, no index in it): run `zeroshot index` on this --db again, or "
                                "restore the folder") from exc
            if tables or self.read_only:
                raise UserError(f"{self.path}: not a zeroshot image index, or corrupt ({exc}); "
                                "nothing was changed") from exc
            # An empty database: a creation that an older zeroshot left unfinished (full disk). Finish it.
            self._db.executescript("BEGIN IMMEDIATE;" + _SCHEMA + ";" + _FIRST_ROWS + ";COMMIT;")
            rows = dict(self._db.execute("SELECT key, value FROM info").fetchall())
        if rows.get("format") != FORMAT:
            raise UserError(f"{self.path}: an SQLite database, but not a zeroshot image index; "
                            "nothing was changed")
        if int(rows.get("schema", "0")) > SCHEMA_VERSION:
            raise UserError(f"{self.path}: written by a newer zeroshot (schema {rows['schema']}); "
                            "upgrade zeroshot")

    def _vector_file(self, dim: int | None = None) -> VectorFile | None:
        """The float16 file of a schema-2 catalog (None for schema 1, or before the dimension is known)."""
        if self.storage != FLOAT16_FILE:
            return None
        if self._vectors is None:
            dim = dim or int(self.info().get("embedding_dim", "0"))
            if dim:
                self._vectors = VectorFile(self.path.with_name(VECTOR_FILE_NAME), dim)
        return self._vectors

    def _check_vector_file(self) -> None:
        # A missing or truncated vector file is found now, before anything is written: a write would
        # otherwise add rows after a gap, and a search would fail later with less to go on.
        if self.storage != FLOAT16_FILE:
            return
        highest = self._db.execute("SELECT max(id) FROM vectors").fetchone()[0]
        vectors = self._vector_file()
        if highest is not None and (vectors is None or vectors.rows() < highest):
            raise UserError(self._damaged(f"holds {0 if vectors is None else vectors.rows():,} vectors, "
                                          f"the catalog needs {highest:,} (missing or truncated)"))

    def _damaged(self, what: str) -> str:
        return (f"{self.path.with_name(VECTOR_FILE_NAME)}: the embeddings file {what}; nothing was "
                "changed; restore it from a backup, or re-create the index with `zeroshot index` into a "
                "new --db folder")

    def close(self) -> None:
        with self._lock:
            if self._vectors is not None:
                self._vectors.close()
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: everything inside commits together, and `version` goes up by one."""
        with self._write() as db:
            yield db
            db.execute("UPDATE info SET value = CAST(value AS INTEGER) + 1 WHERE key = 'version'")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self.read_only:
                raise UserError(f"{self.path.parent}: the index folder is read-only here; it can be "
                                "searched but not changed")
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise database_error(exc, self.path, "starting a write") from exc
            try:
                yield self._db
                if self._vectors is not None:
                    self._vectors.flush()  # the rows reach the disk before the ids that point at them
                self._db.execute("COMMIT")
            except BaseException:
                if self._vectors is not None:
                    self._vectors.discard()
                # After some errors (a full disk, an I/O error) SQLite has rolled back already; a second
                # ROLLBACK would fail and hide the error that matters.
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise

    # --- checksums of derived files -------------------------------------------------------------

    def checksum(self, name: str) -> str | None:
        """The checksum recorded for the derived file `name` (a vector-store cache), if any."""
        with self._lock:
            row = self._db.execute("SELECT value FROM info WHERE key = ?", (f"checksum:{name}",)).fetchone()
        return row[0] if row else None

    def record_checksums(self, checksums: dict[str, str]) -> None:
        """Record derived files' checksums; not a change of the contents, so `version` stays."""
        if self.read_only:
            return
        with self._write() as db:
            db.executemany("INSERT OR REPLACE INTO info VALUES (?, ?)",
                           [(f"checksum:{name}", digest) for name, digest in checksums.items()])

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
            for part in batched(ids, 500):
                marks = ",".join("?" * len(part))
                query = _SELECT_FILES + f" WHERE f.vector_id IN ({marks}) ORDER BY f.path"
                for row in self._db.execute(query, part):
                    record = FileRecord(*row)
                    found.setdefault(record.vector_id, []).append(record)
        return found

    def contents(self) -> tuple[dict[str, int], dict[int, np.ndarray]]:
        """The whole index: every file's vector id, and every stored vector (float32) by id. For
        comparing two indexes (all in memory: small collections only)."""
        with self._lock:
            files = dict(self._db.execute("SELECT path, vector_id FROM files"))
        vectors = {int(i): row for ids, rows in self.iter_vectors() for i, row in zip(ids, rows, strict=True)}
        return files, vectors

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
        if self.storage == FLOAT16_FILE:
            yield from self._iter_file_vectors(ids, batch)
        elif ids is None:
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
            for part in batched(wanted, 500):
                marks = ",".join("?" * len(part))
                with self._lock:
                    rows = self._db.execute(f"SELECT id, embedding FROM vectors WHERE id IN ({marks})",
                                            part).fetchall()
                if rows:
                    yield _unpack(rows, dim)

    def _iter_file_vectors(self, ids: Sequence[int] | None, batch: int
                           ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if ids is None:
            last = 0
            while True:
                with self._lock:
                    rows = self._db.execute("SELECT id FROM vectors WHERE id > ? ORDER BY id LIMIT ?",
                                            (last, batch)).fetchall()
                if not rows:
                    return
                chunk = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
                last = int(chunk[-1])
                yield chunk, self.vectors(chunk)
        else:
            wanted = np.asarray(list(ids), dtype=np.int64)
            for start in range(0, len(wanted), batch):
                chunk = wanted[start:start + batch]
                yield chunk, self.vectors(chunk)

    def vectors(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The embeddings of `ids`, in that order, as float32 (n, dim): a few rows, read where they lie.

        This is the read of a query's re-ranking: from the memory-mapped file (schema 2) or by id from
        SQLite (schema 1). Every id must be in the catalog.
        """
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        vectors = self._vector_file()
        if vectors is not None:
            try:
                return vectors.read(ids)
            except VectorFileError as exc:
                raise UserError(self._damaged(str(exc).split(": ", 1)[1])) from exc
        dim = int(self.info().get("embedding_dim", "0"))
        out = np.zeros((len(ids), dim), dtype=np.float32)
        position = {int(i): n for n, i in enumerate(ids.tolist())}
        for part in batched(list(position), 500):
            marks = ",".join("?" * len(part))
            with self._lock:
                rows = self._db.execute(f"SELECT id, embedding FROM vectors WHERE id IN ({marks})",
                                        part).fetchall()
            if rows:
                found, values = _unpack(rows, dim)
                out[[position[int(i)] for i in found]] = values
        return out

    # --- writes (call inside `transaction`) ----------------------------------------------------------

    def insert_vector(self, db: sqlite3.Connection, sha256: str, embedding: np.ndarray) -> int:
        if self.storage == FLOAT16_FILE:
            if self._vectors is None:  # the first vector fixes the row size: record it with the vector
                db.execute("INSERT OR IGNORE INTO info VALUES ('embedding_dim', ?)",
                           (str(np.asarray(embedding).size),))
            vectors = self._vector_file(dim=int(np.asarray(embedding).size))
            assert vectors is not None
            if vectors.dim != np.asarray(embedding).size:
                raise UserError(f"a {np.asarray(embedding).size}-d embedding for a {vectors.dim}-d index")
            cursor = db.execute("INSERT INTO vectors (sha256, embedding) VALUES (?, ?)", (sha256, b""))
            vector_id = int(cursor.lastrowid)
            try:
                vectors.stage(vector_id, embedding)
            except ValueError as exc:
                raise UserError(f"cannot store the embedding of {sha256[:12]}: {exc}") from exc
            return vector_id
        blob = np.ascontiguousarray(embedding, dtype="<f4").tobytes()
        cursor = db.execute("INSERT INTO vectors (sha256, embedding) VALUES (?, ?)", (sha256, blob))
        return int(cursor.lastrowid)

    def insert_vectors(self, db: sqlite3.Connection, sha256s: Sequence[str], embeddings: np.ndarray
                       ) -> np.ndarray:
        """`insert_vector` for many contents at once (one statement, one staged block); their new ids."""
        embeddings = np.asarray(embeddings, dtype=np.float32).reshape(len(sha256s), -1)
        if not len(sha256s):
            return np.zeros(0, dtype=np.int64)
        # Inside this write transaction nobody else inserts, so AUTOINCREMENT hands out consecutive ids.
        seq = "SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'vectors'"
        first = int(db.execute(seq).fetchone()[0]) + 1
        if self.storage == FLOAT16_FILE:
            blobs = [b""] * len(sha256s)
        else:
            blobs = [row.astype("<f4").tobytes() for row in embeddings]
        db.executemany("INSERT INTO vectors (sha256, embedding) VALUES (?, ?)",
                       zip(sha256s, blobs, strict=True))
        ids = np.arange(first, first + len(sha256s), dtype=np.int64)
        if int(db.execute(seq).fetchone()[0]) != ids[-1]:
            raise RuntimeError("vector ids were not handed out consecutively")  # never expected
        if self.storage == FLOAT16_FILE:
            if self._vectors is None:
                db.execute("INSERT OR IGNORE INTO info VALUES ('embedding_dim', ?)",
                           (str(embeddings.shape[1]),))
            vectors = self._vector_file(dim=embeddings.shape[1])
            assert vectors is not None
            try:
                vectors.stage_block(int(ids[0]), embeddings)
            except ValueError as exc:
                raise UserError(f"cannot store these embeddings: {exc}") from exc
        return ids

    def convert_to_float16(self, progress: bool = False) -> int:
        """Move a schema-1 catalog's float32 embeddings into `embeddings.f16` (schema 2); the count moved.

        Halves what each vector takes and lets searches read rows in place. The file is written under a
        temporary name and renamed into place while this process holds the write transaction; the
        catalog switches over in that same transaction, so a crash leaves the old catalog as it was.
        Float16 keeps about 3 significant digits: cosine scores move by about 1e-4.
        """
        if self.storage == FLOAT16_FILE:
            return 0
        from tqdm.auto import tqdm

        dim = int(self.info().get("embedding_dim", "0"))
        moved = 0

        def write_rows(tmp: Path) -> None:
            nonlocal moved
            total = self.count_vectors()  # called inside the write transaction below
            with open(tmp, "wb") as handle, tqdm(total=total, unit="vec", desc="converting to float16",
                                                 disable=not progress) as bar:
                for ids, vectors in self.iter_vectors():
                    handle.seek((int(ids[0]) - 1) * dim * 2)
                    rows = np.zeros((int(ids[-1] - ids[0]) + 1, dim), dtype="<f2")
                    rows[ids - ids[0]] = vectors
                    handle.write(rows.tobytes())
                    moved += len(ids)
                    bar.update(len(ids))

        with self._write() as db:
            write_atomic(self.path.with_name(VECTOR_FILE_NAME), write_rows, fsync=True)
            db.execute("UPDATE vectors SET embedding = x''")
            db.executemany("INSERT OR REPLACE INTO info VALUES (?, ?)",
                           [("schema", str(SCHEMA_VERSION)), ("vector_storage", FLOAT16_FILE)])
            db.execute("UPDATE info SET value = CAST(value AS INTEGER) + 1 WHERE key = 'version'")
        self.storage = FLOAT16_FILE
        self._vectors = None
        with self._lock, contextlib.suppress(sqlite3.Error):
            # Give the float32 blobs' space back to the file system. It needs room for a copy of the
            # file; without it (a full disk) the converted catalog is kept as it is, only larger.
            self._db.execute("VACUUM")
        return moved

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


def _create(path: Path) -> None:
    """Make a new, complete catalog at `path`, or leave the one another process made first.

    Built under a temporary name and linked into place (a link never replaces an existing file), so no
    one ever sees a half-made catalog, two simultaneous creators agree on one, and a failure (a full
    disk) leaves nothing behind.
    """
    tmp = path.with_name(f"{TEMP_PREFIX}{os.getpid()}.{threading.get_ident()}")
    try:
        db = sqlite3.connect(tmp, isolation_level=None)
        try:
            db.executescript("BEGIN IMMEDIATE;" + _SCHEMA + ";" + _FIRST_ROWS + ";COMMIT;")
        finally:
            db.close()
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it first: use that one
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
            if not path.exists():  # a file system without hard links: a rename is the best left
                os.replace(tmp, path)
    except sqlite3.DatabaseError as exc:
        raise database_error(exc, path, "creating the index") from exc
    except OSError as exc:
        from zeroshot.errors import storage_error

        raise (storage_error(exc, path, "creating the index") or exc) from exc
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
            with contextlib.suppress(OSError):
                leftover.unlink()


# Temporary catalogs being created; a folder holding only these (and a lock) still counts as empty.
TEMP_PREFIX = ".catalog-new."

# SQLite's primary result codes (the low byte of `sqlite_errorcode`).
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY, _SQLITE_IOERR = 5, 6, 8, 10
_SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 11, 13, 14, 26


def database_error(exc: sqlite3.Error, path: Path, doing: str) -> UserError:
    """One line saying what really went wrong with the catalog at `path` while `doing` something.

    A full disk must not read as corruption: SQLite reports it as SQLITE_FULL, or, in WAL mode, as an
    I/O error, which is told apart by the free space left.
    """
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    where = path.parent
    if code == _SQLITE_FULL or (code == _SQLITE_IOERR and disk_full(where)):
        return UserError(f"{where}: no space left on device while {doing}; nothing of the unfinished "
                         "batch was kept; free some space and run it again (finished batches are kept)", 507)
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return UserError(f"{where}: another process is writing this index; try again when it finishes", 409)
    if code == _SQLITE_READONLY:
        return UserError(f"{where}: the index is read-only here; it can be searched but not changed", 403)
    if code == _SQLITE_IOERR:
        return UserError(f"{path}: disk I/O error while {doing} ({exc}); nothing was changed", 503)
    if code == _SQLITE_CANTOPEN:
        return UserError(f"{path}: cannot open the index ({exc})", 403)
    return UserError(f"{path}: not a readable zeroshot image index, or damaged ({exc}); nothing was "
                     "changed; re-create it with `zeroshot index` into a new --db folder")
