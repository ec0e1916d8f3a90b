"""The neuron explorer (`zeroshot neurons`, `zeroshot.audit.neurons`), on the tiny random CLIP.

A random-weight CLIP has no concepts to find: these tests prove the mechanics. The top and bottom images
are the ones a direct computation ranks first and last; many units cost one pass; a visualisation is
seeded to the byte and raises its unit's activation; the Fourier parametrisation has the right shape
and range; the words, concept and multimodal rules do what the docs say; bad input is one line and
exit 2; the report files are written.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
import torch

from zeroshot.audit import neurons
from zeroshot.audit.featurevis import FourierImage, robustness, visualise_units
from zeroshot.audit.neuron_layers import Activations, Tower
from zeroshot.audit.neurons import NeuronsConfig, render_name, run_neurons, visualisation_png, word_directions
from zeroshot.cli import main
from zeroshot.errors import UserError
from zeroshot.testing import save_class_folders
from zeroshot.vision.images import load_image
from zeroshot.vision.transforms import preprocess

CLASSES = ("red", "green", "blue")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three class folders of five noisy colour images each, plus one file that is no image."""
    root = save_class_folders(tmp_path_factory.mktemp("neurons") / "data", CLASSES, per_class=5, size=24)
    (root / "red" / "broken.png").write_bytes(b"not a png")
    return root


def _direct_mlp_activations(model, paths) -> np.ndarray:
    """The last block's MLP units, mean over tokens, one image per forward call: the reference."""
    fc2 = model.model.vision_model.encoder.layers[-1].mlp.fc2
    rows = []
    handle = fc2.register_forward_pre_hook(lambda _m, args: rows.append(args[0].mean(dim=1)[0].clone()))
    try:
        for path in paths:
            model.encode_images(preprocess([load_image(path)], model.image_spec))
    finally:
        handle.remove()
    return torch.stack(rows).numpy()


def test_top_and_bottom_images_match_a_direct_computation(tiny_clip, folder):
    config = NeuronsConfig(str(folder), layers=("layer-1.mlp",), units=(0, 5, 17), k=4, visualize=False,
                           batch_size=4)
    result = run_neurons(tiny_clip, config)
    assert result.layers == ["layer1.mlp"] and result.images == 15
    assert [s["path"] for s in result.skipped] == [str(folder / "red" / "broken.png")]
    paths = [p for p in config.images if p.name != "broken.png"]
    direct = _direct_mlp_activations(tiny_clip, paths)
    for record in result.units["layer1.mlp"]:
        column = direct[:, record["unit"]]
        expected_top = [str(paths[i]) for i in np.argsort(-column, kind="stable")[:4]]
        expected_bottom = [str(paths[i]) for i in np.argsort(column, kind="stable")[:4]]
        assert [t["path"] for t in record["top"]] == expected_top
        assert [b["path"] for b in record["bottom"]] == expected_bottom
        tops = [t["activation"] for t in record["top"]]
        assert tops == sorted(tops, reverse=True)
        assert np.allclose(tops, np.sort(column)[::-1][:4], atol=1e-5)
        assert record["top"][0]["label"] in CLASSES and record["concept"]["of"] == 4


def test_many_units_and_layers_cost_one_pass(tiny_clip, folder):
    calls = []
    handle = tiny_clip.model.vision_model.register_forward_hook(lambda *_: calls.append(1))
    try:
        few = run_neurons(tiny_clip, NeuronsConfig(str(folder), layers=("layer0",), units=(1,), k=2,
                                                   visualize=False, render_names=False, batch_size=8))
        few_calls = len(calls)
        calls.clear()
        many = run_neurons(tiny_clip, NeuronsConfig(str(folder), layers=("layer0", "layer1.mlp", "pooled"),
                                                    top_units=20, k=2, visualize=False, render_names=False,
                                                    batch_size=8))
    finally:
        handle.remove()
    batches = math.ceil(16 / 8)  # 16 files (one unreadable) in batches of 8
    assert few_calls == len(calls) == batches == few.timing["forward_calls"] == many.timing["forward_calls"]
    assert sum(len(records) for records in many.units.values()) == 60
    # the top units by variance are sorted by variance
    variances = [r["variance"] for r in many.units["layer1.mlp"]]
    assert variances == sorted(variances, reverse=True)


