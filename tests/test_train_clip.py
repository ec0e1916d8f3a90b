"""`zeroshot train-clip`: a few steps on a handful of real Fashion-MNIST images (Debian's
`dataset-fashion-mnist`; tiny generated shapes when it is absent) with the real all-MiniLM-L6-v2 text tower.
The loss falls, frozen weights stay bit-identical, the result loads, a killed run resumes exactly, and
bad input gets one line and exit code 2."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zeroshot.cli import main
from zeroshot.errors import UserError
from zeroshot.train import clip as train_module
from zeroshot.train.clip import TrainConfig, train_clip
from zeroshot.train.losses import contrastive_loss
from zeroshot.train.pairs import read_pairs

FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
CLASSES = {0: "t-shirt", 1: "trouser", 8: "bag"}  # three Fashion-MNIST classes that look unalike
PER_CLASS = 8
# A tiny image tower: the test is about the training machinery, not accuracy.
TINY = dict(image_width=32, image_layers=1, image_heads=2, batch_size=12, lr=3e-3, warmup_steps=1,
            dev_fraction=0.15, eval_every=4, checkpoint_every=4, patience=50, epochs=100)


def _items() -> dict[str, list[np.ndarray]]:
    if FASHION.is_file():
        with gzip.open(FASHION) as handle:
            images = np.frombuffer(handle.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:400]
        with gzip.open(str(FASHION).replace("images-idx3", "labels-idx1")) as handle:
            labels = np.frombuffer(handle.read(), np.uint8, offset=8)[:400]
        return {name: list(images[labels == label][:PER_CLASS]) for label, name in CLASSES.items()}
    # No Debian package: three kinds of generated 28x28 shapes, still three classes to tell apart.
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:28, :28]
    items: dict[str, list[np.ndarray]] = {"t-shirt": [], "trouser": [], "bag": []}
    for k in range(PER_CLASS):
        r = 6 + k % 5
        items["t-shirt"].append(((yy - 14) ** 2 + (xx - 14) ** 2 < r * r).astype(np.uint8) * 255)
        items["trouser"].append(((abs(xx - 14) < 2 + k % 3) * 255).astype(np.uint8))
        items["bag"].append((((yy // (3 + k % 3)) % 2) * rng.integers(120, 255)).astype(np.uint8))
    return items


@pytest.fixture(scope="module")
def class_folders(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fashion")
    for name, images in _items().items():
        (root / name).mkdir()
        for k, image in enumerate(images):
            Image.fromarray(image).save(root / name / f"{k}.png")
    return root


@pytest.fixture(scope="module")
def small_text_tower(tmp_path_factory) -> Path:
    """A 1-layer random BERT with all-MiniLM-L6-v2's tokenizer: the full-mode and resume tests are about
    the training machinery, and MiniLM's 22M weights (written three times per checkpoint) would cost
    seconds each; the LiT tests use the real MiniLM."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from zeroshot.models.sentence import bundled_minilm_dir

    folder = tmp_path_factory.mktemp("small-bert")
    tokenizer = AutoTokenizer.from_pretrained(str(bundled_minilm_dir()))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def lit_run(class_folders, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "lit"
    torch.manual_seed(0)
    result = train_clip(class_folders, out, TrainConfig(mode="lit", max_steps=8, **TINY), progress=False)
    return out, result


def test_lit_loss_falls_and_the_result_loads(lit_run):
    from zeroshot.models.clip import load_clip

    out, result = lit_run
    history = result.record["history"]
    assert [h["step"] for h in history] == [4, 8]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json",
                 "training.json", "loss_curve.png"):
        assert (out / name).is_file(), name
    assert not (out / "checkpoint").exists()  # a finished run leaves the model, not its checkpoint
    model = load_clip(out, device="cpu")
    assert model.embedding_dim == 384 and model.image_spec.output_size == (28, 28)
    images = model.encode_images(torch.zeros(2, 3, 28, 28))
    texts = model.encode_texts(["a photo of a bag.", "a photo of a trouser."])
    assert images.shape == (2, 384) and texts.shape == (2, 384)
    assert result.record["parameters"]["trained"] < result.record["parameters"]["frozen"]


