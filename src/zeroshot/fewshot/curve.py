"""The shots-vs-accuracy experiment: zero-shot head, linear probe, kernel adapter and Tip-Adapter.

One fixed, stratified test split (`split_seed`) is held out for every seed; the rest is the training
pool. For each seed the pool of every class is shuffled once and the first k examples of each class
form the k-shot support set, so a seed's support sets are nested (the 2-shot set contains the 1-shot
set), which compares shot counts on the same examples. No hyperparameter is chosen on the test split.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.base import clone

from zeroshot.errors import UserError
from zeroshot.fewshot.kernel_adapter import KernelAdapter
from zeroshot.fewshot.linear_probe import LinearProbe
from zeroshot.fewshot.tasks import EmbeddingTask
from zeroshot.fewshot.tip_adapter import TipAdapter

METHODS = ("zeroshot", "linear", "kernel", "tip")
METHOD_NAMES = {
    "zeroshot": "ZeroShotHead",
    "linear": "LinearProbe",
    "kernel": "KernelAdapter",
    "tip": "TipAdapter",
}
# Tip-Adapter's cache weight and sharpness for unit-norm sentence embeddings under the prior's logit
# scale of 10 (tasks.SENTENCE_LOGIT_SCALE); chosen on a development split of the BBC training pool
# (bench/fewshot_tune.py), never on the test split. The paper's CLIP values are alpha=1, beta=5.5:
# MiniLM's cosines between texts of one topic are lower and more spread than CLIP's, so a flatter
# affinity (beta=1) and a heavier cache (alpha=3) suit it.
TIP_ALPHA, TIP_BETA = 3.0, 1.0


def make_estimator(method: str, prior):
    """A fresh, unfitted estimator for `method` (adapters start from `prior`, which may be None)."""
    if method == "zeroshot":
        if prior is None:
            raise UserError("the zeroshot method needs class embeddings, and this task has none")
        return clone(prior)
    if method == "linear":
        return LinearProbe()
    if method == "kernel":
        return KernelAdapter(prior=prior)
    if method == "tip":
        return TipAdapter(prior=prior, alpha=TIP_ALPHA, beta=TIP_BETA)
    raise UserError(f"unknown method {method!r}: choose from {', '.join(METHODS)}")


def split_pool_and_test(
    labels: np.ndarray, test_fraction: float = 0.5, split_seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training pool and of the held-out test set, stratified by class."""
    if not 0 < test_fraction < 1:
        raise UserError(f"test fraction must be between 0 and 1, got {test_fraction}")
    rng = np.random.default_rng(split_seed)
    pool, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(len(members) * test_fraction))
        test.extend(members[:n_test])
        pool.extend(members[n_test:])
    return np.sort(np.array(pool, dtype=int)), np.sort(np.array(test, dtype=int))


