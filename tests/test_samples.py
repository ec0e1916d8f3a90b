"""`zeroshot samples DIR`: the files the README tour reads, real photos, the same bytes every run."""

from __future__ import annotations

import hashlib
import json

import pytest

from zeroshot.cli import main
from zeroshot.errors import UserError
from zeroshot.eval.samples import SAMPLE_NAMES, TASK_NAME, write_samples
from zeroshot.vision import samples as vision_samples


def _digest(folder) -> str:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.relative_to(folder).as_posix().encode() + p.read_bytes()
                                   for p in files)).hexdigest()


def test_samples_are_what_the_tour_reads_small_and_the_same_every_run(tmp_path):
    written = write_samples(tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(SAMPLE_NAMES)
    assert written.bytes < 2_000_000 and written.files > 100
    write_samples(tmp_path / "b")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert written.to_dict()["task"] == str(tmp_path / "a" / TASK_NAME)


def test_the_class_folders_are_what_train_clip_reads(tmp_path):
    from zeroshot.train.pairs import read_pairs

    write_samples(tmp_path)
    pairs = read_pairs(tmp_path / "photos-by-class")
    assert sorted(set(pairs.labels)) == sorted(name.replace("_", " ") for name in vision_samples.CLASSES)
    assert "coffee cup" in pairs.labels and len(pairs) == 24 * len(vision_samples.CLASSES)


def test_the_images_are_images_and_the_task_is_a_task(tmp_path):
    from zeroshot.eval.tasks import load_task
    from zeroshot.vision.images import expand_paths, load_image

    write_samples(tmp_path)
    photos = expand_paths([str(tmp_path / "photos")])
    assert len(photos) == len(vision_samples.CLASSES)
    scene = load_image(tmp_path / "shots" / "scene-1.jpg")
    assert scene.size == vision_samples.SCENE_SIZE
    assert load_image(tmp_path / "query.jpg").size[0] > 100 and load_image(tmp_path / "example.jpg")
    task = load_task(tmp_path / TASK_NAME)
    assert (task.kind, task.labels, len(task.pool), len(task.docs)) == (
        "classification", ["negative", "positive"], 8, 24)
    assert task.name == "my_task"


def test_samples_never_replace_files_unasked_and_leave_others_alone(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "mine.jpg").write_bytes(b"my own photo")
    with pytest.raises(UserError, match="already holds photos: pass --overwrite"):
        write_samples(tmp_path)
    assert not (tmp_path / TASK_NAME).exists()  # refused before anything was written
    write_samples(tmp_path, overwrite=True)
    assert (tmp_path / "photos" / "mine.jpg").read_bytes() == b"my own photo"
    assert (tmp_path / "photos" / "cat.jpg").is_file()


def test_a_missing_source_is_one_line_and_exit_2_before_any_write(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(vision_samples, "PHOTOS_DIR", tmp_path / "nowhere")
    assert main(["samples", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sample photo" in err[0] and "missing from this installation" in err[0]
    assert not any((tmp_path / "out").iterdir())


def test_the_command_prints_what_it_wrote(tmp_path, capsys):
    assert main(["samples", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "my_task.jsonl" in out and "photos-by-class/" in out and "MB" in out
    assert main(["samples", str(tmp_path)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["samples", str(tmp_path), "--overwrite", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["files"] > 100


def test_per_class_below_two_is_refused(tmp_path):
    with pytest.raises(UserError, match="per_class"):
        vision_samples.write_sample_images(tmp_path, per_class=1)