def test_lit_text_tower_is_bit_identical_to_minilm(lit_run):
    from safetensors.torch import load_file

    from zeroshot.models.sentence import bundled_minilm_dir, load_sentence_encoder

    out, _ = lit_run
    saved = load_file(str(out / "model.safetensors"))
    original = load_file(str(bundled_minilm_dir() / "model.safetensors"))
    compared = 0
    for name, tensor in original.items():
        key = "text_model." + name.removeprefix("bert.")
        if key in saved:
            assert torch.equal(saved[key], tensor), key
            compared += 1
    assert compared >= 100  # every encoder layer, not a lucky few
    assert torch.equal(saved["text_projection.weight"], torch.eye(384))
    # so the loaded model's text embeddings are the sentence encoder's own
    from zeroshot.models.clip import load_clip

    texts = ["a photo of a bag.", "a pair of trousers"]
    ours = load_clip(out, device="cpu").encode_texts(texts)
    theirs = load_sentence_encoder().encode(texts)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_full_mode_trains_the_text_tower(class_folders, small_text_tower, tmp_path):
    from safetensors.torch import load_file

    from zeroshot.models.clip import load_clip

    config = TrainConfig(mode="full", max_steps=2, text_model=str(small_text_tower), **TINY)
    result = train_clip(class_folders, tmp_path / "full", config, progress=False)
    saved = load_file(str(tmp_path / "full" / "model.safetensors"))
    original = load_file(str(small_text_tower / "model.safetensors"))
    key = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(saved["text_model." + key], original[key])
    assert not torch.equal(saved["text_projection.weight"], torch.eye(32))
    assert result.record["frozen"] == "nothing"
    assert result.record["parameters"]["frozen"] == 0
    assert load_clip(tmp_path / "full", device="cpu").encode_texts(["a bag"]).shape == (1, 32)


@pytest.mark.parametrize("mode", ["lit", "full"])
def test_a_killed_run_resumes_to_the_same_weights(mode, class_folders, small_text_tower, tmp_path,
                                                  monkeypatch):
    from safetensors.torch import load_file

    config = dict(TINY, max_steps=6, eval_every=3, checkpoint_every=3, mode=mode,
                  text_model=str(small_text_tower))
    train_clip(class_folders, tmp_path / "whole", TrainConfig(**config), progress=False)
    calls = {"n": 0}
    real_loss = train_module._Trainer.batch_loss

    def dies_at_step_five(self, indices, draws, grad):
        if grad:
            calls["n"] += 1
            if calls["n"] == 5:
                raise RuntimeError("killed")  # not KeyboardInterrupt: no checkpoint on the way out
        return real_loss(self, indices, draws, grad)

    monkeypatch.setattr(train_module._Trainer, "batch_loss", dies_at_step_five)
    with pytest.raises(RuntimeError):
        train_clip(class_folders, tmp_path / "killed", TrainConfig(**config), progress=False)
    state = json.loads((tmp_path / "killed" / "checkpoint" / "state.json").read_text())
    assert state["state"]["step"] == 3
    monkeypatch.setattr(train_module._Trainer, "batch_loss", real_loss)
    with pytest.raises(UserError, match="unfinished run"):
        train_clip(class_folders, tmp_path / "killed", TrainConfig(**config), progress=False)
    resumed = train_clip(class_folders, tmp_path / "killed", TrainConfig(**config), resume=True,
                         progress=False)
    assert resumed.steps == 6
    whole_record = json.loads((tmp_path / "whole" / "training.json").read_text())
    assert resumed.record["history"] == whole_record["history"]
    whole = load_file(str(tmp_path / "whole" / "model.safetensors"))
    again = load_file(str(tmp_path / "killed" / "model.safetensors"))
    for name, tensor in whole.items():
        torch.testing.assert_close(again[name], tensor, rtol=0, atol=1e-6, msg=name)


