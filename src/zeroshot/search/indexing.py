"""Incremental indexing: bring a catalog and its vector store in step with files on disk.

For each file: same size and mtime as recorded -> skipped without reading it; otherwise read and hash
it: same sha256 as recorded -> skipped (mtime updated); content already in the index (a copy of another
file) -> linked to that vector, no model call; new content -> embedded. The bytes that were hashed are
the bytes that are embedded, so a file rewritten mid-run can never get a vector that does not match its
hash. Each embedded batch is one SQLite transaction, so an interrupted run keeps every finished batch
and the next run picks up where it stopped.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zeroshot.models.clip import ImageTextModel
from zeroshot.search.stores import VectorStore
from zeroshot.search.stores.catalog import Catalog
from zeroshot.vision.images import ImageError, read_image_bytes


@dataclass
class AddReport:
    """What `ImageIndex.add` did, file by file."""

    added: list[str] = field(default_factory=list)  # new paths (embedded, or linked to identical content)
    updated: list[str] = field(default_factory=list)  # known paths whose content changed
    skipped: list[str] = field(default_factory=list)  # unchanged
    removed: list[str] = field(default_factory=list)  # gone from disk under the roots given
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    embedded: int = 0  # images that went through the model

    def summary(self) -> str:
        """One line: counts of each outcome."""
        return (f"{len(self.added)} added, {len(self.updated)} updated, {len(self.skipped)} unchanged, "
                f"{len(self.removed)} removed, {len(self.failed)} failed ({self.embedded} embedded)")

    def to_dict(self) -> dict:
        return {"added": self.added, "updated": self.updated, "skipped": self.skipped,
                "removed": self.removed, "failed": [{"path": p, "reason": r} for p, r in self.failed],
                "embedded": self.embedded}


@dataclass
class _File:
    path: str
    size: int
    mtime_ns: int
    sha256: str = ""
    width: int | None = None
    height: int | None = None
    known: bool = False  # the catalog had this path before this run
    data: bytes | None = None


class _Run:
    """One `add`: the queue of files to embed and the catalog writes waiting for the next transaction."""

    def __init__(self, catalog: Catalog, store: VectorStore, report: AddReport, bar) -> None:
        self.catalog = catalog
        self.store = store
        self.report = report
        self.bar = bar
        self.queued: list[_File | None] = []  # what the embedder sees, by position
        self.same_content: dict[str, list[_File]] = {}  # sha256 -> files waiting on one embedding
        self.writes: list[tuple[str, _File, int]] = []  # ("touch" | "link" | "forget", file, vector id)

    def changed(self, path: str) -> tuple[_File, object] | None:
        """`path` and its catalog record when it must be read again; None when it is unchanged (skipped:
        same size and mtime) or cannot be indexed (its name or its `stat`: recorded as failed)."""
        if not _storable(path):
            # The catalog keys files by their name as UTF-8 text; one that is not cannot be keyed.
            self.fail(_File(path, 0, 0), f"{_printable(path)}: the file name is not valid UTF-8; "
                                         "rename it to index it")
            return None
        record = self.catalog.file(path)
        try:
            info = os.stat(path)
        except OSError as exc:
            self.fail(_File(path, 0, 0, known=record is not None), _os_reason(exc))
            return None
        if record and (record.size, record.mtime_ns) == (info.st_size, info.st_mtime_ns):
            self.report.skipped.append(path)
            self.bar.update(1)
            return None
        return _File(path, info.st_size, info.st_mtime_ns, known=record is not None), record

    def files_to_embed(self, files: list[str]) -> Iterator[bytes]:
        """Read and classify `files`; yield the bytes of each new content (lazily, ahead of the model)."""
        for path in files:
            found = self.changed(path)
            if found is None:
                continue
            item, record = found
            try:
                item.data = read_image_bytes(path)
            except ImageError as exc:
                self.fail(_File(path, 0, 0, known=record is not None), str(exc))
                continue
            except OSError as exc:
                self.fail(_File(path, 0, 0, known=record is not None), _os_reason(exc))
                continue
            item.sha256 = hashlib.sha256(item.data).hexdigest()
            if record and record.sha256 == item.sha256:
                self.writes.append(("touch", item, record.vector_id))
                self.report.skipped.append(path)
                self.bar.update(1)
            elif item.sha256 in self.same_content:
                self.same_content[item.sha256].append(item)
            elif (vector_id := self.catalog.vector_id(item.sha256)) is not None:
                item.width, item.height = _image_size(item.data)
                self.writes.append(("link", item, vector_id))
            else:
                item.width, item.height = _image_size(item.data)
                self.same_content[item.sha256] = [item]
                self.queued.append(item)
                yield item.data

    def commit(self, indices: list[int], embeddings: np.ndarray, failures: list[tuple[int, str]]) -> None:
        """Write one embedded batch and the pending writes in one transaction, then update the store."""
        new_ids: list[int] = []
        with self.catalog.transaction() as db:
            for position, embedding in zip(indices, embeddings, strict=True):
                first = self.queued[position]
                vector_id = self.catalog.insert_vector(db, first.sha256, embedding)
                new_ids.append(vector_id)
                for item in self.same_content.pop(first.sha256):
                    self.writes.append(("link", item, vector_id))
                self.queued[position] = None  # let the bytes go
            for position, reason in failures:
                first = self.queued[position]
                for item in self.same_content.pop(first.sha256):
                    self.fail(item, reason.replace("image:", f"{item.path}:", 1))
                self.queued[position] = None
            self.apply_writes(db)
        self.report.embedded += len(new_ids)
        if new_ids:
            # What the catalog kept (float16 in a new catalog), not the model's float32: a store rebuilt
            # from the catalog later must give the same scores as this one.
            ids = np.asarray(new_ids, dtype=np.int64)
            self.store.add(ids, self.catalog.vectors(ids))

    def apply_writes(self, db) -> None:
        for action, item, vector_id in self.writes:
            if action == "touch":
                self.catalog.touch_file(db, item.path, item.size, item.mtime_ns)
                continue
            if action == "forget":
                self.catalog.delete_file(db, item.path)
                continue
            self.catalog.put_file(db, item.path, vector_id, item.size, item.mtime_ns, item.width, item.height)
            (self.report.updated if item.known else self.report.added).append(item.path)
            self.bar.update(1)
        self.writes.clear()

    def finish(self, gone: list[str]) -> None:
        """The writes still pending, then forget `gone` files and the vectors no file uses any more."""
        with self.catalog.transaction() as db:
            self.apply_writes(db)
            for path in gone:
                if self.catalog.delete_file(db, path):
                    self.report.removed.append(path)
            orphans = self.catalog.delete_orphans(db)
        self.store.remove(np.asarray(orphans, dtype=np.int64))

    def fail(self, item: _File, reason: str) -> None:
        # A file we can no longer read must not keep answering queries with its old content.
        self.report.failed.append((item.path, reason))
        if item.known:
            self.writes.append(("forget", item, -1))
        self.bar.update(1)


def index_files(catalog: Catalog, store: VectorStore, model: ImageTextModel, files: list[str],
                gone: list[str], batch_size: int = 32, num_workers: int = 2, progress: bool = False
                ) -> AddReport:
    """Index `files` (absolute paths) and forget `gone` ones; see the module docstring."""
    from tqdm.auto import tqdm

    from zeroshot.vision.embed import iter_image_embeddings

    report = AddReport()
    with tqdm(total=len(files), unit="img", desc="indexing", disable=not progress) as bar:
        run = _Run(catalog, store, report, bar)
        for batch in iter_image_embeddings(model, run.files_to_embed(files), batch_size=batch_size,
                                           num_workers=num_workers, progress=False):
            run.commit(batch.indices, batch.embeddings, batch.failures)
        run.finish(gone)
    return report


def forget_files(catalog: Catalog, store: VectorStore, paths: list[str]) -> list[str]:
    """Remove `paths` from the index (not from disk); return those that were indexed."""
    removed = []
    with catalog.transaction() as db:
        for path in paths:
            if catalog.delete_file(db, path):
                removed.append(path)
        orphans = catalog.delete_orphans(db)
    store.remove(np.asarray(orphans, dtype=np.int64))
    return removed


def _image_size(data: bytes) -> tuple[int | None, int | None]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            return image.size
    except Exception:  # noqa: BLE001 - the embedder reports undecodable files with a reason
        return None, None


def _storable(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes of the name, kept by Python as lone surrogates
        return False
    return True


def _printable(path: str) -> str:
    return path.encode("utf-8", "backslashreplace").decode("utf-8")


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"{exc.filename}: vanished before it could be read"
    if isinstance(exc, PermissionError):
        return f"{exc.filename}: permission denied"
    if isinstance(exc, IsADirectoryError):
        return f"{exc.filename}: is a folder, not an image"
    return f"{exc.filename}: cannot read ({exc.strerror or exc})"


def absolute(path: str | Path) -> str:
    """The path as the catalog keys it: absolute and normalised, symlinks kept as named."""
    return os.path.abspath(os.path.expanduser(os.fspath(path)))