def test_fourier_image_shape_range_and_spectrum_scaling():
    generator = torch.Generator().manual_seed(0)
    image = FourierImage(2, 28, 31, generator)
    pixels = image()
    assert pixels.shape == (2, 3, 28, 31) and torch.isfinite(pixels).all()
    assert 0 < pixels.min() and pixels.max() < 1
    # 1/f scaling: the constant term is scaled most (by the longest side), the highest frequency least
    assert image.spectrum.shape == (2, 3, 28, 31 // 2 + 1, 2)
    assert image.scale[0, 0, 0, 0, 0] == pytest.approx(31.0)
    assert image.scale.max() == image.scale[0, 0, 0, 0, 0]
    # the output is differentiable in the spectrum, and the transforms keep the gradient
    moved = robustness(pixels, torch.Generator().manual_seed(1))
    moved.mean().backward()
    assert image.spectrum.grad is not None and image.spectrum.grad.abs().sum() > 0
    assert FourierImage(1, 8, 8, torch.Generator().manual_seed(0)).spectrum.equal(
        FourierImage(1, 8, 8, torch.Generator().manual_seed(0)).spectrum)


def test_visualisation_is_seeded_to_the_byte_and_raises_the_activation(tiny_clip):
    tower = Tower(tiny_clip)
    units = [3, 11]
    asked = [p.requires_grad for p in tiny_clip.model.parameters()]
    first = visualise_units(tiny_clip, tower, "layer1.mlp", units, steps=6, seed=7)
    again = visualise_units(tiny_clip, tower, "layer1.mlp", units, steps=6, seed=7)
    other = visualise_units(tiny_clip, tower, "layer1.mlp", units, steps=6, seed=8)
    png = visualisation_png(first)
    assert hashlib.sha256(png).hexdigest() == hashlib.sha256(visualisation_png(again)).hexdigest()
    assert png != visualisation_png(other)
    assert first.pixels.shape == (2, 224, 224, 3) and first.pixels.dtype == np.uint8
    longer = visualise_units(tiny_clip, tower, "layer1.mlp", units, steps=40, seed=7)
    assert longer.start == first.start  # the same starting images
    for before, after in zip(longer.start, longer.end, strict=True):
        assert after > before + 0.1, (before, after)
    # the model is left as it was: no parameter now asks for gradients it did not ask for before
    assert [p.requires_grad for p in tiny_clip.model.parameters()] == asked


def test_word_directions_pooled_is_the_projection_column_and_covariance_finds_a_planted_one(tiny_clip):
    tower = Tower(tiny_clip)
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(200, tiny_clip.embedding_dim)).astype(np.float32)
    planted = rng.normal(size=tiny_clip.embedding_dim)
    acts = Activations([f"#{i}" for i in range(200)], [None] * 200, embeddings,
                       {"layer0": np.stack([embeddings @ planted, -(embeddings @ planted)], axis=1)
                        .astype(np.float32), "pooled": np.zeros((200, tower.hidden), np.float32)})
    directions, method = word_directions(acts, "layer0", [0, 1], tower)
    cosine = directions[0] @ planted / np.linalg.norm(directions[0]) / np.linalg.norm(planted)
    assert cosine > 0.9 and method.startswith("covariance")
    assert np.allclose(directions[1], -directions[0], atol=1e-4)
    top, method = word_directions(acts, "layer0", [0], tower, "top", k=20)
    expected = embeddings[np.argsort(-(embeddings @ planted))[:20]].mean(0) - embeddings.mean(0)
    assert np.allclose(top[0], expected, atol=1e-5) and method.startswith("top")
    pooled, method = word_directions(acts, "pooled", [4], tower)
    assert np.allclose(pooled[0], tiny_clip.model.visual_projection.weight[:, 4].detach().numpy())
    assert "exact" in method
    with pytest.raises(UserError, match="'pooled' only"):
        word_directions(acts, "layer0", [0], tower, "projection")