def test_ctrl_c_in_the_middle_of_a_full_mode_step_resumes_bit_for_bit(class_folders, small_text_tower,
                                                                      tmp_path, monkeypatch):
    """Ctrl-C after a step's forward pass has drawn its dropout masks: the checkpoint records the random
    state the step began with, so the redone step draws the same masks (it used to record the later one)."""
    from safetensors.torch import load_file

    config = dict(TINY, max_steps=6, eval_every=3, checkpoint_every=3, mode="full",
                  text_model=str(small_text_tower))
    train_clip(class_folders, tmp_path / "whole", TrainConfig(**config), progress=False)
    calls = {"n": 0}
    real_loss = train_module._Trainer.batch_loss

    def ctrl_c_after_the_forward_of_step_five(self, indices, draws, grad):
        loss = real_loss(self, indices, draws, grad)
        if grad:
            calls["n"] += 1
            if calls["n"] == 5:
                raise KeyboardInterrupt
        return loss

    monkeypatch.setattr(train_module._Trainer, "batch_loss", ctrl_c_after_the_forward_of_step_five)
    with pytest.raises(KeyboardInterrupt):
        train_clip(class_folders, tmp_path / "stopped", TrainConfig(**config), progress=False)
    monkeypatch.setattr(train_module._Trainer, "batch_loss", real_loss)
    resumed = train_clip(class_folders, tmp_path / "stopped", TrainConfig(**config), resume=True,
                         progress=False)
    assert resumed.steps == 6
    whole = load_file(str(tmp_path / "whole" / "model.safetensors"))
    again = load_file(str(tmp_path / "stopped" / "model.safetensors"))
    for name, tensor in whole.items():
        assert torch.equal(again[name], tensor), name


def test_contrastive_loss_is_clips_with_distinct_captions_and_ignores_duplicates():
    torch.manual_seed(0)
    images, texts = torch.randn(5, 8), torch.randn(5, 8)
    scale = torch.tensor(2.0)
    n_images = torch.nn.functional.normalize(images, dim=-1)
    n_texts = torch.nn.functional.normalize(texts, dim=-1)
    logits = scale.exp() * n_images @ n_texts.t()
    target = torch.arange(5)
    clip = (torch.nn.functional.cross_entropy(logits, target)
            + torch.nn.functional.cross_entropy(logits.t(), target)) / 2
    torch.testing.assert_close(contrastive_loss(images, texts, target, scale), clip)
    # Two images sharing one caption: that caption is encoded once and neither image is its negative.
    shared = contrastive_loss(images[:3], texts[:2], torch.tensor([0, 1, 1]), scale)
    assert torch.isfinite(shared) and shared > 0


def _cli(args, capsys):
    code = main(args)
    return code, capsys.readouterr().err


def _assert_one_line_error(code, err, *words):
    """Exit code 2 and one `error:` line (a transient progress bar may come before it, ended by \\r)."""
    assert code == 2 and "Traceback" not in err
    lines = err.replace("\r", "\n").strip().splitlines()
    message = lines[-1]
    assert message.startswith("error: ") and sum(line.startswith("error") for line in lines) == 1
    for word in words:
        assert word in message


def test_captions_naming_missing_images(class_folders, tmp_path, capsys):
    captions = tmp_path / "pairs.jsonl"
    first = next((class_folders / "bag").iterdir())
    captions.write_text(json.dumps({"image": str(first), "caption": "a bag"}) + "\n"
                        + json.dumps({"image": "nowhere/shoe.png", "caption": "a shoe"}) + "\n")
    code, err = _cli(["train-clip", str(captions), "--output-dir", str(tmp_path / "m")], capsys)
    _assert_one_line_error(code, err, "do not exist", "nowhere/shoe.png", "line 2")


def test_captions_file_that_is_not_utf8(tmp_path, capsys):
    for name in ("pairs.jsonl", "pairs.csv"):
        captions = tmp_path / name
        captions.write_bytes(b"\xff\xfe image,caption\n")
        code, err = _cli(["train-clip", str(captions), "--output-dir", str(tmp_path / "m")], capsys)
        _assert_one_line_error(code, err, "not UTF-8")


