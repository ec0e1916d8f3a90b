"""ImageIndex through the Python API: incremental re-indexing, deletes, duplicates, bad input, models."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from zeroshot.errors import UserError
from zeroshot.search.index import ImageIndex


def make_images(folder: Path, count: int, side: int = 48) -> list[Path]:
    """`count` distinct small JPEGs cut from scikit-image's sample photos."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    paths = []
    for i in range(count):
        photo = photos[i % len(photos)]
        top, left = (i * 7) % (photo.shape[0] - side), (i * 13) % (photo.shape[1] - side)
        path = folder / f"img{i:04d}.jpg"
        Image.fromarray(photo[top:top + side, left:left + side]).save(path, quality=90)
        paths.append(path)
    return paths


class CountingModel:
    """The real tiny CLIP, counting how many images go through its image encoder."""

    def __init__(self, model, on_batch=None) -> None:
        self._model = model
        self.images_encoded = 0
        self.on_batch = on_batch

    def encode_images(self, pixels):
        self.images_encoded += len(pixels)
        if self.on_batch is not None:
            self.on_batch(self.images_encoded)
        return self._model.encode_images(pixels)

    def __getattr__(self, name):
        return getattr(self._model, name)


@pytest.fixture
def images(tmp_path) -> list[Path]:
    return make_images(tmp_path / "photos", 12)


def test_add_then_search_by_text_and_by_image(tmp_path, images, tiny_clip):
    index = ImageIndex(tmp_path / "db", tiny_clip)
    report = index.add([images[0].parent])
    assert len(report.added) == 12 and report.embedded == 12 and not report.failed
    assert len(index) == 12
    hits = index.search(image=images[3], k=5)
    # Stored as float16 (issue 18): an image against its own stored vector scores 1 to about 1e-4.
    assert hits[0].path == str(images[3]) and hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].sha256 and hits[0].size == images[3].stat().st_size and hits[0].width == 48
    by_text = index.search(text="a photo of a cat", k=20)
    assert len(by_text) == 12  # k larger than the collection: all of it
    assert not index.search(text="a photo of a cat", k=20, min_score=1.01)
    cutoff = by_text[5].score
    assert all(h.score >= cutoff for h in index.search(text="a photo of a cat", k=20, min_score=cutoff))


def test_rerun_embeds_only_the_changed_file(tmp_path, images, tiny_clip):
    counting = CountingModel(tiny_clip)
    index = ImageIndex(tmp_path / "db", counting)
    index.add([images[0].parent])
    assert counting.images_encoded == 12

    counting.images_encoded = 0
    again = index.add([images[0].parent])
    assert counting.images_encoded == 0 and len(again.skipped) == 12

    make_images(tmp_path / "other", 20)[-1].replace(images[5])  # new bytes under the old name
    changed = index.add([images[0].parent])
    assert counting.images_encoded == 1
    assert changed.updated == [str(images[5])] and len(changed.skipped) == 11
    assert index.search(image=images[5], k=1)[0].path == str(images[5])

    images[6].touch()  # new mtime, same bytes: hashed, not embedded
    counting.images_encoded = 0
    touched = index.add([images[0].parent])
    assert counting.images_encoded == 0 and str(images[6]) in touched.skipped


def test_deleted_files_leave_the_index(tmp_path, images, tiny_clip):
    index = ImageIndex(tmp_path / "db", tiny_clip)
    index.add([images[0].parent])
    images[2].unlink()
    report = index.add([images[0].parent])
    assert report.removed == [str(images[2])]
    assert len(index) == 11
    assert str(images[2]) not in {h.path for h in index.search(text="cat", k=50)}
    assert len(index._synced_store(durable=False)) == 11  # its vector is gone too, not just the row

    assert index.remove([images[3]]) == [str(images[3])]
    assert len(index) == 10 and images[3].exists()


def test_identical_files_share_one_vector(tmp_path, images, tiny_clip):
    copy = images[0].parent / "copy.jpg"
    copy.write_bytes(images[1].read_bytes())
    counting = CountingModel(tiny_clip)
    index = ImageIndex(tmp_path / "db", counting)
    report = index.add([images[0].parent])
    assert len(report.added) == 13 and counting.images_encoded == 12
    hits = index.search(image=images[1], k=3)
    assert {hits[0].path, *hits[0].duplicates} == {str(images[1]), str(copy)}
    assert len({h.path for h in hits}) == 3  # the copy does not crowd out another image

    images[1].unlink()  # the vector stays while one file still uses it
    index.add([images[0].parent])
    assert index.search(image=copy, k=1)[0].path == str(copy)