def test_concept_and_multimodal_rules():
    labels = ["coat"] * 7 + ["bag"] * 2
    assert neurons.concept_of(labels, np.arange(9), 9)["one_concept"]
    assert not neurons.concept_of(["coat"] * 6 + ["bag"] * 3, np.arange(9), 9)["one_concept"]
    # a unit that fires on coats, and on the word "coat" (4 renderings per class), not on bags
    column = np.array([5.0] * 10 + [0.0] * 90)
    names = ["coat"] * 10 + ["bag"] * 90
    rendered = np.array([6.0] * 4 + [0.0] * 4)
    verdict = neurons._multimodal(column, names, ["coat", "bag"], rendered)
    assert verdict["concepts"] == ["coat"]
    assert neurons._multimodal(column, names, ["coat", "bag"], np.zeros(8))["concepts"] == []
    # renderings: ink on a plain square, in both polarities
    light = np.asarray(render_name("coat", 96, dark_on_light=True))
    assert light.shape == (96, 96, 3) and light.min() == 0 and light.max() == 255


def test_config_refuses_bad_input_before_the_model(folder, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (dict(folder=str(empty)), "no image files"),
        (dict(folder=str(tmp_path / "missing")), "no such folder"),
        (dict(folder=str(folder), k=0), "at least 1"),
        (dict(folder=str(folder), k=99), "more than the 16 images"),
        (dict(folder=str(folder), layers=("block3",)), "unknown layer 'block3'"),
        (dict(folder=str(folder), layers=("layerx.mlp",)), "whole number"),
        (dict(folder=str(folder), units=(-1,)), "start at 0"),
        (dict(folder=str(folder), top_units=0), "--top-units"),
        (dict(folder=str(folder), tokens="max"), "mean, cls"),
        (dict(folder=str(folder), steps=0), "--vis-steps"),
        (dict(folder=str(folder), direction="ridge"), "--direction must be one of"),
        (dict(folder=str(folder), direction="projection"), "'pooled' only"),
    ]
    for kwargs, message in cases:
        with pytest.raises(UserError, match=message):
            NeuronsConfig(**kwargs)


def test_layers_and_units_are_checked_against_the_model_before_any_image(tiny_clip, folder, monkeypatch):
    monkeypatch.setattr(neurons, "collect_activations", lambda *a, **k: pytest.fail("embedded images"))
    for kwargs, message in [(dict(layers=("layer2",)), r"layer 'layer2' does not exist.*layer0\.\.layer1"),
                            (dict(layers=("layer-3.mlp",)), "does not exist"),
                            (dict(units=(64,)), r"unit 64 does not exist in layer1\.mlp: its units are "
                                                r"0\.\.63"),
                            (dict(top_units=65), "more than the 64 units"),
                            (dict(layers=("layer1", "layer-1")), "same layer")]:
        with pytest.raises(UserError, match=message):
            run_neurons(tiny_clip, NeuronsConfig(str(folder), **kwargs))


def _bad(args, capsys) -> str:
    code = main(args)
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("error: ") and "Traceback" not in err
    return last


