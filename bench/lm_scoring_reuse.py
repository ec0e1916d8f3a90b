"""Model-level cost of `continuation_logprobs`: shared-prefix cache reuse against scoring from scratch.

`python -m bench.lm_scoring_reuse [--backend llama.cpp|transformers] [--queries 20]`: a 5-label
task with a few-shot prefix of real BBC News articles; each query is scored both ways in the same run.
Writes bench/results/lm_scoring_reuse.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from zeroshot.eval.datasets import load_bbc_news
from zeroshot.models.loader import load_lm

LABELS = [" business", " entertainment", " politics", " sport", " tech"]


def _clip(text: str, words: int) -> str:
    return " ".join(text.split()[:words])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--model", default=None)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--shots", type=int, default=4)
    args = parser.parse_args()

    articles = load_bbc_news()
    order = np.random.default_rng(0).permutation(len(articles))  # seeded: the corpus is sorted by topic
    texts = [articles[i].text for i in order]
    labels = [articles[i].label for i in order]
    lm = load_lm(args.model, backend=args.backend)
    header = "Classify each news article as business, entertainment, politics, sport or tech.\n\n"
    demos = "".join(f"Article: {_clip(texts[i], 60)}\nTopic: {labels[i]}\n\n" for i in range(args.shots))
    prefix = lm.tokenize(header + demos, add_bos=True)
    conts = [lm.tokenize(label) for label in LABELS]
    queries = [lm.tokenize(f"Article: {_clip(texts[i], 60)}\nTopic:")
               for i in range(args.shots, args.shots + args.queries)]
    timings, worst = {}, 0.0
    results = {}
    for mode in (False, True):
        started = time.perf_counter()
        results[mode] = [lm.continuation_logprobs(prefix + q, conts, reuse_cache=mode) for q in queries]
        timings["reuse" if mode else "naive"] = time.perf_counter() - started
    for a, b in zip(results[True], results[False], strict=True):
        worst = max(worst, max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True)))
    same = sum(int(np.argmax([x.sum() for x in a]) == np.argmax([y.sum() for y in b]))
               for a, b in zip(results[True], results[False], strict=True))
    row = dict(backend=lm.backend, model=Path(lm.name).name, prefix_tokens=len(prefix), queries=len(queries),
               labels=len(conts), naive_seconds=timings["naive"], reuse_seconds=timings["reuse"],
               speedup=timings["naive"] / timings["reuse"], max_abs_logprob_diff=worst,
               same_argmax=f"{same}/{len(queries)}")
    print(f"{'backend':<13}{'prefix':>7}{'queries':>8}{'naive s':>9}{'reuse s':>9}{'ratio':>7}"
          f"{'max |diff|':>12}"
          f"{'same argmax':>13}")
    print(f"{row['backend']:<13}{row['prefix_tokens']:>7}{row['queries']:>8}{row['naive_seconds']:>9.2f}"
          f"{row['reuse_seconds']:>9.2f}{row['speedup']:>7.1f}{worst:>12.2e}{row['same_argmax']:>13}")
    out = Path("bench/results/lm_scoring_reuse.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(out.read_text()) if out.exists() else {}
    existing[lm.backend] = row
    out.write_text(json.dumps(existing, indent=2))


if __name__ == "__main__":
    main()
