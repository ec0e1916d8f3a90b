"""Markdown tables from the checkpoints and sample logs `bench.ladder_scaling` leaves behind.

    python -m bench.ladder_report DIR [DIR ...] [--subset N --task bbc-news --max-chars 100]

For each DIR, every `runs/<task>-<model>.json` checkpoint becomes rows: model, series, and per K the
mean ± std over the seeds that finished (with their count). With `--subset N`, accuracy on the first N
evaluation documents at seed 0 is recomputed from the sample logs of every DIR, so runs made with
different `--limit` values compare on the same documents.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from zeroshot.eval.tasks import load_task


def _cell(values: list[float]) -> str:
    if not values:
        return "—"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.1%} (1)"
    return f"{mean:.1%} ± {statistics.stdev(values):.1%} ({len(values)})"


def checkpoint_table(folder: Path) -> str:
    lines = []
    for path in sorted((folder / "runs").glob("*.json")):
        data = json.loads(path.read_text())
        settings, runs = data["settings"], data["runs"]
        shots = settings["shots"]
        if not lines:
            lines += ["| model | docs | series | " + " | ".join(f"K={k}" for k in shots) + " |",
                      "|---|---|---|" + "---|" * len(shots)]
        series = sorted({s for r in runs.values() for s in r["accuracy"]}, key=["plain", "calibrated",
                        "exact_match", "contains"].index)
        for name in series:
            per_k = defaultdict(list)
            for key, result in runs.items():
                per_k[int(key.split(":")[0])].append(result["accuracy"][name])
            model = Path(settings["model"]).name.removesuffix(".gguf")
            lines.append(f"| {model} | {settings['n_docs']} | {name} | "
                         + " | ".join(_cell(per_k[k]) for k in shots) + " |")
    return "\n".join(lines)


def subset_hits(folders: list[Path], task_name: str, max_chars: int, n: int) -> dict:
    """{(model, K, series): [correct, ...]} on the first `n` evaluation documents, seed 0, from the logs."""
    wanted = {d.line for d in load_task(task_name, max_chars=max_chars).docs[:n]}
    hits: dict[tuple[str, int, str], list[bool]] = defaultdict(list)
    seen: set[tuple] = set()
    for folder in folders:
        for path in sorted((folder / "samples").glob(f"{task_name}-*.jsonl")):
            for line in path.read_text().splitlines():
                record = json.loads(line)
                model = Path(record["model"]).name.removesuffix(".gguf")
                key = (model, record["k"], record["seed"], record["doc_id"])
                if record.get("task") != task_name or record["seed"] != 0 or record["doc_id"] not in wanted \
                        or key in seen:
                    continue  # the same document may be in the logs of two runs (a resumed or a subset run)
                seen.add(key)
                for series, ok in record["correct"].items():
                    hits[(model, record["k"], series)].append(ok)
    return hits


def subset_table(hits: dict, n: int) -> str:
    models = sorted({m for m, _, _ in hits}, key=lambda m: [s in m for s in ("1.5b", "0.5b", "gemma")])
    shots = sorted({k for _, k, _ in hits})
    series_all = sorted({s for _, _, s in hits})
    lines = [f"| model (first {n} docs, seed 0) | series | " + " | ".join(f"K={k}" for k in shots) + " |",
             "|---|---|" + "---|" * len(shots)]
    for model in models:
        for series in series_all:
            cells = []
            for k in shots:
                v = hits.get((model, k, series), [])
                cells.append(f"{sum(v) / len(v):.1%} ({len(v)})" if len(v) == n else
                             (f"{sum(v) / len(v):.0%} of the first {len(v)} only" if v else "—"))
            lines.append(f"| {model} | {series} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def subset_figures(hits: dict, n: int, task: str, folder: Path) -> None:
    """The two scaling figures for the subset (models with all n documents at a K only)."""
    from zeroshot.eval.runs import EvalReport, SeriesPoint
    from zeroshot.eval.scaling import ScalingReport, plot_accuracy_vs_k, plot_accuracy_vs_params
    from zeroshot.models.gguf_info import read_gguf_info
    from zeroshot.models.ladder import installed_ladder
    from zeroshot.models.lm import builtin_model_path

    paths = {p.name.removesuffix(".gguf"): p for p in [builtin_model_path(), *installed_ladder()]}
    shots = sorted({k for _, k, _ in hits})
    nan = float("nan")
    scaling = ScalingReport(f"{task}-first{n}")
    for model in sorted({m for m, _, _ in hits}, key=lambda m: read_gguf_info(paths[m]).n_params):
        series = {}
        for name in ("plain", "calibrated", "exact_match", "contains"):
            points = []
            for k in shots:
                v = hits.get((model, k, name), [])
                acc = sum(v) / n if len(v) == n else nan
                points.append(SeriesPoint(k, {0: acc} if len(v) == n else {}, acc, 0.0, acc, acc))
            if any(hits.get((model, k, name)) for k in shots):
                series[name] = points
        chance = 0.2 if "plain" in series else None
        scaling.reports.append(EvalReport(f"{task}-first{n}", "", str(paths[model]), "llama.cpp", n, 0, shots,
                                          [0], "sum", False, chance, series,
                                          n_params=read_gguf_info(paths[model]).n_params))
    folder.mkdir(parents=True, exist_ok=True)
    plot_accuracy_vs_k(scaling, folder / f"{scaling.task}-accuracy-vs-k.png")
    plot_accuracy_vs_params(scaling, folder / f"{scaling.task}-accuracy-vs-params.png")
    print(f"wrote {folder}/{scaling.task}-accuracy-vs-*.png")


def scaling_from_checkpoints(folder: Path) -> None:
    """`<task>-scaling.json` and both figures from the checkpoints alone (no model is loaded): what a
    resumed `eval-text --model ...` would write, for runs cut short by their deadline."""
    import numpy as np

    from zeroshot.eval.runs import EvalReport, SeriesPoint
    from zeroshot.eval.scaling import ScalingReport, save_scaling
    from zeroshot.models.gguf_info import read_gguf_info

    reports = []
    for path in sorted((folder / "runs").glob("*.json")):
        data = json.loads(path.read_text())
        settings, runs = data["settings"], data["runs"]
        names = list(next(iter(runs.values()))["accuracy"]) if runs else []
        series = {}
        for name in names:
            points = []
            for k in settings["shots"]:
                per_seed = {int(key.split(":")[1]): r["accuracy"][name] for key, r in runs.items()
                            if int(key.split(":")[0]) == k}
                v = np.array(list(per_seed.values()))
                if not len(v):
                    points.append(SeriesPoint(k, {}, *[float("nan")] * 4))
                    continue
                std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
                points.append(SeriesPoint(k, per_seed, float(v.mean()), std, float(v.min()), float(v.max())))
            series[name] = points
        chance = 0.2 if "plain" in series else None
        expected = [f"{k}:{s}" for s in settings["seeds"] for k in settings["shots"]
                    if k > 0 or s == settings["seeds"][0]]
        reports.append(EvalReport(settings["task"], "", settings["model"], "llama.cpp", settings["n_docs"], 0,
                                  settings["shots"], settings["seeds"], settings["normalization"],
                                  settings["balanced"], chance, series,
                                  n_params=read_gguf_info(settings["model"]).n_params if settings["model"]
                                  .endswith(".gguf") else None, chat_template=settings["chat"],
                                  missing_runs=[key for key in expected if key not in runs]))
    reports.sort(key=lambda r: r.n_params or 0)
    if reports:
        paths = save_scaling(ScalingReport(reports[0].task, reports), folder)
        print("wrote " + ", ".join(map(str, paths)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--subset", type=int)
    parser.add_argument("--task", default="bbc-news")
    parser.add_argument("--max-chars", type=int, default=100)
    parser.add_argument("--figures", action="store_true", help="scaling JSON + PNGs per folder")
    parser.add_argument("--subset-png", type=Path, help="folder for the subset's two figures")
    args = parser.parse_args(argv)
    for folder in args.folders:
        print(f"\n{folder}:\n")
        print(checkpoint_table(folder))
        if args.figures:
            scaling_from_checkpoints(folder)
    if args.subset:
        hits = subset_hits(args.folders, args.task, args.max_chars, args.subset)
        print()
        print(subset_table(hits, args.subset))
        if args.subset_png:
            subset_figures(hits, args.subset, args.task, args.subset_png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
