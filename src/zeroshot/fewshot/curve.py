"""The shots-vs-accuracy experiment: zero-shot head, linear probe, kernel adapter and Tip-Adapter.

One fixed, stratified test split (`split_seed`) is held out for every seed; the rest is the training
pool. For each seed the pool of every class is shuffled once and the first k examples of each class
form the k-shot support set, so a seed's support sets are nested (the 2-shot set contains the 1-shot
set), which compares shot counts on the same examples. No hyperparameter is chosen on the test split.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn.base import clone

from zeroshot.errors import UserError
from zeroshot.eval.experiment import Summary, plot_curves, run_grid
from zeroshot.eval.experiment import format_table as experiment_table
from zeroshot.fewshot.kernel_adapter import KernelAdapter
from zeroshot.fewshot.linear_probe import LinearProbe
from zeroshot.fewshot.tasks import EmbeddingTask
from zeroshot.fewshot.tip_adapter import TipAdapter
from zeroshot.validation import split_ints, split_list

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


def _check_test_fraction(test_fraction: float) -> None:
    if not 0 < test_fraction < 1:
        raise UserError(f"test fraction must be between 0 and 1, got {test_fraction}")


@dataclass(frozen=True)
class CurveConfig:
    """What `fewshot-curve` measures; checked when built, so before any encoder embeds a text.

    `shots` (labelled examples per class) and `methods` may be given comma-separated (`"0,1,4"`,
    `"linear,tip"`) or as sequences; shots are kept sorted, each once. Rules that need the embedded
    task (enough examples per class for the largest K, class embeddings for `zeroshot`) are checked by
    `run_curve` before its first fit.
    """

    shots: tuple[int, ...] | str = (0, 1, 2, 4, 8, 16)
    seeds: int = 10
    methods: tuple[str, ...] | str = METHODS
    test_fraction: float = 0.5
    split_seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "shots", tuple(split_ints(self.shots, "--shots")))
        object.__setattr__(self, "methods", tuple(split_list(self.methods, "--methods")))
        self.check()

    def check(self) -> None:
        """Every rule of the experiment that needs no data, once."""
        if min(self.shots) < 0:
            raise UserError(f"--shots must be at least 0, got {min(self.shots)}")
        if self.seeds < 1:
            raise UserError(f"--seeds must be at least 1, got {self.seeds}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise UserError(f"unknown methods {unknown or '(none)'}: choose from {', '.join(METHODS)}")
        _check_test_fraction(self.test_fraction)


def split_pool_and_test(
    labels: np.ndarray, test_fraction: float = 0.5, split_seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training pool and of the held-out test set, stratified by class."""
    _check_test_fraction(test_fraction)
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


def run_curve(task: EmbeddingTask, config: CurveConfig, progress: bool = True) -> dict:
    """Accuracy on the held-out split for every method, shot count and seed; a JSON-ready dict."""
    shots, seeds, methods = list(config.shots), config.seeds, list(config.methods)
    test_fraction, split_seed = config.test_fraction, config.split_seed
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
    seconds: dict[str, list[float]] = {m: [] for m in methods}

    def measure(k: int, seed: int) -> dict[str, float]:
        support = sample_support(pool, labels, k, seed) if k else np.array([], dtype=int)
        scores = {}
        for method in methods:
            if k == 0 and method != "zeroshot":
                continue  # no support set: only the zero-shot head has anything to say
            if method == "zeroshot" and (k > 0 or seed > 0):
                continue  # it learns nothing from the support set: one evaluation is the whole story
            estimator = make_estimator(method, task.prior)
            started = time.perf_counter()
            X_fit = task.embeddings[support] if k else task.embeddings[test[:1]]
            estimator.fit(X_fit, labels[support] if k else None)
            scores[method] = float(estimator.score(X_test, y_test))
            seconds[method].append(time.perf_counter() - started)
        return {"accuracy": scores}

    shot_list = sorted(set(shots) | ({0} if "zeroshot" in methods else set()))
    series = run_grid(shot_list, list(range(seeds)), measure, progress=progress,
                      desc=f"{task.name} curve").series
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
        "series": {name: [asdict(point) for point in points] for name, points in series.items()},
        "mean_fit_and_score_seconds": {m: float(np.mean(v)) if v else None for m, v in seconds.items()},
    }


def series_of(result: dict) -> dict[str, list[Summary]]:
    """The summaries of a `run_curve` result (as read back from its JSON)."""
    def point(saved: dict) -> Summary:  # JSON turned the seed keys into strings
        return Summary(**{**saved, "per_seed": {int(s): a for s, a in saved["per_seed"].items()}})

    return {name: [point(p) for p in points] for name, points in result["series"].items()}


def format_table(result: dict) -> str:
    """A Markdown table of accuracy per shot count: mean ± std [min, max] over seeds, one row per method."""
    series = series_of(result)
    levels = {m: series.pop(m)[0] for m in list(series) if m == "zeroshot"}
    table = experiment_table(series, result["shots"], result["methods"])
    for method, point in levels.items():
        table += f"\n| {result['methods'][method]} (no training) | {point.mean:.1%} at every K |"
    return table


def plot_curve(result: dict, path: Path) -> Path:
    """Accuracy against shots: mean with a ±1 std band per method; the zero-shot head as a level line."""
    series = series_of(result)
    levels = {m: series.pop(m)[0].mean for m in list(series) if m == "zeroshot"}
    return plot_curves(series, path, shots=result["shots"], levels=levels, names=result["methods"],
                       xlabel="labelled examples per class (shots)",
                       title=f"{result['task']} ({result['encoder']}): {len(result['seeds'])} seeds, "
                             f"{result['n_test']} test examples")


def save_curve(result: dict, out_dir: Path, stem: str) -> tuple[Path, Path]:
    """Write `stem`.json and `stem`.png under `out_dir`; return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(result, indent=1))
    return json_path, plot_curve(result, out_dir / f"{stem}.png")
