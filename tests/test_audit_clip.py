"""The CLIP audits (`zeroshot audit typographic`, `denigration`): their mechanics, on the tiny random CLIP.

A random-weight CLIP says nothing about CLIP's biases; these tests prove that the text really lands on
the images, that every prediction is recorded, that the reports render and that bad input is refused.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from zeroshot.audit import denigration, typographic
from zeroshot.audit.typographic import TextDoesNotFit, TextStyle, render_text
from zeroshot.cli import main
from zeroshot.vision.classify import ZeroShotImageClassifier

LABELS = ["cat", "rocket", "coffee", "astronaut"]


def _photo(seed: int, size=(160, 120)) -> Image.Image:
    """A smooth random colour field (text on it changes pixels wherever it is drawn)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(30, 225, size=(6, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BILINEAR)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for i in range(4):
        path = folder / f"photo{i}.png"
        _photo(i, (240, 180) if i % 2 else (180, 225)).save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("position", typographic.POSITIONS)
@pytest.mark.parametrize("colour, opacity", [("white", 1.0), ("black", 0.6), ("red", 1.0)])
def test_text_changes_pixels_inside_its_box_only(position, colour, opacity):
    image = _photo(7, (200, 140))
    style = TextStyle(0.2, position, colour, opacity)
    attacked, (left, top, right, bottom) = render_text(image, "rocket", style)
    before, after = np.asarray(image, dtype=int), np.asarray(attacked, dtype=int)
    changed = np.abs(after - before).sum(axis=2) > 0
    inside = np.zeros_like(changed)
    inside[top:bottom, left:right] = True
    assert attacked.size == image.size and attacked.mode == "RGB"
    assert not changed[~inside].any()  # nothing outside the box
    assert changed[inside].mean() > 0.1  # and the text is really there
    # Inside the part a centre crop keeps (the middle 140x140 square of a 200x140 image).
    assert 30 <= left and right <= 170 and 0 <= top and bottom <= 140
    if position == "top":
        assert top < 140 // 3
    if position == "bottom":
        assert bottom > 2 * 140 // 3


def test_larger_size_draws_larger_text_and_too_long_text_is_refused():
    image = _photo(1, (160, 120))
    boxes = [render_text(image, "cat", TextStyle(size))[1] for size in (0.1, 0.2, 0.3)]
    heights = [b[3] - b[1] for b in boxes]
    assert heights[0] < heights[1] < heights[2]
    with pytest.raises(TextDoesNotFit, match="more than the"):
        render_text(image, "a very long class name indeed", TextStyle(0.3))


def test_typographic_audit_records_every_prediction_and_renders(tiny_clip, photos, tmp_path):
    classifier = ZeroShotImageClassifier(tiny_clip, LABELS, "photo", cache_dir=False)
    sizes = [0.06, 0.1]
    config = typographic.TypographicConfig(LABELS, [*photos, tmp_path / "missing.png"], sizes, variants=2,
                                           seed=3, templates="photo")
    result = typographic.run_typographic_audit(tiny_clip, config, cache_dir=False)
    assert len(result.images) == len(photos) and len(result.skipped) == 1
    assert len(result.attacks) == len(photos) * len(sizes) * 2
    clean = classifier.predict_proba(photos)
    for info, row in zip(result.images, clean, strict=True):
        assert info["before"][0][0] == LABELS[int(np.argmax(row))]  # before: the clean top-1
        assert info["written"] != info["before"][0][0] and info["written"] in LABELS
        attacks = [a for a in result.attacks if a["image"] == info["index"]]
        assert sorted({a["size"] for a in attacks}) == sizes
        for attack in attacks:
            assert attack["after"] in LABELS and attack["after_top"][0][0] == attack["after"]
            assert attack["flipped"] == (attack["after"] == attack["written"])
    # The attacked copies are really what the model saw: re-render one and score it.
    attack, info = result.attacks[-1], result.images[-1]
    again = render_text(Image.open(info["path"]).convert("RGB"), attack["written"],
                        TextStyle(attack["size"], attack["position"], attack["colour"], attack["opacity"]))[0]
    assert classifier.predict([again]) == [attack["after"]]
    summary = result.summary()
    assert summary["by_size"]["0.06"]["flipped"]["n"] == len(photos) * 2
    report = typographic.typographic_report(result, grid_images=2)
    page = report.render()
    assert page.count("data:image/png;base64,") == 2 and "random-weight" in page
    assert {name for name, _ in report.charts} == {"typographic-flip-rate.png", "typographic-grid.png"}
    again = typographic.TypographicConfig(LABELS, photos, sizes, variants=2, seed=3, templates="photo")
    again_result = typographic.run_typographic_audit(tiny_clip, again, cache_dir=False)
    assert again_result.attacks == result.attacks  # seeded


def _groups(root, layout):
    for group, count in layout.items():
        (root / group).mkdir(parents=True)
        for i in range(count):
            _photo(hash((group, i)) % 1000).save(root / group / f"{i}.png")
    return root


def test_denigration_from_folder_and_csv_with_and_without_child(tiny_clip, tmp_path):
    root = _groups(tmp_path / "people", {"group a": 3, "group b": 2})
    items = denigration.load_group_images(root)
    assert [g for _, g in items] == ["group a"] * 3 + ["group b"] * 2
    assert denigration.load_group_images(root, limit=1) == [items[0], items[3]]
    table = tmp_path / "people.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "who"])
        for path, group in items:
            writer.writerow([str(path).replace(str(tmp_path) + "/", ""), group])
    assert denigration.load_group_images(table, group_column="who", path_column="file") == items
    config = denigration.DenigrationConfig(["man", "woman"], root, templates="photo")
    assert config.items == tuple(items)
    result = denigration.run_denigration_audit(tiny_clip, config, cache_dir=False)
    assert len(result.rows) == 5
    labels_a = ["man", "woman", *denigration.DEFAULT_ADDED]
    for row in result.rows:
        assert row["top1"] in labels_a and row["top1_with_child"] in [*labels_a, "child"]
    summary = result.summary()
    counted = sum(s["count"] for c, s in summary["all"]["without_child"].items()
                  if c in denigration.DEFAULT_ADDED)
    assert counted == summary["all"]["without_child"]["any added class"]["count"]
    assert summary["group a"]["n"] == 3 and summary["group b"]["n"] == 2
    assert summary["all"]["change_any_added"] == pytest.approx(
        summary["all"]["with_child"]["any added class"]["share"]
        - summary["all"]["without_child"]["any added class"]["share"])
    page = denigration.denigration_report(result).render()
    assert "data:image/png;base64," in page and "with a “child” class added" in page.lower()


def test_denigration_cli_writes_report_and_json(tiny_clip_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ZEROSHOT_CACHE", str(tmp_path / "cache"))
    root = _groups(tmp_path / "people", {"a": 2, "b": 2})
    code = main(["audit", "denigration", str(root), "--labels", "man,woman", "--templates", "photo",
                 "--clip-model", str(tiny_clip_dir), "--output-dir", str(tmp_path / "out")])
    assert code == 0
    data = json.loads((tmp_path / "out" / "denigration.json").read_text())
    assert data["groups"] == ["a", "b"] and len(data["images"]) == 4 and data["child_class"] == "child"
    assert (tmp_path / "out" / "denigration-groups.png").exists()
    assert "into an added class" in capsys.readouterr().out


def _bad(args, capsys):
    code = main(args)
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("error: ") and "Traceback" not in err
    return last


def test_bad_inputs_exit_2_with_one_line(tiny_clip_dir, photos, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ZEROSHOT_CACHE", str(tmp_path / "cache"))
    no_group = tmp_path / "no-group.csv"
    no_group.write_text("path,label\nphoto0.png,cat\n")
    assert "no 'group' column" in _bad(["audit", "denigration", str(no_group), "--labels", "man,woman",
                                        "--output-dir", str(tmp_path / "o")], capsys)
    loose = tmp_path / "loose"
    loose.mkdir()
    _photo(0).save(loose / "x.png")
    assert "have no group" in _bad(["audit", "denigration", str(loose), "--labels", "man,woman"], capsys)
    assert "already holds 'Gorilla'" in _bad(["audit", "denigration", str(loose), "--labels", "man,Gorilla"],
                                              capsys)
    assert "already holds 'child'" in _bad(["audit", "denigration", str(loose), "--labels", "man,child"],
                                           capsys)
    # A 180-pixel-wide image cannot hold a long class name at 30 % of its side.
    assert "the image can hold" in _bad(
        ["audit", "typographic", str(photos[0]), "--labels", "cat,a very long class name", "--text",
         "a very long class name", "--sizes", "0.3", "--templates", "photo", "--clip-model",
         str(tiny_clip_dir), "--output-dir", str(tmp_path / "o")], capsys)
    assert "not one of the labels" in _bad(["audit", "typographic", str(photos[0]), "--labels", "cat,dog",
                                            "--text", "iPod"], capsys)
    assert "between 0 and 1" in _bad(["audit", "typographic", str(photos[0]), "--labels", "cat,dog",
                                      "--sizes", "2"], capsys)
