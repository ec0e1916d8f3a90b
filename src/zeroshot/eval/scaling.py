"""One task, several models: the GPT-3 scaling figures (accuracy against K per model, against size per K).

Every model answers the same documents with the same seeds, hence the same demonstrations (they are
drawn from the task's pool by seed, not by model). Models are loaded one at a time and released
before the next. After each model the combined JSON and both figures are rewritten, and inside a
model every finished (K, seed) run is kept in a checkpoint under `<output-dir>/runs/`, so an
interrupted run started again with the same options keeps everything it had finished.
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from zeroshot.eval.runs import EvalReport, SampleLog, evaluate
from zeroshot.eval.tasks import Task
from zeroshot.files import make_output_dir, write_atomic
from zeroshot.models.lm import LanguageModel


@dataclass
class ScalingReport:
    """One `EvalReport` per model, in the order given."""

    task: str
    reports: list[EvalReport] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"task": self.task, "models": [r.to_dict() for r in self.reports]}


def model_label(report: EvalReport) -> str:
    """Short name for plots: the file or folder name, with its parameter count."""
    name = Path(report.model).name.removesuffix(".gguf")
    return f"{name} ({report.n_params / 1e6:.0f}M)" if report.n_params else name


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name.removesuffix(".gguf"))[:80] or "model"


def evaluate_models(
    models: Sequence[str | None],
    task: Task,
    output_dir: str | Path,
    load: Callable[[str | None], LanguageModel],
    log_samples: bool = False,
    on_model: Callable[[EvalReport], None] | None = None,
    **options,
) -> ScalingReport:
    """Evaluate every model in `models` (loaded by `load`) on `task` with the same `options`.

    `options` go to `evaluate` (shots, seeds, limit, normalization, calibrate, ...). Writes
    `<task>-scaling.json`, `<task>-accuracy-vs-k.png` and `<task>-accuracy-vs-params.png` under
    `output_dir` after each model, the per-model checkpoints under `runs/` and, with `log_samples`,
    one JSONL per model under `samples/`.
    """
    out = make_output_dir(output_dir)
    scaling = ScalingReport(task.name)
    for name in models:
        lm = load(name)
        slug = _slug(lm.name)
        log = SampleLog(out / "samples" / f"{task.name}-{slug}.jsonl", model=lm.name) if log_samples else None
        try:
            report = evaluate(lm, task, sample_log=log, checkpoint=out / "runs" / f"{task.name}-{slug}.json",
                              **options)
        finally:
            if log is not None:
                log.close()
        del lm
        gc.collect()  # release the model before the next one loads
        scaling.reports.append(report)
        save_scaling(scaling, out)
        if on_model is not None:
            on_model(report)
    return scaling


def scaling_paths(task: str, output_dir: str | Path) -> tuple[Path, Path, Path]:
    out = Path(output_dir)
    return (out / f"{task}-scaling.json", out / f"{task}-accuracy-vs-k.png",
            out / f"{task}-accuracy-vs-params.png")


def save_scaling(scaling: ScalingReport, output_dir: str | Path) -> tuple[Path, Path, Path]:
    """Write the combined JSON and both figures; returns their paths."""
    json_path, k_path, params_path = scaling_paths(scaling.task, output_dir)
    write_atomic(json_path, json.dumps(scaling.to_dict(), indent=2) + "\n")
    plot_accuracy_vs_k(scaling, k_path)
    plot_accuracy_vs_params(scaling, params_path)
    return json_path, k_path, params_path


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_STYLES = {0: "-", 1: "--", 2: ":", 3: "-."}


def _save(plt, fig, ax, path: str | Path, xlabel: str) -> None:
    """What both scaling figures end with: axis labels, grid, legend, the PNG."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_accuracy_vs_k(scaling: ScalingReport, path: str | Path) -> None:
    """Accuracy against K, one colour per model, one line style per series (plain, calibrated, metric)."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, report in enumerate(scaling.reports):
        for j, (series, points) in enumerate(report.series.items()):
            ks = [p.k for p in points]
            ax.errorbar(ks, [p.mean * 100 for p in points], yerr=[p.std * 100 for p in points], capsize=3,
                        marker="o", linestyle=_STYLES[j % 4], color=colours[i % len(colours)],
                        label=f"{model_label(report)}, {series}")
    first = scaling.reports[0] if scaling.reports else None
    if first is not None and first.chance is not None:
        ax.axhline(first.chance * 100, color="grey", linestyle="--", linewidth=1, label="chance")
    if first is not None:
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xticks(first.shots)
        ax.set_xticklabels([str(k) for k in first.shots])
        ax.set_title(f"{scaling.task}: {first.n_docs} documents, {len(first.seeds)} seeds "
                     "(mean ± std over seeds)", fontsize=9)
    _save(plt, fig, ax, path, "number of demonstrations in the prompt (K)")


def plot_accuracy_vs_params(scaling: ScalingReport, path: str | Path) -> None:
    """Accuracy against parameter count (log axis), one line per K, as in the GPT-3 paper's figures."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    reports = sorted((r for r in scaling.reports if r.n_params), key=lambda r: r.n_params)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    if reports:
        shots = reports[0].shots
        for j, series in enumerate(reports[0].series):
            for i, k in enumerate(shots):
                means = [r.series[series][i].mean * 100 if series in r.series else float("nan")
                         for r in reports]
                ax.plot([r.n_params for r in reports], means, marker="o", linestyle=_STYLES[j % 4],
                        color=colours[i % len(colours)], label=f"K={k}, {series}")
        if reports[0].chance is not None:
            ax.axhline(reports[0].chance * 100, color="grey", linestyle="--", linewidth=1, label="chance")
        ax.set_xscale("log")
        ax.set_xticks([r.n_params for r in reports])
        ax.set_xticklabels([f"{r.n_params / 1e6:.0f}M" for r in reports])
        ax.minorticks_off()
        ax.set_title(f"{scaling.task}: accuracy against model size (mean over "
                     f"{len(reports[0].seeds)} seeds)", fontsize=9)
    _save(plt, fig, ax, path, "parameters")


def format_scaling_table(scaling: ScalingReport) -> str:
    """Mean accuracy (± std over seeds) per model, series and K, as aligned text."""
    if not scaling.reports:
        return "(no model finished)"
    shots = scaling.reports[0].shots
    lines = [f"{'model':<44}{'series':<12}" + "".join(f"{'K=' + str(k):>16}" for k in shots)]
    for report in scaling.reports:
        for series, points in report.series.items():
            cells = "".join(f"{p.mean:>8.1%} ±{p.std:>5.1%}" for p in points)
            lines.append(f"{model_label(report)[:43]:<44}{series:<12}{cells}")
    return "\n".join(lines)

