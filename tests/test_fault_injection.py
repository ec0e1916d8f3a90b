"""Fault injection (issue 20): a full disk, a read-only folder, every index file damaged in turn,
FIFOs and /dev/zero where files are expected.

The full disk and the read-only folder are real where this process may mount file systems (root on
Linux: a small tmpfs filled to the last byte, a read-only bind mount). Where mounting is impossible
those tests skip, and the same faults are simulated instead (`ENOSPC` raised from a patched write,
SQLite's "database or disk is full"), which always run.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from zeroshot.errors import UserError
from zeroshot.search.index import ImageIndex
from zeroshot.search.stores import catalog as catalog_module
from zeroshot.testing import save_random_images


def _run(*command: str) -> bool:
    return subprocess.run(command, capture_output=True).returncode == 0


@contextmanager
def mounted(path: Path, *options: str):
    """A tmpfs (or bind mount) at `path`, or a skip where this process cannot mount."""
    path.mkdir(parents=True, exist_ok=True)
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or not _run("mount", *options, str(path)):
        pytest.skip("cannot mount here (needs root on Linux); the simulated tests cover this fault")
    try:
        yield path
    finally:
        _run("umount", "-l", str(path))


def _fill(folder: Path) -> Path:
    """Write a file until the file system is full; return it (delete it to free the space)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (1 << 16, 4096, 512):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


def _check_intact(db: Path) -> int:
    with sqlite3.connect(db / "catalog.sqlite") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return connection.execute("SELECT count(*) FROM files").fetchone()[0]


# --- a full disk ---------------------------------------------------------------------------------------

def test_full_tmpfs_says_no_space_keeps_what_was_done_and_resumes(tmp_path, tiny_clip):
    photos = save_random_images(tmp_path / "photos", 40)
    with mounted(tmp_path / "disk", "-t", "tmpfs", "-o", "size=3m", "tmpfs") as disk:
        db = disk / "db"
        with ImageIndex(db, tiny_clip) as index:
            index.add(photos[:8])
        filler = _fill(disk)
        with pytest.raises(UserError, match="no space left on device") as info, \
                ImageIndex(db, tiny_clip) as index:
            index.add(photos)
        assert "damaged" not in str(info.value) and "corrupt" not in str(info.value)
        filler.unlink()
        assert _check_intact(db) >= 8  # nothing finished was lost
        with ImageIndex(db, tiny_clip) as index:
            index.add(photos)
            assert len(index) == 40
            assert len(index.search(text="x", k=3)) == 3


def test_a_new_index_on_a_full_tmpfs_leaves_nothing_behind(tmp_path, tiny_clip):
    photos = save_random_images(tmp_path / "photos", 4)
    with mounted(tmp_path / "disk", "-t", "tmpfs", "-o", "size=1m", "tmpfs") as disk:
        filler = _fill(disk)
        with pytest.raises(UserError, match="no space left on device"):
            ImageIndex(disk / "db", tiny_clip).add(photos)
        assert not (disk / "db" / "catalog.sqlite").exists()  # no empty catalog to poison later runs
        filler.unlink()
        with ImageIndex(disk / "db", tiny_clip) as index:
            assert len(index.add(photos).added) == 4


def test_simulated_enospc_in_the_cache_write(tmp_path, tiny_clip, monkeypatch):
    """The FAISS cache write fails with ENOSPC (simulated: a patched write)."""
    from zeroshot.search.stores import faiss_store

    photos = save_random_images(tmp_path / "photos", 6)

    def full(index, path):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    with ImageIndex(tmp_path / "db", tiny_clip) as index:
        index.add(photos[:2])
    monkeypatch.setattr(faiss_store.faiss, "write_index", full)
    with pytest.raises(UserError, match="no space left on device"), \
            ImageIndex(tmp_path / "db", tiny_clip) as index:
        index.add(photos)
    monkeypatch.undo()
    assert _check_intact(tmp_path / "db") == 6  # the catalog committed; only the cache could not be saved
    with ImageIndex(tmp_path / "db", tiny_clip) as index:
        assert len(index.add(photos).skipped) == 6 and len(index.search(text="x", k=6)) == 6


def test_simulated_sqlite_full_is_not_reported_as_damage(tmp_path, tiny_clip, monkeypatch):
    """SQLite says "database or disk is full" mid-batch (simulated), after which it has rolled back."""
    photos = save_random_images(tmp_path / "photos", 6)

    def full(self, db, sha256, embedding):
        db.execute("ROLLBACK")  # what SQLite itself does on SQLITE_FULL
        error = sqlite3.OperationalError("database or disk is full")
        error.sqlite_errorcode = 13
        raise error

    with ImageIndex(tmp_path / "db", tiny_clip) as index:
        index.add(photos[:2])
    monkeypatch.setattr(catalog_module.Catalog, "insert_vector", full)
    with pytest.raises(UserError, match="no space left on device") as info, \
            ImageIndex(tmp_path / "db", tiny_clip) as index:
        index.add(photos)
    assert "cannot rollback" not in str(info.value)
    monkeypatch.undo()
    assert _check_intact(tmp_path / "db") == 2
    with ImageIndex(tmp_path / "db", tiny_clip) as index:
        assert len(index.add(photos).added) == 4


