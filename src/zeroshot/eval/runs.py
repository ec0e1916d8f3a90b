"""Accuracy against the number of demonstrations K, over seeds: the GPT-3 "learning at test time" curve.

For every K and seed, K demonstrations are drawn from the task's pool (seeded) and every evaluation
document is answered. K=0 has no randomness, so it runs once. Likelihood tasks measure the plain and
the calibrated accuracy from the same model calls (calibration only adds a content-free query per
prompt prefix).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from zeroshot.errors import UserError
from zeroshot.eval.tasks import Task
from zeroshot.models.lm import GenerationConfig, LanguageModel
from zeroshot.text.classify import MultipleChoiceScorer, ZeroShotTextClassifier
from zeroshot.text.prompts import PromptBuilder, sample_demonstrations
from zeroshot.text.scoring import check_normalization


@dataclass
class SeriesPoint:
    """Accuracy at one K over its seeds."""

    k: int
    per_seed: dict[int, float]
    mean: float
    std: float  # sample standard deviation over seeds (0 with one seed)
    min: float
    max: float


@dataclass
class EvalReport:
    """Everything one `evaluate` call measured, ready for JSON."""

    task: str
    kind: str
    model: str
    backend: str
    n_docs: int
    n_pool: int
    shots: list[int]
    seeds: list[int]
    normalization: str
    balanced: bool
    chance: float | None
    series: dict[str, list[SeriesPoint]] = field(default_factory=dict)  # "plain", "calibrated"
    dropped_demonstrations: dict[int, int] = field(default_factory=dict)  # K -> prompts that dropped some
    seconds: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


def _summarize(k: int, per_seed: dict[int, float]) -> SeriesPoint:
    values = np.array(list(per_seed.values()))
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return SeriesPoint(k, per_seed, float(values.mean()), std, float(values.min()), float(values.max()))


def evaluate(
    lm: LanguageModel,
    task: Task,
    shots: Sequence[int] = (0, 1, 2, 4, 8),
    seeds: int = 5,
    limit: int | None = None,
    normalization: str = "sum",
    calibrate: bool = False,
    balanced: bool = False,
    first_seed: int = 0,
    progress: bool = True,
    soft_prompt=None,
) -> EvalReport:
    """Accuracy of `lm` on `task` for each K in `shots` over `seeds` seeds: first_seed, first_seed+1, ...

    `soft_prompt` (classification only) is passed to `ZeroShotTextClassifier`.
    """
    shots = sorted(set(shots))
    task.check_shots(shots)
    check_normalization(normalization)
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    if soft_prompt is not None and task.kind != "classification":
        raise UserError(f"a soft prompt is for classification tasks; {task.name} is {task.kind}")
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}")
    docs = task.docs[:limit] if limit else task.docs
    seed_list = list(range(first_seed, first_seed + seeds))
    runs = [(k, s) for k in shots for s in (seed_list[:1] if k == 0 else seed_list)]
    calibrate = calibrate and task.kind != "free_form"
    series_names = ["plain", "calibrated"] if calibrate else ["plain"]
    accuracy: dict[str, dict[int, dict[int, float]]] = {name: {k: {} for k in shots} for name in series_names}
    dropped: dict[int, int] = {k: 0 for k in shots}
    started = time.perf_counter()
    bar = tqdm(total=len(runs) * len(docs), desc=f"{task.name}", unit="doc", disable=not progress)
    for k, seed in runs:
        bar.set_postfix_str(f"K={k} seed={seed}")
        demos = sample_demonstrations(task.demonstration_pool(), k, seed, balanced)
        correct = {name: 0 for name in series_names}
        if task.kind == "free_form":
            correct["plain"], short = _run_free_form(lm, task, demos, docs, bar)
        else:
            if task.kind == "classification":
                model = ZeroShotTextClassifier(
                    lm, task.labels, task.description, demos, task.template, normalization, calibrate,
                    soft_prompt=soft_prompt,
                ).fit()
            else:
                model = MultipleChoiceScorer(
                    lm, task.description, demos, task.template, normalization, calibrate
                ).fit()
            short = 0
            for doc in docs:
                result = model.scorer_.score(doc.query, list(doc.choices))
                short += result.n_demonstrations < k
                for name in series_names:
                    best = result.choices[int(np.argmax(result.scores(normalization, name == "calibrated")))]
                    correct[name] += best == doc.target
                bar.update(1)
        dropped[k] = max(dropped[k], short)
        for name in series_names:
            accuracy[name][k][seed] = correct[name] / len(docs)
    bar.close()
    chance = None
    if task.kind != "free_form":
        chance = float(np.mean([1 / len(d.choices) for d in docs]))
    report = EvalReport(
        task.name,
        task.kind,
        lm.name,
        lm.backend,
        len(docs),
        len(task.pool),
        shots,
        seed_list,
        normalization,
        balanced,
        chance,
        dropped_demonstrations=dropped,
    )
    report.series = {name: [_summarize(k, accuracy[name][k]) for k in shots] for name in series_names}
    report.seconds = time.perf_counter() - started
    return report


def _run_free_form(lm: LanguageModel, task: Task, demos, docs, bar) -> tuple[int, int]:
    """Exact-match accuracy of greedy generations (stopping at the end of the line)."""
    builder = PromptBuilder(lm, task.description, demos, task.template)
    config = GenerationConfig(max_new_tokens=32, temperature=0.0, stop=["\n"])
    correct = short = 0
    for doc in docs:
        prompt = builder.build(doc.query, longest_answer_tokens=config.max_new_tokens)
        short += prompt.n_demonstrations < len(demos)
        text = builder.prefix_text(prompt.n_demonstrations) + task.template.format_query(doc.query)
        correct += lm.generate(text, config).strip() == doc.target.strip()
        bar.update(1)
    return correct, short


def format_table(report: EvalReport) -> str:
    """Accuracy per K as a plain-text table (mean ± std [min, max] over seeds)."""
    names = list(report.series)
    header = f"{'K':>3}  {'seeds':>5}  " + "  ".join(f"{name:>28}" for name in names)
    lines = [header]
    for i, k in enumerate(report.shots):
        cells = []
        for name in names:
            p = report.series[name][i]
            cells.append(f"{p.mean:6.1%} ± {p.std:5.1%} [{p.min:5.1%}, {p.max:5.1%}]")
        lines.append(
            f"{k:>3}  {len(report.series[names[0]][i].per_seed):>5}  " + "  ".join(f"{c:>28}" for c in cells)
        )
    if report.chance is not None:
        lines.append(f"chance: {report.chance:.1%}")
    dropped = {k: n for k, n in report.dropped_demonstrations.items() if n}
    if dropped:
        lines.append(
            "prompts that dropped demonstrations to fit the context (worst seed): "
            + ", ".join(f"K={k}: {n}" for k, n in dropped.items())
        )
    return "\n".join(lines)


def save_report(report: EvalReport, out_dir: str | Path) -> tuple[Path, Path]:
    """Write `<task>.json` and `<task>.png` (accuracy against K) under `out_dir`; returns both paths."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the output folder {out}: {exc.strerror}") from None
    stem = f"{report.task}-{report.normalization}"
    json_path, png_path = out / f"{stem}.json", out / f"{stem}.png"
    json_path.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    plot_report(report, png_path)
    return json_path, png_path


def plot_report(report: EvalReport, path: str | Path) -> None:
    """Accuracy against K (symmetric-log axis so K=0 shows), mean with min-max band per series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, points in report.series.items():
        ks = [p.k for p in points]
        mean = np.array([p.mean for p in points])
        ax.plot(ks, mean * 100, marker="o", label=name)
        ax.fill_between(ks, [p.min * 100 for p in points], [p.max * 100 for p in points], alpha=0.2)
    if report.chance is not None:
        ax.axhline(report.chance * 100, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xticks(report.shots)
    ax.set_xticklabels([str(k) for k in report.shots])
    ax.set_xlabel("number of demonstrations in the prompt (K)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(
        f"{report.task}: {report.n_docs} docs, {len(report.seeds)} seeds, {report.normalization}\n"
        f"{Path(report.model).name} ({report.backend})",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
