"""Fit + predict time of each few-shot method: 16 shots x 5 classes, 2,000 queries, MiniLM width (384).

Synthetic unit vectors (timing does not depend on their values). Median of 7 repeats after one warm-up.
Run: python -m bench.fewshot_timing
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from zeroshot.fewshot import KernelAdapter, LinearProbe, TipAdapter, ZeroShotHead
from zeroshot.fewshot.curve import TIP_ALPHA, TIP_BETA

SHOTS, CLASSES, QUERIES, DIM, REPEATS = 16, 5, 2000, 384, 7


def unit(rng, n, dim=DIM):
    X = rng.normal(size=(n, dim))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, help="the JSON to write",
                        default=Path(__file__).parent / "results" / "fewshot_timing.json")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="timed repeats after one warm-up")
    parser.add_argument("--queries", type=int, default=QUERIES, help="queries predicted per repeat")
    args = parser.parse_args()
    repeats, n_queries = args.repeats, args.queries
    rng = np.random.default_rng(0)
    X, y, queries = unit(rng, SHOTS * CLASSES), np.repeat(np.arange(CLASSES), SHOTS), unit(rng, n_queries)
    prior = ZeroShotHead(unit(rng, CLASSES), logit_scale=10.0)
    methods = {
        "ZeroShotHead": lambda: prior,
        "LinearProbe (C by CV)": LinearProbe,
        "LinearProbe (C=10 fixed)": lambda: LinearProbe(C=10.0),
        "KernelAdapter (steps by CV)": lambda: KernelAdapter(prior=prior),
        "KernelAdapter (100 steps, no CV)": lambda: KernelAdapter(prior=prior, early_stopping=None),
        "TipAdapter": lambda: TipAdapter(prior=prior, alpha=TIP_ALPHA, beta=TIP_BETA),
    }
    rows = []
    print(f"| method | fit ms | predict ms ({n_queries} queries) | total ms |\n|---|---|---|---|")
    for name, make in methods.items():
        fits, predicts = [], []
        for _ in range(repeats + 1):
            started = time.perf_counter()
            estimator = make().fit(X, y)
            fitted = time.perf_counter()
            estimator.predict(queries)
            fits.append(fitted - started)
            predicts.append(time.perf_counter() - fitted)
        fit_ms, predict_ms = 1000 * np.median(fits[1:]), 1000 * np.median(predicts[1:])
        rows.append({"method": name, "fit_ms": fit_ms, "predict_ms": predict_ms})
        print(f"| {name} | {fit_ms:.1f} | {predict_ms:.1f} | {fit_ms + predict_ms:.1f} |", flush=True)
    out = args.output
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "shots": SHOTS,
                "classes": CLASSES,
                "queries": n_queries,
                "dim": DIM,
                "repeats": repeats,
                "rows": rows,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
