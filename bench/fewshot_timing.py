"""Fit + predict time of each few-shot method: 16 shots x 5 classes, 2,000 queries, MiniLM width (384).

Synthetic unit vectors (timing does not depend on their values). Median of 7 repeats after one warm-up.
Run: python -m bench.fewshot_timing
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from zeroshot.fewshot import KernelAdapter, LinearProbe, TipAdapter, ZeroShotHead
from zeroshot.fewshot.curve import TIP_ALPHA, TIP_BETA

SHOTS, CLASSES, QUERIES, DIM, REPEATS = 16, 5, 2000, 384, 7


def unit(rng, n):
    X = rng.normal(size=(n, DIM))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def main() -> None:
    rng = np.random.default_rng(0)
    X, y, queries = unit(rng, SHOTS * CLASSES), np.repeat(np.arange(CLASSES), SHOTS), unit(rng, QUERIES)
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
    print(f"| method | fit ms | predict ms ({QUERIES} queries) | total ms |\n|---|---|---|---|")
    for name, make in methods.items():
        fits, predicts = [], []
        for _ in range(REPEATS + 1):
            started = time.perf_counter()
            estimator = make().fit(X, y)
            fitted = time.perf_counter()
            estimator.predict(queries)
            fits.append(fitted - started)
            predicts.append(time.perf_counter() - fitted)
        fit_ms, predict_ms = 1000 * np.median(fits[1:]), 1000 * np.median(predicts[1:])
        rows.append({"method": name, "fit_ms": fit_ms, "predict_ms": predict_ms})
        print(f"| {name} | {fit_ms:.1f} | {predict_ms:.1f} | {fit_ms + predict_ms:.1f} |", flush=True)
    out = Path(__file__).parent / "results" / "fewshot_timing.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "shots": SHOTS,
                "classes": CLASSES,
                "queries": QUERIES,
                "dim": DIM,
                "repeats": REPEATS,
                "rows": rows,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
