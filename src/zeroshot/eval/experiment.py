"""The one experiment runner and its summaries: accuracy against K over seeds, for any method.

`eval-text` (K demonstrations in the prompt) and `fewshot-curve` (K labelled examples per class for an
adapter) run the same grid: every K, every seed, one accuracy per series ("plain" and "calibrated", or
one per method). Both summarise it here, with the same statistics under the same names: mean, sample
standard deviation over seeds (`std`, ddof=1, 0 for one seed), min and max; and both plot the mean with
a ±1 std band.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from zeroshot.files import write_atomic


@dataclass
class Summary:
    """One point of a curve: the accuracy at `k` over its seeds."""

    k: int
    per_seed: dict[int, float] = field(default_factory=dict)
    mean: float = 0.0
    std: float = 0.0  # sample standard deviation over seeds (ddof=1); 0 with one seed
    min: float = 0.0
    max: float = 0.0

    @property
    def n(self) -> int:
        return len(self.per_seed)


def summarize(k: int, per_seed: Mapping[int, float]) -> Summary:
    """Mean, sample std, min and max of the per-seed accuracies at `k` (NaN when no seed finished)."""
    if not per_seed:
        return Summary(k, {}, *(float("nan"),) * 4)
    values = np.array(list(per_seed.values()), dtype=np.float64)
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return Summary(k, dict(per_seed), float(values.mean()), std, float(values.min()), float(values.max()))


class Checkpoint:
    """A JSON file keeping every finished (K, seed) run, so that an interrupted experiment started again
    with the same `settings` skips them. Written whole to a temporary file first: never half-written."""

    def __init__(self, path: str | Path | None, settings: dict) -> None:
        self.path = None if path is None else Path(path)
        self.settings = settings
        self.done: dict[str, dict] = self._load()

    def _load(self) -> dict[str, dict]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {}  # unreadable: start again (it is rewritten after the first run)
        return dict(data.get("runs", {})) if data.get("settings") == self.settings else {}

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps({"settings": self.settings, "runs": self.done}, indent=1))


@dataclass
class Grid:
    """What `run_grid` measured: per series the summary at each K, every run's own record, and the runs
    a deadline left out (as "K:seed")."""

    series: dict[str, list[Summary]]
    runs: dict[str, dict]
    missing: list[str]


Measure = Callable[[int, int], Mapping]


def grid_runs(shots: Sequence[int], seeds: Sequence[int], once_at_zero: bool = True) -> list[tuple[int, int]]:
    """The (K, seed) runs in seed-major order, so an interrupted experiment has whole curves for its first
    seeds. K=0 has no randomness: with `once_at_zero` it runs for the first seed only."""
    return [(k, seed) for seed in seeds for k in shots if k > 0 or not once_at_zero or seed == seeds[0]]


def run_grid(shots: Sequence[int], seeds: Sequence[int], measure: Measure, *, once_at_zero: bool = True,
             progress: bool = True, desc: str = "runs", checkpoint: Checkpoint | None = None,
             deadline: float | None = None) -> Grid:
    """Call `measure(k, seed)` for every run and summarise each series per K.

    `measure` returns a JSON-able record whose "accuracy" maps series names to accuracies (a series it
    has nothing for is left out); the rest of the record is kept in `Grid.runs`. Runs in `checkpoint`
    are not measured again, and each new one is saved as it finishes. After `deadline` (a `time.time()`
    value) no new run starts; they are listed in `Grid.missing`.
    """
    checkpoint = checkpoint or Checkpoint(None, {})
    missing: list[str] = []
    accuracy: dict[str, dict[int, dict[int, float]]] = {}
    for k, seed in tqdm(grid_runs(shots, seeds, once_at_zero), desc=desc, unit="run", disable=not progress):
        key = f"{k}:{seed}"
        if key not in checkpoint.done:
            if deadline is not None and time.time() > deadline:
                missing.append(key)
                continue
            checkpoint.done[key] = dict(measure(k, seed))
            checkpoint.save()
        for name, value in checkpoint.done[key]["accuracy"].items():
            accuracy.setdefault(name, {}).setdefault(k, {})[seed] = float(value)
    # A series has a point at each K it measured, and a NaN point where a deadline left every run out.
    skipped = {int(key.split(":")[0]) for key in missing}
    series = {name: [summarize(k, by_k.get(k, {})) for k in shots if k in by_k or k in skipped]
              for name, by_k in accuracy.items()}
    return Grid(series, dict(checkpoint.done), missing)


def format_table(series: Mapping[str, Sequence[Summary]], shots: Sequence[int],
                 names: Mapping[str, str] | None = None) -> str:
    """Accuracy per K as a Markdown table: mean ± std [min, max] over seeds, one row per series."""
    names = names or {}
    lines = ["| series | " + " | ".join(f"K={k}" for k in shots) + " |", "|---|" + "---|" * len(shots)]
    for name, points in series.items():
        by_k = {p.k: p for p in points}
        cells = [f"{p.mean:.1%} ± {p.std:.1%} [{p.min:.1%}, {p.max:.1%}]" if (p := by_k.get(k)) else "-"
                 for k in shots]
        lines.append(f"| {names.get(name, name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(series: Mapping[str, Sequence[Summary]], path: str | Path, *, shots: Sequence[int],
                title: str, xlabel: str, chance: float | None = None,
                levels: Mapping[str, float] | None = None, names: Mapping[str, str] | None = None) -> Path:
    """Accuracy against K: per series the mean with a ±1 std band; `levels` as horizontal lines (a
    method with no K, such as a zero-shot head); `chance` dashed. K is evenly spaced (0, 1, 2, 4, ...)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = names or {}
    position = {k: i for i, k in enumerate(shots)}
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, points in series.items():
        xs = [position[p.k] for p in points]
        mean = np.array([p.mean for p in points]) * 100
        std = np.array([p.std for p in points]) * 100
        ax.plot(xs, mean, marker="o", label=names.get(name, name))
        ax.fill_between(xs, mean - std, mean + std, alpha=0.2)
    for name, level in (levels or {}).items():
        ax.axhline(100 * level, color="grey", linestyle="--", label=f"{names.get(name, name)} ({level:.1%})")
    if chance is not None:
        ax.axhline(chance * 100, color="black", linestyle=":", linewidth=1, label="chance")
    ax.set_xticks(range(len(shots)), [str(k) for k in shots])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title + "\nmean ± 1 std over seeds", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