def sample_support(pool: np.ndarray, labels: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """`shots` examples of each class from `pool` (nested across shot counts for one seed)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels[pool]):
        members = rng.permutation(pool[labels[pool] == label])
        if len(members) < shots:
            raise UserError(
                f"class {str(label)!r} has only {len(members)} examples in the training pool, "
                f"fewer than {shots} shots"
            )
        chosen.extend(members[:shots])
    return np.array(chosen, dtype=int)


def run_curve(
    task: EmbeddingTask,
    shots: Sequence[int],
    seeds: int,
    methods: Sequence[str],
    test_fraction: float = 0.5,
    split_seed: int = 0,
    progress: bool = True,
) -> dict:
    """Accuracy on the held-out split for every method, shot count and seed; a JSON-ready dict."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown methods {unknown}: choose from {', '.join(METHODS)}")
    if seeds < 1:
        raise UserError("--seeds must be at least 1")
    if "zeroshot" in methods and task.prior is None:
        raise UserError(
            f"{task.name} has no class embeddings, so the zeroshot method cannot run: "
            "drop it from --methods (adapters then start from zero)"
        )
    labels = task.labels
    if len(np.unique(labels)) < 2:
        raise UserError(f"{task.name} has a single class: a classifier needs at least two")
    pool, test = split_pool_and_test(labels, test_fraction, split_seed)
    X_test, y_test = task.embeddings[test], labels[test]
    for k in shots:  # fail before the progress bar starts, not halfway through
        sample_support(pool, labels, k, seed=0)
    accuracy = {m: {} for m in methods}
    seconds = {m: {} for m in methods}
    jobs = [(seed, k) for seed in range(seeds) for k in shots]
    from tqdm import tqdm

    for seed, k in tqdm(jobs, desc=f"{task.name} curve", disable=not progress, unit="run"):
        support = sample_support(pool, labels, k, seed) if k else np.array([], dtype=int)
        for method in methods:
            if k == 0 and method != "zeroshot":
                continue  # no support set: only the zero-shot head has anything to say
            if method == "zeroshot" and seed > 0:
                continue  # deterministic: one evaluation per shot count is the whole story
            estimator = make_estimator(method, task.prior)
            started = time.perf_counter()
            X_fit = task.embeddings[support] if k else task.embeddings[test[:1]]
            estimator.fit(X_fit, labels[support] if k else None)
            score = float(estimator.score(X_test, y_test))
            accuracy[method].setdefault(str(k), []).append(score)
            seconds[method].setdefault(str(k), []).append(time.perf_counter() - started)
    return {
        "task": task.name,
        "encoder": task.encoder,
        "shots": list(shots),
        "seeds": list(range(seeds)),
        "split_seed": split_seed,
        "test_fraction": test_fraction,
        "n_pool": int(len(pool)),
        "n_test": int(len(test)),
        "classes": [str(c) for c in np.unique(labels)],
        "methods": {m: METHOD_NAMES[m] for m in methods},
        "accuracy": accuracy,
        "fit_and_score_seconds": seconds,
        "summary": summarise(accuracy),
    }


def summarise(accuracy: dict) -> dict:
    """method -> shots -> {mean, std, n} (std over seeds, population formula)."""
    return {
        method: {
            k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v)} for k, v in by_shots.items()
        }
        for method, by_shots in accuracy.items()
    }


def format_table(result: dict) -> str:
    """A Markdown table of mean ± std accuracy (percent), one row per method, one column per shot count."""
    shots = [str(k) for k in result["shots"]]
    lines = ["| method | " + " | ".join(f"{k}-shot" for k in shots) + " |", "|---|" + "---|" * len(shots)]
    for method, by_shots in result["summary"].items():
        cells = []
        for k in shots:
            cell = by_shots.get(k) or (by_shots.get("0") if method == "zeroshot" else None)
            cells.append("-" if cell is None else f"{100 * cell['mean']:.1f} ± {100 * cell['std']:.1f}")
        lines.append(f"| {result['methods'][method]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curve(result: dict, path: Path) -> Path:
    """Accuracy against shots: mean line with a ±1 std band per method; the zero-shot head as a level line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shots = result["shots"]
    positions = {k: i for i, k in enumerate(shots)}  # even spacing: 0, 1, 2, 4, 8, 16 read like a log axis
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, by_shots in result["summary"].items():
        name = result["methods"][method]
        if method == "zeroshot":
            level = next(iter(by_shots.values()))["mean"]
            ax.axhline(100 * level, color="grey", linestyle="--", label=f"{name} ({100 * level:.1f}%)")
            continue
        ks = [k for k in shots if str(k) in by_shots]
        mean = np.array([by_shots[str(k)]["mean"] for k in ks]) * 100
        std = np.array([by_shots[str(k)]["std"] for k in ks]) * 100
        xs = [positions[k] for k in ks]
        ax.plot(xs, mean, marker="o", label=name)
        ax.fill_between(xs, mean - std, mean + std, alpha=0.2)
    ax.set_xticks(range(len(shots)), [str(k) for k in shots])
    ax.set_xlabel("labelled examples per class (shots)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(
        f"{result['task']} ({result['encoder']}): mean ± std over {len(result['seeds'])} seeds, "
        f"{result['n_test']} test examples",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def save_curve(result: dict, out_dir: Path, stem: str) -> tuple[Path, Path]:
    """Write `stem`.json and `stem`.png under `out_dir`; return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(result, indent=1))
    return json_path, plot_curve(result, out_dir / f"{stem}.png")
