"""Issue 20, image loading and the search index: non-regular files, damaged caches, odd names, races.

Each test is a reproduction from the issue. On the code before it: a symlink to /dev/zero grew without
bound, a FIFO blocked forever, a scribbled FAISS cache answered 7e37 with exit 0 and was never repaired,
a non-UTF-8 file name stopped a whole folder, and simultaneous creations were told "corrupt".
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from zeroshot.errors import UserError
from zeroshot.search.index import ImageIndex
from zeroshot.testing import save_random_images
from zeroshot.vision.images import ImageError, load_image, read_image_bytes


@contextmanager
def deadline(seconds: int):
    """Turn a hang (the old behaviour) into a failure instead of a stuck test run."""
    def expired(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_devices_fifos_and_folders_are_refused_by_the_loader(tmp_path):
    zero = tmp_path / "b.png"
    os.symlink("/dev/zero", zero)
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    folder = tmp_path / "dir.png"
    folder.mkdir()
    with deadline(10):
        for path, reason in [(zero, "not a regular file"), (fifo, "not a regular file"),
                             (folder, "is a folder")]:
            with pytest.raises(ImageError, match=reason):
                load_image(path)
            with pytest.raises(ImageError, match=reason):
                read_image_bytes(path)


def test_read_cap_follows_the_pixel_limit(tmp_path):
    # The cap is max_pixels * 8 bytes + 16 MiB of headers: a 17 MiB (sparse) file is too big for 10 pixels.
    sparse = tmp_path / "sparse.png"
    with open(sparse, "wb") as handle:
        handle.truncate(17 << 20)
    with pytest.raises(ImageError, match="more than an image"):
        read_image_bytes(sparse, max_pixels=10)
    assert len(read_image_bytes(sparse, max_pixels=1_000_000)) == 17 << 20


@pytest.fixture
def pictures(tmp_path) -> list[Path]:
    return save_random_images(tmp_path / "photos", 6, size=24)


def test_index_skips_dev_zero_and_fifos_and_keeps_the_rest(tmp_path, pictures, tiny_clip):
    folder = pictures[0].parent
    os.symlink("/dev/zero", folder / "b.png")
    os.mkfifo(folder / "x.png")
    with deadline(60), ImageIndex(tmp_path / "db", tiny_clip) as index:
        report = index.add([folder])
    failed = dict(report.failed)
    assert len(report.added) == len(pictures)
    assert set(failed) == {str(folder / "b.png"), str(folder / "x.png")}
    assert all("not a regular file" in reason for reason in failed.values())


def test_a_non_utf8_file_name_fails_alone(tmp_path, pictures, tiny_clip):
    folder = pictures[0].parent
    odd = os.path.join(os.fsencode(folder), b"caf\xe9.png")
    with open(odd, "wb") as handle:
        handle.write(pictures[0].read_bytes())
    with ImageIndex(tmp_path / "db", tiny_clip) as index:
        report = index.add([folder])
        assert len(report.added) == len(pictures) and len(index) == len(pictures)
    assert len(report.failed) == 1 and "not valid UTF-8" in report.failed[0][1]


def _scribble(path: Path) -> None:
    size = path.stat().st_size
    length = min(4096, size // 2)
    with open(path, "r+b") as handle:
        handle.seek((size - length) // 2)
        handle.write(b"\x7f" * length)  # 0x7f7f7f7f as float32 is about 3.4e38


def test_a_scribbled_faiss_cache_is_detected_rebuilt_and_repaired(tmp_path, tiny_clip):
    save_random_images(tmp_path / "photos", 40, size=24)
    db = tmp_path / "db"
    with ImageIndex(db, tiny_clip) as index:
        index.add([tmp_path / "photos"])
        clean = [(hit.path, round(hit.score, 5)) for hit in index.search(text="a cat", k=5)]
    cache = db / "vectors.faiss"
    _scribble(cache)
    with ImageIndex(db, tiny_clip) as index:  # a reader: rebuilds in memory, answers as before
        hits = index.search(text="a cat", k=5)
    assert [(hit.path, round(hit.score, 5)) for hit in hits] == clean
    assert all(abs(hit.score) <= 1.0001 for hit in hits)
    with ImageIndex(db, tiny_clip) as index:  # a writer repairs the file itself
        report = index.add([tmp_path / "photos"])
        assert len(report.skipped) == 40
    with ImageIndex(db, tiny_clip) as index:
        store = index._synced_store(durable=False)
        assert store.synced_version() == index.catalog.version  # the repaired cache was trusted
        assert [(hit.path, round(hit.score, 5)) for hit in index.search(text="a cat", k=5)] == clean


def test_an_empty_catalog_left_by_a_failed_creation_is_finished(tmp_path, pictures, tiny_clip):
    db = tmp_path / "db"
    db.mkdir()
    empty = sqlite3.connect(db / "catalog.sqlite")
    empty.execute("PRAGMA journal_mode=WAL")  # a 4 kB database with no tables, as a full disk left it
    empty.close()
    with ImageIndex(db, tiny_clip) as index:
        assert len(index.add([pictures[0].parent]).added) == len(pictures)


def test_simultaneous_creations_of_one_index_agree(tmp_path):
    db = tmp_path / "db"
    start = threading.Barrier(12)
    errors: list[str] = []

    def create() -> None:
        start.wait()
        try:
            ImageIndex(db).close()
        except UserError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=create) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not [e for e in errors if "corrupt" in e or "damaged" in e or "not a" in e], errors
    assert sorted(p.name for p in db.iterdir()) == ["catalog.sqlite"] or all(
        not p.name.startswith(".catalog-new") for p in db.iterdir())
    with ImageIndex(db) as index:
        assert index.info["format"] == "zeroshot-image-index"


def test_min_score_must_be_a_number(tmp_path, pictures, tiny_clip):
    with ImageIndex(tmp_path / "db", tiny_clip) as index:
        index.add(pictures[:2])
        with pytest.raises(UserError, match="finite"):
            index.search(text="x", min_score=float("nan"))