def test_cli_bad_input_is_one_line_and_exit_2(tiny_clip_dir, folder, tmp_path, capsys):
    base = ["neurons", str(folder), "--clip-model", str(tiny_clip_dir), "--output-dir", str(tmp_path / "o"),
            "-q"]
    assert "layer 'layer7' does not exist" in _bad([*base, "--layer", "layer7"], capsys)
    assert "unit 500 does not exist" in _bad([*base, "--units", "3,500"], capsys)
    assert "at least 1" in _bad([*base, "-k", "0"], capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no image files" in _bad(["neurons", str(empty), "--clip-model", str(tiny_clip_dir)], capsys)


def test_the_cli_checks_layers_and_units_before_the_model_loads(tiny_clip_dir, folder, tmp_path, capsys,
                                                                 monkeypatch):
    import zeroshot.models.clip

    monkeypatch.setattr(zeroshot.models.clip, "load_clip", lambda *a, **k: pytest.fail("loaded the model"))
    base = ["neurons", str(folder), "--clip-model", str(tiny_clip_dir), "--output-dir", str(tmp_path / "o")]
    assert "layer 'layer-3.mlp' does not exist" in _bad([*base, "--layer", "layer-3.mlp"], capsys)
    assert "unit 64 does not exist in layer1.mlp" in _bad([*base, "--layer", "layer1.mlp", "--units", "64"],
                                                          capsys)


def test_cli_writes_the_report_and_the_same_seed_gives_the_same_files(tiny_clip_dir, folder, tmp_path,
                                                                       capsys, monkeypatch):
    monkeypatch.setenv("ZEROSHOT_CACHE", str(tmp_path / "cache"))
    words = tmp_path / "words.txt"
    words.write_text("# colours and things\nsky\ngrass\n")
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        code = main(["neurons", str(folder), "--clip-model", str(tiny_clip_dir), "--layer", "layer-1.mlp",
                     "--top-units", "2", "-k", "3", "--vis-steps", "3", "--words-file", str(words),
                     "--labels", "cat", "--seed", "3", "--output-dir", str(out), "-q"])
        assert code == 0
    printed = capsys.readouterr().out
    assert "2 units" in printed and "multimodal" in printed
    data = json.loads((outs[0] / "neurons.json").read_text())
    assert data["summary"]["units"] == 2 and data["labels"] == list(sorted(CLASSES))
    assert data["vocabulary"] == ["blue", "green", "red", "cat", "sky", "grass"]
    unit = data["units"]["layer1.mlp"][0]
    assert len(unit["top"]) == len(unit["bottom"]) == 3 and len(unit["words"]) == 5
    assert set(unit["multimodal"]["text_means"]) == set(CLASSES)
    timing = json.loads((outs[0] / "neurons.timing.json").read_text())
    assert timing["forward_calls"] == 1 and timing["units"] == 2
    files = {"neurons.json", "neurons.html", "neurons-layer1-mlp-examples.png",
             "neurons-layer1-mlp-visualisations.png"}
    for out in outs:
        assert files <= {p.name for p in out.iterdir()}
    for name in files - {"neurons.html"}:
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    page = (outs[0] / "neurons.html").read_text()
    assert "data:image/png;base64," in page and "not what causes it" in page


def test_grey_visualisation_is_one_plane_in_three_channels(tiny_clip):
    grey = FourierImage(1, 16, 16, torch.Generator().manual_seed(0), grey=True)()
    assert grey.shape == (1, 3, 16, 16) and torch.equal(grey[:, 0], grey[:, 2])
    vis = visualise_units(tiny_clip, Tower(tiny_clip), "layer0", [2], steps=2, grey=True)
    assert vis.grey and (vis.pixels[..., 0] == vis.pixels[..., 1]).all()


def test_the_bench_runs_on_a_random_clip(tiny_clip_dir, tmp_path):
    """`python -m bench.neurons_report` on its smallest settings, written into a temporary folder."""
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    sys.path.insert(0, root)
    try:
        from bench.neurons_report import main as bench_main
    finally:
        sys.path.remove(root)
    data = save_class_folders(tmp_path / "data", CLASSES, per_class=3, size=16)
    out = bench_main(["--model", str(tiny_clip_dir), "--images", str(data), "--layers", "layer-1.mlp,pooled",
                      "--top-units", "2", "-k", "2", "--vis-steps", "2", "--output-dir", str(tmp_path / "r")])
    headline = json.loads((tmp_path / "r" / "neurons-headline.json").read_text())
    assert list(headline) == ["units", "share_one_concept", "multimodal_units", "seconds_per_unit"]
    assert headline["units"] == 4 == out["headline"]["units"]
    details = json.loads((tmp_path / "r" / "neurons-details.json").read_text())
    assert details["determinism"]["same_seed_identical"] and details["determinism"]["other_seed_differs"]
    assert (tmp_path / "r" / "neurons" / "neurons.html").is_file()


def test_an_int8_model_is_refused_for_visualisation_before_any_image(tiny_clip, folder, monkeypatch):
    monkeypatch.setattr(neurons, "collect_activations", lambda *a, **k: pytest.fail("embedded images"))
    int8 = tiny_clip.converted("int8")
    with pytest.raises(UserError, match="needs gradients"):
        run_neurons(int8, NeuronsConfig(str(folder)))
    monkeypatch.undo()
    # without visualisations an int8 model works: its quantised MLP is found and hooked like a Linear
    result = run_neurons(int8, NeuronsConfig(str(folder), units=(0,), k=2, visualize=False))
    assert len(result.units["layer1.mlp"][0]["top"]) == 2