def test_csv_captions_are_read(class_folders, tmp_path):
    captions = tmp_path / "pairs.csv"
    rows = ["image,caption"] + [f"{path},a picture of {path.parent.name}"
                                for path in sorted(class_folders.glob("*/*.png"))]
    captions.write_text("\n".join(rows) + "\n")
    pairs = read_pairs(captions)
    assert len(pairs) == 3 * PER_CLASS and pairs.captions[0].startswith("a picture of ")


def test_class_folders_with_one_class(class_folders, tmp_path, capsys):
    root = tmp_path / "one"
    (root / "bag").mkdir(parents=True)
    for path in (class_folders / "bag").iterdir():
        (root / "bag" / path.name).write_bytes(path.read_bytes())
    code, err = _cli(["train-clip", str(root), "--output-dir", str(tmp_path / "m")], capsys)
    _assert_one_line_error(code, err, "one class folder", "at least two")


def test_widths_that_do_not_fit_without_a_projection(class_folders, tmp_path, capsys):
    code, err = _cli(["train-clip", str(class_folders),
            "--output-dir", str(tmp_path / "m"), "--projection", "none",
                      "--image-width", "128"], capsys)
    _assert_one_line_error(code, err, "(128)", "(384)", "--projection none")


def test_resume_from_another_run(class_folders, tmp_path, capsys):
    out = tmp_path / "m"
    (out / "checkpoint").mkdir(parents=True)
    (out / "checkpoint" / "state.json").write_text(json.dumps({"format": "zeroshot-checkpoint/1",
                                                               "fingerprint": "0123456789abcdef",
                                                               "state": {"step": 2}}))
    code, err = _cli(["train-clip", str(class_folders), "--output-dir", str(out), "--resume"], capsys)
    _assert_one_line_error(code, err, "another run")
    assert (out / "checkpoint" / "state.json").is_file()  # the other run's checkpoint is left alone


def test_folder_with_no_readable_images(tmp_path, capsys):
    root = tmp_path / "broken"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        (root / name / "a.png").write_text("not an image")
    code, err = _cli(["train-clip", str(root), "--output-dir", str(tmp_path / "m")], capsys)
    _assert_one_line_error(code, err, "none of the 2 images")


def test_resume_without_a_checkpoint_and_an_existing_model(lit_run, class_folders, tmp_path, capsys):
    code, err = _cli(["train-clip", str(class_folders), "--output-dir", str(tmp_path / "m"), "--resume"],
                     capsys)
    _assert_one_line_error(code, err, "nothing to resume")
    out, _ = lit_run
    code, err = _cli(["train-clip", str(class_folders), "--output-dir", str(out)], capsys)
    _assert_one_line_error(code, err, "already holds a model")


def test_a_plain_hugging_face_dual_encoder_loads_with_its_own_pooling(small_text_tower, tmp_path):
    """Without `text_pooling` in its config, a VisionTextDualEncoder folder embeds as transformers does."""
    from transformers import (
        AutoModel,
        AutoTokenizer,
        CLIPVisionConfig,
        CLIPVisionModel,
        VisionTextDualEncoderModel,
    )

    from zeroshot.models.clip import load_clip
    from zeroshot.train.clip import make_image_processor

    torch.manual_seed(0)
    vision = CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                              num_attention_heads=2, image_size=28, patch_size=7))
    text = AutoModel.from_pretrained(small_text_tower)
    plain = VisionTextDualEncoderModel(vision_model=vision, text_model=text)
    plain.save_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(small_text_tower)
    tokenizer.save_pretrained(tmp_path)
    make_image_processor(TrainConfig()).save_pretrained(tmp_path)
    tokens = tokenizer(["a bag", "a coat"], padding=True, return_tensors="pt")
    with torch.no_grad():
        pooled = plain.eval().get_text_features(**tokens).pooler_output
    expected = torch.nn.functional.normalize(pooled, dim=-1)
    ours = load_clip(tmp_path, device="cpu").encode_texts(["a bag", "a coat"])
    np.testing.assert_allclose(ours, expected.numpy(), atol=1e-6)