def test_simulated_enospc_creating_the_catalog(tmp_path, monkeypatch):
    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(catalog_module.os, "link", full)
    with pytest.raises(UserError, match="no space left on device"):
        ImageIndex(tmp_path / "db")
    assert not (tmp_path / "db").exists()  # the folder it made is gone again
    monkeypatch.undo()
    ImageIndex(tmp_path / "db").close()


# --- a read-only folder --------------------------------------------------------------------------------

@contextmanager
def read_only(folder: Path):
    """`folder` made read-only: a read-only bind mount as root, file modes otherwise."""
    if os.geteuid() == 0:
        with mounted(folder, "--bind", str(folder)):
            if not _run("mount", "-o", "remount,ro,bind", str(folder)):
                pytest.skip("cannot remount read-only here")
            yield
        return
    modes = {path: path.stat().st_mode for path in [folder, *folder.iterdir()]}
    for path in modes:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        yield
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


def test_read_only_index_searches_and_refuses_writes_by_name(tmp_path, tiny_clip):
    photos = save_random_images(tmp_path / "photos", 6)
    db = tmp_path / "db"
    with ImageIndex(db, tiny_clip) as index:
        index.add(photos)
        expected = [(hit.path, round(hit.score, 5)) for hit in index.search(text="x", k=3)]
    with read_only(db):
        with ImageIndex(db, tiny_clip, create=False) as index:
            assert [(hit.path, round(hit.score, 5)) for hit in index.search(text="x", k=3)] == expected
        with pytest.raises(UserError, match="read-only"), ImageIndex(db, tiny_clip) as index:
            index.add(save_random_images(tmp_path / "more", 1, seed=50, start=50))


# --- FIFOs and /dev/zero where files are expected ------------------------------------------------------

def test_fifos_and_dev_zero_as_index_files_are_refused(tmp_path, tiny_clip):
    db = tmp_path / "db"
    db.mkdir()
    os.mkfifo(db / "catalog.sqlite")
    with pytest.raises(UserError, match="expected a file"):
        ImageIndex(db, tiny_clip)
    (db / "catalog.sqlite").unlink()
    os.symlink("/dev/zero", db / "catalog.sqlite")
    with pytest.raises(UserError):
        ImageIndex(db, tiny_clip)
    (db / "catalog.sqlite").unlink()
    with ImageIndex(db, tiny_clip) as index:
        index.add(save_random_images(tmp_path / "photos", 3))
    os.mkfifo(tmp_path / "query.png")
    with ImageIndex(db, tiny_clip) as index:
        for query in (tmp_path / "query.png", Path("/dev/zero")):
            with pytest.raises(UserError, match="not a regular file"):
                index.search(image=str(query))


# --- every file of an index damaged in turn ------------------------------------------------------------

def _scribble(path: Path) -> None:
    """4 KiB of 0x7f (3.4e38 as float32) over the middle of the file, as the issue's reproduction did."""
    size = path.stat().st_size
    length = min(4096, size // 2)
    with open(path, "r+b") as handle:
        handle.seek((size - length) // 2)
        handle.write(b"\x7f" * length)


def test_every_index_file_damaged_in_turn_never_gives_garbage(tmp_path, tiny_clip):
    save_random_images(tmp_path / "photos", 12)
    db = tmp_path / "db"  # catalog.sqlite, vectors.faiss, vectors.json, write.lock
    with ImageIndex(db, tiny_clip) as index:
        index.add([tmp_path / "photos"])
        clean = [(hit.path, round(hit.score, 5)) for hit in index.search(text="a dog", k=3)]
    originals = {path.name: path.read_bytes() for path in db.iterdir() if path.is_file()}
    for name in sorted(originals):
        for damage in ("scribble", "truncate", "delete"):
            for other, data in originals.items():
                (db / other).write_bytes(data)
            target = db / name
            if damage == "scribble":
                _scribble(target)
            elif damage == "truncate":
                target.write_bytes(originals[name][: len(originals[name]) // 3])
            else:
                target.unlink()
            try:
                with ImageIndex(db, tiny_clip, create=False) as index:
                    hits = [(hit.path, round(hit.score, 5)) for hit in index.search(text="a dog", k=3)]
            except UserError:
                continue  # refused with a reason: acceptable for the catalog itself
            assert hits == clean, (name, damage)