def test_bad_files_are_reported_and_the_run_completes(tmp_path, images, tiny_clip):
    folder = images[0].parent
    (folder / "notes.jpg").write_text("not a picture")
    (folder / "cut.jpg").write_bytes(images[0].read_bytes()[:300])
    doomed = images[-1]

    def vanish_midway(done: int) -> None:
        doomed.unlink(missing_ok=True)  # after the first batch; the reader has not reached it yet

    index = ImageIndex(tmp_path / "db", CountingModel(tiny_clip, on_batch=vanish_midway), batch_size=1)
    report = index.add([folder])
    reasons = dict(report.failed)
    assert "not an image" in reasons[str(folder / "notes.jpg")]
    assert "truncated" in reasons[str(folder / "cut.jpg")]
    assert "vanished" in reasons[str(doomed)]
    assert len(index) == 11 and str(doomed) not in index.paths()


def test_a_different_model_is_refused(tmp_path, images, tiny_clip):
    from zeroshot.models.clip import load_clip
    from zeroshot.testing import save_random_clip

    index = ImageIndex(tmp_path / "db", tiny_clip)
    index.add(images[:3])
    index.close()
    retrained = load_clip(save_random_clip(tmp_path / "other-clip", "tiny", seed=1), device="cpu")
    with pytest.raises(UserError, match="cannot be mixed"):
        ImageIndex(tmp_path / "db", retrained)
    wider = SimpleNamespace(name="wide", fingerprint="0123", embedding_dim=32)
    with pytest.raises(UserError, match="32-d"):
        ImageIndex(tmp_path / "db", wider)
    reopened = ImageIndex(tmp_path / "db")  # no model given: the recorded one is loaded when needed
    assert len(reopened) == 3 and reopened.search(text="a dog", k=1)


@pytest.mark.parametrize("damage", ["garbage", "header-kept"])
def test_a_corrupt_database_is_refused_untouched(tmp_path, images, tiny_clip, damage):
    db = tmp_path / "db"
    ImageIndex(db, tiny_clip).add(images[:4])
    catalog = db / "catalog.sqlite"
    if damage == "garbage":
        catalog.write_bytes(np.random.default_rng(0).bytes(50_000))
    else:  # a valid first page, garbage after it: only reading the damaged pages shows it
        sqlite3.connect(catalog).execute("PRAGMA wal_checkpoint(TRUNCATE)").connection.close()
        good = catalog.read_bytes()
        catalog.write_bytes(good[:4096] + np.random.default_rng(1).bytes(len(good) - 4096))
    before = catalog.read_bytes()
    with pytest.raises(UserError, match="nothing was changed"):
        index = ImageIndex(db, tiny_clip)
        index.add(images)
        index.search(text="a cat")
    assert catalog.read_bytes() == before


def test_db_paths_that_are_not_indexes(tmp_path, images, tiny_clip):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        ImageIndex(tmp_path / "file", tiny_clip)
    with pytest.raises(UserError, match="other files"):
        ImageIndex(images[0].parent, tiny_clip)  # someone's photo folder is not an index
    with pytest.raises(UserError, match="no image index"):
        ImageIndex(tmp_path / "missing", create=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    sqlite3.connect(foreign / "catalog.sqlite").execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(UserError, match="not a zeroshot image index"):
        ImageIndex(foreign, tiny_clip)
    index = ImageIndex(tmp_path / "db", tiny_clip)
    with pytest.raises(UserError, match="exactly one"):
        index.search()
    with pytest.raises(UserError, match="no such file"):
        index.add([tmp_path / "nothing-here"])
    assert index.search(text="a cat") == []  # an empty index answers, empty


def test_ctrl_c_keeps_finished_batches_and_a_consistent_store(tmp_path, images, tiny_clip):
    def interrupt(done: int) -> None:
        if done > 4:
            raise KeyboardInterrupt

    index = ImageIndex(tmp_path / "db", CountingModel(tiny_clip, on_batch=interrupt), batch_size=2)
    with pytest.raises(KeyboardInterrupt):
        index.add([images[0].parent])
    assert len(index) == 4  # two batches of two committed, the third interrupted
    store = index._synced_store(durable=False)
    assert store.synced_version() == index.catalog.version and len(store) == 4
    index.close()
    resumed = ImageIndex(tmp_path / "db", tiny_clip)
    report = resumed.add([images[0].parent])
    assert report.embedded == 8 and len(report.skipped) == 4 and len(resumed) == 12
