"""Shared-prefix reuse against naive full-sequence scoring: the same BBC articles, K=4, same backend.

    python -m bench.prefix_reuse [--articles 200] [--shots 4] [--backend auto] [--naive-subset N]

(a) naive: every label's full sequence (prefix + article + label) is evaluated from scratch;
(b) reuse: the prefix (description + 4 demonstrations, fixed seed) is evaluated once and its key/value
cache reused across labels and articles. Both must give the same predictions (asserted). Prints a table
and writes bench/results/prefix_reuse.json. `--naive-subset N` times naive on the first N articles only
and says so in the table and JSON (the ratio then compares per-article times).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=200)
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--model", default=None)
    parser.add_argument("--naive-subset", type=int, default=None)
    args = parser.parse_args(argv)

    from zeroshot.eval.tasks import bbc_news_task
    from zeroshot.models.loader import load_lm
    from zeroshot.text.classify import ZeroShotTextClassifier
    from zeroshot.text.prompts import sample_demonstrations

    task = bbc_news_task()
    texts = [d.query for d in task.docs[: args.articles]]
    demos = sample_demonstrations(task.demonstration_pool(), args.shots, args.seed)
    lm = load_lm(args.model, backend=args.backend)
    n_naive = args.naive_subset or len(texts)

    def run(reuse: bool, batch: list[str]) -> tuple[np.ndarray, float]:
        clf = ZeroShotTextClassifier(
            lm, task.labels, task.description, demos, task.template, reuse_cache=reuse, progress=True
        )
        clf.fit()
        lm.continuation_logprobs(
            lm.tokenize("warm up", add_bos=True), [lm.tokenize(" up")], reuse_cache=False
        )
        started = time.perf_counter()
        proba = clf.predict_proba(batch)
        return proba, time.perf_counter() - started

    reuse_proba, reuse_s = run(True, texts)
    naive_proba, naive_s = run(False, texts[:n_naive])
    same = bool((naive_proba.argmax(1) == reuse_proba[:n_naive].argmax(1)).all())
    max_diff = float(np.abs(naive_proba - reuse_proba[:n_naive]).max())
    assert same, "naive and reused scoring disagree on a prediction"
    naive_per = naive_s / n_naive
    reuse_per = reuse_s / len(texts)
    prefix_tokens = len(clf_prefix_ids(lm, task, demos))
    result = {
        "model": lm.name,
        "backend": lm.backend,
        "articles": len(texts),
        "naive_articles": n_naive,
        "naive_extrapolated": n_naive < len(texts),
        "shots": args.shots,
        "seed": args.seed,
        "prefix_tokens": prefix_tokens,
        "labels": len(task.labels),
        "naive_seconds": naive_s,
        "reuse_seconds": reuse_s,
        "naive_seconds_per_article": naive_per,
        "reuse_seconds_per_article": reuse_per,
        "speedup": naive_per / reuse_per,
        "same_predictions": same,
        "max_probability_difference": max_diff,
        "accuracy": float(
            np.mean(
                [task.labels[i] == d.target for i, d in zip(reuse_proba.argmax(1), task.docs, strict=False)]
            )
        ),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "prefix_reuse.json").write_text(json.dumps(result, indent=2) + "\n")
    note = f" (naive timed on {n_naive} articles, per-article ratio)" if n_naive < len(texts) else ""
    print(
        f"\nBBC News, K={args.shots}, {len(texts)} articles, {len(task.labels)} labels, "
        f"prefix {prefix_tokens} tokens, backend {lm.backend}{note}"
    )
    print(f"{'method':<28}{'articles':>9}{'seconds':>10}{'s/article':>11}")
    print(f"{'naive (full sequences)':<28}{n_naive:>9}{naive_s:>10.1f}{naive_per:>11.3f}")
    print(f"{'shared-prefix reuse':<28}{len(texts):>9}{reuse_s:>10.1f}{reuse_per:>11.3f}")
    print(f"speed-up: {result['speedup']:.1f}x; same predictions: {same}; max |p diff| {max_diff:.2e}")
    return result


def clf_prefix_ids(lm, task, demos) -> list[int]:
    from zeroshot.text.prompts import PromptBuilder

    return PromptBuilder(lm, task.description, demos, task.template).prefix_ids(len(demos))


if __name__ == "__main__":
    main()
