"""Soft prompts (issue 16) on a tiny random GPT-2 in the real Hugging Face format.

The body's weights stay bit for bit, the loss falls, a saved prompt gives the same predictions and
log-probabilities in a fresh process, a killed run resumes to the same prompt, and bad input is one
line with exit code 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from zeroshot.cli import main
from zeroshot.errors import UserError
from zeroshot.text.prompts import PromptTemplate

LABELS = ["business", "politics", "sport"]
TEXTS = {
    "sport": [
        "The striker scored twice in the final",
        "The club won the cup",
        "A late goal won the match",
        "The keeper saved a penalty",
    ],
    "business": [
        "Shares rose after record profits",
        "The bank cut its rates",
        "Profits fell at the firm",
        "Markets rallied on the news",
    ],
    "politics": [
        "The minister called an election",
        "Parliament passed the bill",
        "The party chose a leader",
        "Voters went to the polls",
    ],
}
TEMPLATE = PromptTemplate(query="Article: {text}\nTopic:")
DESCRIPTION = "Classify each article by its topic."


def _data():
    texts, labels = [], []
    for label, items in TEXTS.items():
        texts += items
        labels += [label] * len(items)
    return texts, labels


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory) -> Path:
    from zeroshot.testing import save_random_lm

    return save_random_lm(tmp_path_factory.mktemp("gpt2"), arch="gpt2", seed=0)


@pytest.fixture(scope="module")
def lm(tiny_gpt2):
    from zeroshot.models.loader import load_lm

    return load_lm(str(tiny_gpt2), backend="transformers", device="cpu")


def _config(**overrides):
    from zeroshot.train.soft_prompt import SoftPromptConfig

    values = dict(n_virtual_tokens=5, epochs=4, learning_rate=0.1, batch_size=4, patience=5, seed=0)
    return SoftPromptConfig(**(values | overrides))


@pytest.fixture(scope="module")
def trained(lm, tmp_path_factory):
    from zeroshot.train.soft_prompt import train_soft_prompt

    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    folder = tmp_path_factory.mktemp("prompt")
    texts, labels = _data()
    result = train_soft_prompt(
        lm,
        texts,
        labels,
        folder,
        _config(),
        description=DESCRIPTION,
        template=TEMPLATE,
        label_set=LABELS,
        progress=False,
    )
    return folder, result, before


def test_body_unchanged_bit_for_bit_and_loss_falls(lm, trained):
    folder, result, before = trained
    after = lm.model.state_dict()
    assert before.keys() == after.keys()
    for name, tensor in before.items():
        assert torch.equal(tensor, after[name]), name
    assert all(not p.requires_grad for p in lm.model.parameters())
    assert result.train_loss[-1] < result.train_loss[0]
    assert result.trainable_params == 5 * lm.model.config.n_embd
    assert 0 < result.trained_share < 0.01
    for name in ("adapter_model.safetensors", "adapter_config.json", "soft_prompt.json", "loss.png"):
        assert (folder / name).is_file(), name
    meta = json.loads((folder / "soft_prompt.json").read_text())
    assert meta["base_model"] == lm.name and meta["labels"] == LABELS
    assert not (folder / "checkpoint").exists()


def test_prompt_changes_scores_and_is_text_initialised(lm, trained):
    from zeroshot.text.classify import ZeroShotTextClassifier
    from zeroshot.text.soft_prompt import load_soft_prompt

    folder, _, _ = trained
    prompt = load_soft_prompt(folder)
    assert prompt.embeddings.shape == (5, lm.model.config.n_embd)
    plain = ZeroShotTextClassifier(lm, LABELS, template=TEMPLATE).predict_proba(["The club won"])
    tuned = ZeroShotTextClassifier(lm, LABELS, soft_prompt=folder).predict_proba(["The club won"])
    assert not np.allclose(plain, tuned)


def test_cached_and_uncached_scoring_agree(lm, trained):
    from zeroshot.text.soft_prompt import attach_soft_prompt

    folder, _, _ = trained
    tuned = attach_soft_prompt(lm, folder)
    context = lm.tokenize("Article: The club won\nTopic:", add_bos=True)
    answers = [lm.tokenize(" sport"), lm.tokenize(" politics and more")]
    cached = tuned.continuation_logprobs(context, answers, reuse_cache=True)
    fresh = tuned.continuation_logprobs(context, answers, reuse_cache=False)
    for a, b in zip(cached, fresh, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_fresh_process_gives_the_same_predictions_and_logprobs(lm, trained, tmp_path):
    from zeroshot.text.classify import ZeroShotTextClassifier

    folder, _, _ = trained
    texts = ["The club won the cup", "Shares rose"]
    here = ZeroShotTextClassifier(lm, LABELS, soft_prompt=folder).predict_proba(texts)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "zeroshot.cli",
            "classify-text",
            *texts,
            "--labels",
            ",".join(LABELS),
            "--soft-prompt",
            str(folder),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["results"]
    there = np.array([[row["scores"][label] for label in LABELS] for row in rows])
    np.testing.assert_allclose(here, there, rtol=0, atol=5e-7)  # the JSON has 6 decimals
    assert [r["label"] for r in rows] == [LABELS[i] for i in here.argmax(1)]


def test_resume_after_a_kill_reaches_the_same_prompt(lm, tmp_path):
    from safetensors.torch import load_file

    from zeroshot.train.soft_prompt import train_soft_prompt

    texts, labels = _data()
    whole = train_soft_prompt(
        lm,
        texts,
        labels,
        tmp_path / "whole",
        _config(),
        description=DESCRIPTION,
        template=TEMPLATE,
        label_set=LABELS,
        progress=False,
    )

    def kill_after_two(epoch, train_loss, dev_loss):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_soft_prompt(
            lm,
            texts,
            labels,
            tmp_path / "cut",
            _config(),
            description=DESCRIPTION,
            template=TEMPLATE,
            label_set=LABELS,
            progress=False,
            on_epoch=kill_after_two,
        )
    assert (tmp_path / "cut" / "checkpoint" / "state.json").is_file()
    with pytest.raises(UserError, match="--resume"):  # an unfinished run is never silently overwritten
        train_soft_prompt(
            lm,
            texts,
            labels,
            tmp_path / "cut",
            _config(),
            description=DESCRIPTION,
            template=TEMPLATE,
            label_set=LABELS,
            progress=False,
        )
    resumed = train_soft_prompt(
        lm,
        texts,
        labels,
        tmp_path / "cut",
        _config(),
        description=DESCRIPTION,
        template=TEMPLATE,
        label_set=LABELS,
        progress=False,
        resume=True,
    )
    assert resumed.train_loss == pytest.approx(whole.train_loss, rel=1e-5)
    a = load_file(str(tmp_path / "whole" / "adapter_model.safetensors"))["prompt_embeddings"]
    b = load_file(str(tmp_path / "cut" / "adapter_model.safetensors"))["prompt_embeddings"]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_early_stopping_on_the_dev_split(lm, tmp_path):
    from zeroshot.train.soft_prompt import split_dev, train_soft_prompt

    texts, labels = _data()
    train, dev = split_dev(labels, 0.25, seed=0)
    assert len(dev) == 3 and sorted(labels[i] for i in dev) == LABELS  # one per label
    assert split_dev(labels[:2], 0.25, seed=0) == ([0, 1], [])  # too few to hold any out
    result = train_soft_prompt(
        lm,
        texts,
        labels,
        tmp_path / "p",
        _config(epochs=30, learning_rate=2.0, patience=1),
        description=DESCRIPTION,
        template=TEMPLATE,
        label_set=LABELS,
        progress=False,
    )
    assert result.n_dev == 3 and len(result.dev_loss) == result.epochs_run
    assert result.stopped_early and result.epochs_run < 30
    assert result.dev_loss[result.best_epoch - 1] == min(result.dev_loss)


def _task_file(tmp_path: Path) -> Path:
    texts, labels = _data()
    lines = [
        json.dumps(
            {
                "config": {
                    "description": DESCRIPTION,
                    "doc_to_text": "Article: {text}\nTopic:",
                    "doc_to_target": "{label}",
                    "doc_to_choice": LABELS,
                }
            }
        )
    ]
    lines += [
        json.dumps({"text": t, "label": y, "split": "train"}) for t, y in zip(texts, labels, strict=True)
    ]
    lines += [json.dumps({"text": "The goal came late", "label": "sport"})]
    path = tmp_path / "task.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _one_line_error(capsys) -> str:
    """The one error line (a command that loaded a model has said so on the line before it)."""
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in err and len(errors) == 1 and err.splitlines()[-1] == errors[0], err
    return errors[0]


def test_cli_tune_then_eval_and_bad_inputs(tiny_gpt2, tmp_path, capsys):
    from zeroshot.testing import save_random_lm

    task = _task_file(tmp_path)
    out = tmp_path / "prompt"
    common = ["--model", str(tiny_gpt2), "--virtual-tokens", "3", "--epochs", "2", "-q"]
    assert main(["tune-prompt", str(task), "--output-dir", str(out), *common, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_virtual_tokens"] == 3
    assert (
        main(
            [
                "eval-text",
                str(task),
                "--shots",
                "0",
                "--soft-prompt",
                str(out),
                "--output-dir",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "eval" / "task-scaling.json").read_text())["models"][0]
    assert report["n_docs"] == 1 and len(report["series"]["plain"]) == 1

    # A soft prompt trained for another base model.
    other = save_random_lm(tmp_path / "other", arch="gpt2", seed=1)
    capsys.readouterr()
    assert (
        main(
            [
                "classify-text",
                "x",
                "--labels",
                ",".join(LABELS),
                "--soft-prompt",
                str(out),
                "--model",
                str(other),
            ]
        )
        == 2
    )
    assert "trained for the base model" in _one_line_error(capsys)
    # --resume on a folder holding another run's checkpoint.
    cut = tmp_path / "cut"
    (cut / "checkpoint").mkdir(parents=True)
    (cut / "checkpoint" / "state.json").write_text(
        json.dumps(
            {"format": "zeroshot-checkpoint/1", "fingerprint": "0123456789abcdef", "state": {"epoch": 1}}
        )
    )
    assert main(["tune-prompt", str(task), "--output-dir", str(cut), *common, "--resume"]) == 2
    assert "another model, data or settings" in _one_line_error(capsys)
    # Not a soft prompt folder; no virtual tokens; random init without --init text's description.
    assert main(["classify-text", "x", "--labels", "a,b", "--soft-prompt", str(tmp_path)]) == 2
    assert "not a soft prompt folder" in _one_line_error(capsys)
    assert (
        main(
            [
                "tune-prompt",
                str(task),
                "--output-dir",
                str(tmp_path / "z"),
                *common[:2],
                "--virtual-tokens",
                "0",
            ]
        )
        == 2
    )
    assert "virtual tokens" in _one_line_error(capsys)


def test_the_training_half_moved_and_the_old_names_warn():
    import zeroshot.text.soft_prompt as inference
    from zeroshot.train import soft_prompt as training

    for name in ("train_soft_prompt", "SoftPromptConfig", "SoftPromptResult", "split_dev", "sample_per_label",
                 "trainable_model", "INITS"):
        with pytest.warns(DeprecationWarning, match=f"moved to zeroshot.train.soft_prompt.{name}"):
            assert getattr(inference, name) is getattr(training, name)
    with pytest.raises(AttributeError):
        inference.plot_losses  # noqa: B018 - the private copies are gone, not forwarded
