"""`zeroshot classify-images` end to end on real photos through the tiny random CLIP."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from zeroshot.cli import main

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "cat", "immunohistochemistry",
          "hubble_deep_field")


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """scikit-image's bundled sample photos as JPEG/PNG files, plus one file that is not an image."""
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    for i, name in enumerate(PHOTOS):
        Image.fromarray(getattr(data, name)()).save(folder / f"{name}.{'jpg' if i % 2 else 'png'}")
    (folder / "broken.jpg").write_text("this is not a photo")
    return folder


def _run(args, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ZEROSHOT_CACHE", str(tmp_path / "cache"))
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_folder_to_csv(photo_folder, tiny_clip_dir, tmp_path, capsys, monkeypatch):
    output = tmp_path / "out.csv"
    code, out, err = _run(["classify-images", str(photo_folder), "--labels", "cat,astronaut,rocket,coffee",
                           "--clip-model", str(tiny_clip_dir), "--top-k", "2", "-b", "3", "-o", str(output)],
                          capsys, tmp_path, monkeypatch)
    assert code == 0
    rows = list(csv.DictReader(output.open()))
    assert len(rows) == len(PHOTOS) + 1
    assert list(rows[0]) == ["path", "label", "probability", "label_2", "probability_2", "error"]
    good = [r for r in rows if not r["error"]]
    assert len(good) == len(PHOTOS)
    assert all(r["label"] in {"cat", "astronaut", "rocket", "coffee"} for r in good)
    assert all(float(r["probability"]) >= float(r["probability_2"]) for r in good)
    [broken] = [r for r in rows if r["error"]]
    assert broken["path"].endswith("broken.jpg") and "not an image" in broken["error"]
    assert "broken.jpg" in err and f"{len(PHOTOS)} classified, 1 skipped" in err
    assert "chelsea" in out  # the table
    assert not (tmp_path / "out.csv.partial").exists()


def test_glob_labels_file_templates_file_and_jsonl(photo_folder, tiny_clip_dir, tmp_path, capsys,
                                                   monkeypatch):
    labels = tmp_path / "labels.txt"
    labels.write_text("# classes\ncat\nspace rocket\n")
    templates = tmp_path / "templates.txt"
    templates.write_text("a photo of a {}.\na drawing of a {}.\n")
    output = tmp_path / "out.jsonl"
    code, _, _ = _run(["classify-images", str(photo_folder / "c*.*"), "--labels-file", str(labels),
                       "--templates", str(templates), "--clip-model", str(tiny_clip_dir), "-o", str(output),
                       "--quiet"], capsys, tmp_path, monkeypatch)
    assert code == 0
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(os.path.basename(r["path"]) for r in records) == ["camera.png", "cat.jpg", "chelsea.jpg",
                                                                    "coffee.png"]
    for record in records:
        assert record["error"] is None and record["label"] in {"cat", "space rocket"}
        assert len(record["top_k"]) == 2  # top-k 3 asked, only 2 labels
        assert abs(sum(item["probability"] for item in record["top_k"]) - 1) < 1e-5


def test_nothing_classifiable_exits_2(tiny_clip_dir, tmp_path, capsys, monkeypatch):
    (tmp_path / "a.jpg").write_text("no")
    code, _, err = _run(["classify-images", str(tmp_path / "a.jpg"), "--labels", "x,y", "--clip-model",
                         str(tiny_clip_dir), "-q"], capsys, tmp_path, monkeypatch)
    assert code == 2 and "no image could be classified" in err


@pytest.mark.parametrize("args, message", [
    (["--labels", "cat,cat"], "repeated: cat"),
    ([], "exactly one of --labels"),
    (["--labels", "a,b", "--templates", "no-such-set"], "unknown templates"),
    (["--labels", "a,b", "-o", "out.jpg"], "must end in .csv or .jsonl"),
    (["--labels", "a,b", "--clip-model", "/no/such/model"], "no such model folder"),
    (["--labels", "a,b", "--dtype", "fp8"], "unknown dtype"),
])
def test_user_mistakes_are_one_line_and_exit_2(args, message, photo_folder, tiny_clip_dir, tmp_path, capsys,
                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = [] if "--clip-model" in args else ["--clip-model", str(tiny_clip_dir)]
    code, _, err = _run(["classify-images", str(photo_folder / "cat.jpg"), *model, *args], capsys, tmp_path,
                        monkeypatch)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_missing_hub_weights_offline_is_one_clear_sentence(photo_folder, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), ZEROSHOT_CACHE=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "zeroshot.cli", "classify-images", str(photo_folder),
                             "--labels", "cat,dog"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "openai/clip-vit-base-patch32" in lines[0] and "--clip-model DIR" in lines[0]


def test_interrupted_run_keeps_its_rows_in_a_partial_file(photo_folder, tiny_clip_dir, tmp_path, capsys,
                                                          monkeypatch):
    from zeroshot.vision.classify import ZeroShotImageClassifier

    original = ZeroShotImageClassifier.iter_predictions

    def interrupted(self, images):
        stream = original(self, images)
        yield next(stream)
        yield next(stream)
        raise KeyboardInterrupt

    monkeypatch.setattr(ZeroShotImageClassifier, "iter_predictions", interrupted)
    output = tmp_path / "out.jsonl"
    output.write_text("an earlier run's results\n")
    code, _, err = _run(["classify-images", str(photo_folder), "--labels", "a,b", "--clip-model",
                         str(tiny_clip_dir), "-o", str(output), "-q"], capsys, tmp_path, monkeypatch)
    assert code == 130 and "out.jsonl.partial" in err
    assert len((tmp_path / "out.jsonl.partial").read_text().splitlines()) == 2
    assert output.read_text() == "an earlier run's results\n"  # not clobbered by a half run
