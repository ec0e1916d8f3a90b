"""The prefix captioner (ClipCap) with tiny random models: frozen parts, learning, files, CLI, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zeroshot.caption.captioner import CaptionerConfig, PrefixCaptioner, load_caption_lm, load_captioner
from zeroshot.cli import main
from zeroshot.errors import UserError
from zeroshot.models.lm import GenerationConfig
from zeroshot.testing import save_random_clip, save_random_lm

SRC = str(Path(__file__).resolve().parents[1] / "src")
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "black": (5, 5, 5)}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("caption-models")
    lm = save_random_lm(root / "lm")
    clip = save_random_clip(root / "clip")
    # Same tokenizer, another width: an LM a saved captioner must refuse.
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig.from_pretrained(lm)
    config.hidden_size, config.intermediate_size = 32, 64
    narrow = root / "narrow-lm"
    LlamaForCausalLM(config).save_pretrained(narrow)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        if (lm / name).exists():
            shutil.copy(lm / name, narrow / name)
    return {"lm": lm, "clip": clip, "narrow": narrow}


@pytest.fixture(scope="module")
def image_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("caption-images")
    (root / "photos").mkdir()
    rows = []
    for name, rgb in COLOURS.items():
        for k in range(2):
            path = root / "photos" / f"{name}{k}.png"
            Image.new("RGB", (40 + 8 * k, 36), rgb).save(path)
            rows.append({"image": f"photos/{path.name}", "caption": f"a {name} square"})
    captions = root / "captions.jsonl"
    captions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root, captions


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_lm_stays_frozen_and_only_the_mapper_learns(models):
    lm = load_caption_lm(str(models["lm"]))
    captioner = PrefixCaptioner(CaptionerConfig(embedding_dim=8, prefix_length=3), lm)
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    captioner.fit(
        np.random.default_rng(0).normal(size=(6, 8)), ["one", "two", "three"] * 2, epochs=2, batch_size=3
    )
    assert all(not p.requires_grad and p.grad is None for p in lm.model.parameters())
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())
    assert all(p.requires_grad for p in captioner.mapper.parameters())
    counts = captioner.parameter_counts()
    assert counts["trained"] == sum(p.numel() for p in captioner.mapper.parameters())
    assert 0 < counts["trained_share"] < 1


@pytest.mark.parametrize("mapper", ["mlp", "transformer"])
def test_loss_falls_when_captions_follow_the_embedding(models, mapper):
    lm = load_caption_lm(str(models["lm"]))
    words = ["business", "sport", "politics", "tech"]  # one token each in the tiny LM's vocabulary
    embeddings = np.repeat(np.eye(4, 16, dtype=np.float32), 4, axis=0)  # caption = function of embedding
    captions = [words[i // 4] for i in range(16)]
    captioner = PrefixCaptioner(CaptionerConfig(embedding_dim=16, prefix_length=2, mapper=mapper), lm, seed=0)
    captioner.fit(embeddings, captions, epochs=30, batch_size=16, lr=1e-2, seed=0)
    losses = captioner.history.epoch_losses
    assert losses[-1] < 0.25 * losses[0], losses
    queries = np.eye(4, 16, dtype=np.float32)
    beams = captioner.generate(queries, GenerationConfig(max_new_tokens=4, num_beams=3))
    assert beams == words
    greedy = captioner.generate(queries, GenerationConfig(max_new_tokens=4))
    assert sum(g == w for g, w in zip(greedy, words, strict=True)) >= 3, greedy


def test_image_captioner_end_to_end_and_fresh_process_reload(models, image_data, tmp_path, capsys):
    _, captions = image_data
    out = tmp_path / "captioner"
    code, stdout, err = run_cli(
        [
            "train-captioner",
            captions,
            "--output-dir",
            out,
            "--clip-model",
            models["clip"],
            "--model",
            models["lm"],
            "--epochs",
            2,
            "--batch-size",
            4,
            "--prefix-length",
            2,
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["epochs"] == 2 and len(summary["epoch_losses"]) == 2
    assert {p.name for p in out.iterdir()} >= {"captioner.json", "mapper.safetensors", "loss.png"}
    assert not (out / "checkpoint").exists()
    record = json.loads((out / "captioner.json").read_text())
    assert record["encoder"]["kind"] == "clip-image" and record["lm"]["hidden_size"] == 64
    image = image_data[0] / "photos" / "red0.png"
    code, stdout, err = run_cli(
        ["caption", image, "--captioner", out, "--format", "json", "--max-tokens", 6], capsys
    )
    assert code == 0, err
    here = json.loads(stdout)
    assert here[0]["input"] == str(image) and isinstance(here[0]["caption"], str)
    fresh = subprocess.run(
        [
            sys.executable,
            "-m",
            "zeroshot.cli",
            "caption",
            str(image),
            "--captioner",
            str(out),
            "--format",
            "json",
            "--max-tokens",
            "6",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        timeout=120,
    )
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads(fresh.stdout) == here


def test_text_captioner_with_clip_text_tower_saves_and_loads(models, tmp_path):
    from zeroshot.caption.data import CaptionService, load_caption_encoder

    encoder = load_caption_encoder("clip-text", str(models["clip"]))
    lm = load_caption_lm(str(models["lm"]))
    texts = ["a photo of a cat", "a photo of a dog", "a red car", "a blue truck"]
    captioner = PrefixCaptioner(
        CaptionerConfig(encoder.embedding_dim, prefix_length=2, mapper="transformer"),
        lm,
        encoder=encoder.describe(),
    )
    captioner.fit(encoder.encode(texts), ["cat", "dog", "car", "truck"], epochs=3, batch_size=2)
    captioner.save(tmp_path / "c")
    again = load_captioner(tmp_path / "c")
    emb = encoder.encode(texts)
    assert again.generate(emb) == captioner.generate(emb)
    service = CaptionService(tmp_path / "c")
    assert [c.caption for c in service.caption(texts)] == captioner.generate(emb)


def test_a_saved_captioner_refuses_another_lm(models, tmp_path):
    lm = load_caption_lm(str(models["lm"]))
    captioner = PrefixCaptioner(CaptionerConfig(embedding_dim=4, prefix_length=1), lm)
    captioner.save(tmp_path / "c")
    with pytest.raises(UserError, match="hidden size 32"):
        load_captioner(tmp_path / "c", load_caption_lm(str(models["narrow"])))
    other = save_random_lm(tmp_path / "other", seed=1)  # same shape, other weights
    with pytest.raises(UserError, match="not the LM this captioner was trained with"):
        load_captioner(tmp_path / "c", load_caption_lm(str(other)))


def _one_line_exit_2(code, err):
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_bad_input_is_one_line_and_exit_2(models, image_data, tmp_path, capsys):
    root, captions = image_data
    base = ["--clip-model", models["clip"], "--model", models["lm"], "--epochs", 1, "-q"]
    missing = root / "missing.jsonl"
    missing.write_text(captions.read_text() + json.dumps({"image": "photos/nope.png", "caption": "x"}) + "\n")
    line = _one_line_exit_2(
        *run_cli(["train-captioner", missing, "--output-dir", tmp_path / "a", *base], capsys)[::2]
    )
    assert "do not exist" in line and "nope.png" in line
    empty = root / "empty.jsonl"
    empty.write_text(captions.read_text() + json.dumps({"image": "photos/red0.png", "caption": "  "}) + "\n")
    line = _one_line_exit_2(
        *run_cli(["train-captioner", empty, "--output-dir", tmp_path / "b", *base], capsys)[::2]
    )
    assert "empty caption" in line
    out = tmp_path / "good"
    assert (
        run_cli(["train-captioner", captions, "--output-dir", out, *base, "--prefix-length", 1], capsys)[0]
        == 0
    )
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 7), np.float32))
    line = _one_line_exit_2(*run_cli(["caption", "--captioner", out, "--embeddings", wrong], capsys)[::2])
    assert "16-dimensional" in line and "7-dimensional" in line
    line = _one_line_exit_2(
        *run_cli(
            ["caption", root / "photos" / "red0.png", "--captioner", out, "--model", models["narrow"]], capsys
        )[::2]
    )
    assert "hidden size 32" in line
    line = _one_line_exit_2(*run_cli(["train-captioner", captions, "--output-dir", out, *base], capsys)[::2])
    assert "already holds a captioner" in line
    line = _one_line_exit_2(
        *run_cli(["train-captioner", captions, "--output-dir", tmp_path / "c", *base, "--resume"], capsys)[
            ::2
        ]
    )
    assert "nothing to resume" in line


def test_kill_during_training_then_resume_keeps_finished_epochs(models, tmp_path):
    texts = tmp_path / "pairs.jsonl"
    texts.write_text(
        "".join(json.dumps({"text": f"item {i}", "caption": f"label {i % 5}"}) + "\n" for i in range(40))
    )
    out = tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "zeroshot.cli",
        "train-captioner",
        str(texts),
        "--output-dir",
        str(out),
        "--encoder",
        "clip-text",
        "--clip-model",
        str(models["clip"]),
        "--model",
        str(models["lm"]),
        "--batch-size",
        "4",
        "--prefix-length",
        "2",
        "-q",
    ]
    env = {**os.environ, "PYTHONPATH": SRC}
    process = subprocess.Popen(
        [*args, "--epochs", "1000"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    state = out / "checkpoint" / "state.json"
    deadline = time.monotonic() + 90
    done = 0
    while time.monotonic() < deadline and done < 2:
        time.sleep(0.2)
        try:
            done = json.loads(state.read_text())["state"]["epochs_done"]
        except (OSError, ValueError, KeyError):
            pass
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert done >= 2, process.stderr.read().decode()
    kept = json.loads(state.read_text())["state"]  # the trainer's own state in the runtime's state.json
    finished = kept["history"]["epoch_losses"]
    assert len(finished) == kept["epochs_done"]
    plain = subprocess.run(
        [*args, "--epochs", str(kept["epochs_done"] + 1)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert plain.returncode == 2 and "pass --resume" in plain.stderr
    resumed = subprocess.run(
        [*args, "--epochs", str(kept["epochs_done"] + 1), "--resume"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["resumed_from_epoch"] == kept["epochs_done"]
    assert (
        result["epoch_losses"][: len(finished)] == finished
        and len(result["epoch_losses"]) == len(finished) + 1
    )
