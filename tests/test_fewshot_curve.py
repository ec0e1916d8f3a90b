"""The few-shot curve end to end: the CLI on a task file, its errors, one real MiniLM run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zeroshot.cli import main
from zeroshot.fewshot.curve import CurveConfig, run_curve, sample_support, split_pool_and_test


@pytest.fixture()
def npz_task(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    labels = np.repeat(np.array(["a", "b", "c"]), 30)
    X = np.repeat(centres, 30, axis=0) + 1.5 * rng.normal(size=(90, 16))
    path = tmp_path / "task.npz"
    np.savez(
        path,
        embeddings=X.astype(np.float32),
        labels=labels,
        class_embeddings=centres + rng.normal(size=(3, 16)),
        class_labels=np.array(["a", "b", "c"]),
    )
    return path


def test_curve_cli_writes_json_and_png_for_a_task_file(npz_task, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["fewshot-curve", str(npz_task), "--shots", "0,1,4", "--seeds", "2",
                 "--output-dir", str(out)])
    assert code == 0
    result = json.loads((out / "fewshot-curve-task.json").read_text())
    assert (out / "fewshot-curve-task.png").stat().st_size > 10_000
    kernel = {p["k"]: p for p in result["series"]["kernel"]}
    assert len(kernel[4]["per_seed"]) == 2 and 0 not in [p["k"] for p in result["series"]["linear"]]
    assert set(kernel[4]) >= {"mean", "std", "min", "max"}  # the statistics eval-text reports, same names
    assert "| KernelAdapter |" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--shots", "1,x"], "--shots must be comma-separated whole numbers"),
        (["--shots", "40"], "fewer than 40 shots"),
        (["--methods", "kernel,svm"], "unknown methods"),
    ],
)
def test_curve_cli_bad_input_is_one_line_and_exit_2(npz_task, tmp_path, capsys, args, message):
    code = main(["fewshot-curve", str(npz_task), "--seeds", "1", "--output-dir", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_curve_cli_refuses_a_missing_task(tmp_path, capsys):
    assert main(["fewshot-curve", str(tmp_path / "nope.jsonl")]) == 2
    assert "neither `bbc-news` nor an existing file" in capsys.readouterr().err


def test_support_sets_are_nested_and_never_touch_the_test_split():
    labels = np.repeat(np.array(["x", "y"]), 20)
    pool, test = split_pool_and_test(labels, 0.5, split_seed=0)
    assert not set(pool) & set(test)
    two, four = sample_support(pool, labels, 2, seed=3), sample_support(pool, labels, 4, seed=3)
    assert set(two) <= set(four) and set(four) <= set(pool)


@pytest.mark.slow
def test_real_minilm_embeddings_of_bbc_articles_adapt_beyond_chance(tmp_path, monkeypatch):
    """100 BBC articles (truncated to 600 characters) through the bundled MiniLM, cached on disk."""
    from zeroshot.eval.datasets import load_bbc_news
    from zeroshot.fewshot.embeddings_cache import cached_encode
    from zeroshot.fewshot.tasks import EmbeddingTask
    from zeroshot.fewshot.zero_shot_head import ZeroShotHead
    from zeroshot.models.sentence import load_sentence_encoder

    articles = load_bbc_news()[::22][:100]  # every topic, 20 articles each
    encoder = load_sentence_encoder()
    X = cached_encode(encoder, [a.text[:600] for a in articles])
    assert X.shape == (100, 384) and np.allclose(np.linalg.norm(X, axis=1), 1, atol=1e-5)
    labels = np.array([a.label for a in articles])
    prior = ZeroShotHead.from_prompts(encoder, sorted(set(labels)), logit_scale=10.0)
    task = EmbeddingTask("bbc-100", X, labels, prior, encoder.name)
    result = run_curve(task, CurveConfig([0, 4], seeds=2, methods=["zeroshot", "kernel", "tip"]),
                       progress=False)
    mean = {name: {p["k"]: p["mean"] for p in points} for name, points in result["series"].items()}
    assert mean["zeroshot"][0] > 0.6  # 5 topics: chance is 0.2
    assert mean["kernel"][4] > 0.6 and mean["tip"][4] > 0.6


def test_limit_keeps_every_class_in_proportion(npz_task, tmp_path, capsys):
    """`--limit` on a file sorted by label used to keep only its first classes (issue 11)."""
    from zeroshot.fewshot.tasks import load_embedding_task, stratified_subset

    task = load_embedding_task(str(npz_task), limit=30)
    values, counts = np.unique(task.labels, return_counts=True)
    assert values.tolist() == ["a", "b", "c"] and counts.tolist() == [10, 10, 10]
    # Uneven classes keep their shares, every class keeps at least one, and the draw is seeded.
    labels = ["x"] * 80 + ["y"] * 15 + ["z"] * 5
    kept = stratified_subset(labels, 20)
    assert len(kept) == 20 and kept == sorted(kept) and kept == stratified_subset(labels, 20)
    assert [sum(labels[i] == c for i in kept) for c in "xyz"] == [16, 3, 1]
    assert [labels[i] for i in stratified_subset(labels, 3)] == ["x", "y", "z"]
    assert stratified_subset(labels, None) == list(range(100))
    for bad in ("2", "0", "-3"):
        code = main(["fewshot-curve", str(npz_task), "--limit", bad, "--output-dir", str(tmp_path / "o")])
        assert code == 2
    assert "--limit" in capsys.readouterr().err
