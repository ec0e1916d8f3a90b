"""`zeroshot detect`: exit codes and the files it writes (JSONL, annotated PNGs, COCO)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from zeroshot.cli import main
from zeroshot.detect.coco import read_coco


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("detect-cli")
    rng = np.random.default_rng(0)
    example = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    scene = Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8))
    scene.paste(example, (32, 32))
    example.save(folder / "example.png")
    scene.save(folder / "scene.png")
    (folder / "readme.txt").write_text("not an image")
    return folder


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_detect_writes_jsonl_png_and_coco(tiny_clip_dir, images, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ZEROSHOT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    code, stdout, stderr = run(capsys, "detect", str(images / "scene.png"), str(images / "readme.txt"),
                               "--example", str(images / "example.png"), "--example-threshold", "0.9999",
                               "--query", "a square", "--templates", "photo", "--threshold", "0",
                               "--method", "windows", "--clip-model", str(tiny_clip_dir),
                                       "--output-dir", str(out),
                               "--quiet")
    assert code == 0, stderr
    records = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    assert [r["image"].rsplit("/", 1)[-1] for r in records] == ["scene.png", "readme.txt"]
    assert "error" in records[1] and "readme.txt" in stderr
    scene = records[0]
    assert scene["width"] == 128 and scene["detections"]
    assert any(d["label"] == "example" and d["box"] == [32.0, 32.0, 96.0, 96.0] for d in scene["detections"])
    assert Image.open(out / "scene.detections.png").size == (128, 128)
    coco = read_coco(out / "annotations.coco.json")
    assert len(coco[str(images / "scene.png")]) == len(scene["detections"])
    assert stdout == ""  # --quiet


def test_detect_prints_json_lines(tiny_clip_dir, images, tmp_path, capsys):
    code, stdout, _ = run(capsys, "detect", str(images / "scene.png"),
                          "--example", str(images / "example.png"), "--method", "windows",
                          "--clip-model", str(tiny_clip_dir), "--output-dir", str(tmp_path))
    assert code == 0
    assert json.loads(stdout.strip().splitlines()[-1])["image"].endswith("scene.png")


@pytest.mark.parametrize("argv, message", [
    (["--clip-model", "CLIP"], "nothing to detect"),
    (["--example", "EXAMPLES/readme.txt", "--clip-model", "CLIP"], "readme.txt"),
    (["--example", "EXAMPLES/nope.jpg", "--clip-model", "CLIP"], "nope.jpg"),
    (["--query", "x", "--proposals", "0"], "at least 1"),
    (["--query", "x", "--method", "magic"], "proposal method"),
])
def test_detect_user_mistakes_exit_2(tiny_clip_dir, images, tmp_path, capsys, argv, message):
    argv = [a.replace("EXAMPLES", str(images)).replace("CLIP", str(tiny_clip_dir)) for a in argv]
    code, _, stderr = run(capsys, "detect", str(images / "scene.png"), *argv, "--output-dir", str(tmp_path))
    assert code == 2
    assert message in stderr and stderr.count("\n") == 1


def test_detect_exits_2_when_no_image_is_readable(tiny_clip_dir, images, tmp_path, capsys):
    code, _, stderr = run(capsys, "detect", str(images / "readme.txt"),
                          "--example", str(images / "example.png"),
                          "--clip-model", str(tiny_clip_dir), "--output-dir", str(tmp_path), "--quiet")
    assert code == 2
    assert "no image could be processed" in stderr
    assert json.loads((tmp_path / "detections.jsonl").read_text())["error"]
