"""A model's fingerprint says what the model is, not where it was loaded from."""

from __future__ import annotations

import shutil

from PIL import Image

from zeroshot.cli import main
from zeroshot.models.clip import _fingerprint, load_clip


def test_the_same_weights_from_another_path_have_the_same_fingerprint(tiny_clip_dir, tmp_path):
    copy = shutil.copytree(tiny_clip_dir, tmp_path / "copy")
    original = load_clip(str(tiny_clip_dir), dtype="fp32")
    assert load_clip(str(copy), dtype="fp32").fingerprint == original.fingerprint


def test_an_index_built_with_a_relative_model_path_is_searched_without_naming_it(
        tiny_clip_dir, tmp_path, monkeypatch, capsys):
    shutil.copytree(tiny_clip_dir, tmp_path / "clip")
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (80 * i, 20, 200 - 60 * i)).save(tmp_path / "imgs" / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    assert main(["index", "imgs", "--db", "db", "--clip-model", "clip", "-q"]) == 0
    capsys.readouterr()
    # The index recorded the absolute path; the fingerprint used to hash the path as typed.
    assert main(["search", "a red square", "--db", "db", "-k", "1", "--format", "json"]) == 0
    assert "/imgs/" in capsys.readouterr().out


def test_an_index_recorded_under_the_earlier_rule_still_matches(tiny_clip_dir):
    model = load_clip(str(tiny_clip_dir), dtype="fp32")
    legacy = _fingerprint(model, legacy=True)
    assert legacy != model.fingerprint and model.matches(legacy) and model.matches(model.fingerprint)
    assert not model.matches("0" * 16)
