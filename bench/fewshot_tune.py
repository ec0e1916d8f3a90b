"""Choose few-shot defaults on a development split of the BBC training pool (never the test split).

The curve's test split (split_seed 0, half of each class) is removed first; the remaining pool is split
again in half (split_seed 1) into a support pool and a development set. Support sets use seeds 100-104,
distinct from the curve's seeds 0-9. Run: python -m bench.fewshot_tune
"""

from __future__ import annotations

import argparse
import itertools
import json
from functools import partial
from pathlib import Path

import numpy as np
from sklearn.base import clone

from zeroshot.fewshot.curve import sample_support, split_pool_and_test
from zeroshot.fewshot.kernel_adapter import KernelAdapter
from zeroshot.fewshot.linear_probe import LinearProbe
from zeroshot.fewshot.tasks import load_embedding_task
from zeroshot.fewshot.tip_adapter import TipAdapter

SHOTS, SEEDS = (1, 2, 4, 8, 16), range(100, 105)


def dev_accuracy(task, pool, dev, make) -> list[float]:
    X, y = task.embeddings, task.labels
    means = []
    for k in SHOTS:
        scores = [
            make().fit(X[s], y[s]).score(X[dev], y[dev])
            for s in (sample_support(pool, y, k, seed) for seed in SEEDS)
        ]
        means.append(float(np.mean(scores)))
    return means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, help="the JSON to write",
                        default=Path(__file__).parent / "results" / "fewshot_tune.json")
    args = parser.parse_args()
    task = load_embedding_task("bbc-news")
    outer_pool, _ = split_pool_and_test(task.labels, 0.5, split_seed=0)
    inner_pool, inner_dev = split_pool_and_test(task.labels[outer_pool], 0.5, split_seed=1)
    pool, dev = outer_pool[inner_pool], outer_pool[inner_dev]
    rows = []
    for scale in (10.0, 30.0, 100.0):
        prior = clone(task.prior).set_params(logit_scale=scale)
        rows.append(("zeroshot", {"scale": scale}, dev_accuracy(task, pool, dev, partial(clone, prior))))
        for kernel, beta, lr in itertools.product(("exponential", "cosine"), (5.0, 10.0), (0.3, 1.0, 3.0)):
            if kernel == "cosine" and beta != 5.0:
                continue  # beta shapes only the exponential kernel
            make = partial(KernelAdapter, prior=prior, kernel=kernel, beta=beta, learning_rate=lr)
            config = {"scale": scale, "kernel": kernel, "beta": beta, "lr": lr}
            rows.append(("kernel", config, dev_accuracy(task, pool, dev, make)))
        for alpha, beta in itertools.product((1.0, 3.0, 10.0), (1.0, 5.5)):
            make = partial(TipAdapter, prior=prior, alpha=alpha, beta=beta)
            rows.append(
                ("tip", {"scale": scale, "alpha": alpha, "beta": beta}, dev_accuracy(task, pool, dev, make))
            )
    for fallback in (0.1, 1.0, 10.0, 100.0):
        make = partial(LinearProbe, fallback_C=fallback)
        rows.append(("linear", {"fallback_C": fallback}, dev_accuracy(task, pool, dev, make)))
    print("| method | config | " + " | ".join(f"{k}-shot" for k in SHOTS) + " |")
    for method, config, means in rows:
        print(f"| {method} | {config} | " + " | ".join(f"{100 * m:.1f}" for m in means) + " |", flush=True)
    out = args.output
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            [{"method": m, "config": c, "shots": SHOTS, "dev_accuracy": a} for m, c, a in rows], indent=1
        )
    )


if __name__ == "__main__":
    main()
