"""`--calibrate auto` on the BBC News dev split: plain, calibrated and auto accuracy per model and K, and
how often auto picked the better of the two (issue 27).

    python -m bench.calibrate_auto [--models default,qwen2.5-1.5b,PATH.gguf] [--shots 1,4,8] [--seeds 3]
        [--limit 200] [--examples 50] [--backend auto] [--threads N]

Data: `bench.common.bbc_dev_task`, the dev split every bench that chooses options uses: 200 articles
drawn (seed 0) from the *pool side* of the built-in task are evaluated (the first `--limit` of them, a
topic-mixed subset), and the rest of the pool (1,581 articles) is where demonstrations and auto's
leave-one-out are drawn from. The 444 test articles are never read.

Each model runs `zeroshot.eval.runs.evaluate` with `calibrate="auto"`, as `zeroshot eval-text
--calibrate auto` does: per K and seed, plain and calibrated accuracy from the same model calls, and
per K auto's choice (leave-one-out on at most `--examples` pool examples, seed = the first seed). Auto
"picked the better one" in a (K, seed) run when its choice scored at least as well on the dev articles
as the other way; per K, the same on the mean over seeds. Writes
`bench/results/calibrate-auto-<model>.json` per model and prints one table for all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

from bench.common import bbc_dev_task, lscpu_model, model_path

SERIES = ("plain", "calibrated", "auto")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name.removesuffix(".gguf"))[:80] or "model"


def _better(plain: float, calibrated: float) -> str:
    return "calibrated" if calibrated > plain else "plain" if plain > calibrated else "tie"


def summarise(report) -> dict:
    """Per K: the three accuracies (mean over seeds), auto's choice and whether it was the better one,
    per seed and on the mean."""
    per_k, runs = [], []
    for i, k in enumerate(report.shots):
        choice = report.calibration[k]
        pick = choice["choice"]
        points = {name: report.series[name][i] for name in SERIES}
        for seed in points["plain"].per_seed:
            plain, calibrated = points["plain"].per_seed[seed], points["calibrated"].per_seed[seed]
            better = _better(plain, calibrated)
            runs.append({"k": k, "seed": seed, "plain": plain, "calibrated": calibrated, "pick": pick,
                         "better": better, "picked_better": better in (pick, "tie")})
        mine = [run for run in runs if run["k"] == k]
        better_mean = _better(points["plain"].mean, points["calibrated"].mean)
        per_k.append({
            "k": k, **{name: {"mean": points[name].mean, "std": points[name].std,
                              "per_seed": points[name].per_seed} for name in SERIES},
            "choice": choice, "better_on_mean": better_mean,
            "picked_better_on_mean": better_mean in (pick, "tie"),
            "picked_better_runs": sum(run["picked_better"] for run in mine), "runs": len(mine),
        })
    return {"per_k": per_k, "runs": runs,
            "picked_better_runs": sum(run["picked_better"] for run in runs), "n_runs": len(runs),
            "picked_better_k": sum(row["picked_better_on_mean"] for row in per_k), "n_k": len(per_k)}


def format_rows(label: str, summary: dict) -> list[str]:
    rows = []
    for row in summary["per_k"]:
        choice = row["choice"]
        loo = (f"{choice['choice']} ({choice['correct']['plain']}/{choice['correct']['calibrated']} of "
               f"{choice['n_examples']}, {choice['seconds']:.0f} s)")
        cells = "".join(f"{row[name]['mean']:>8.1%} ±{row[name]['std']:>5.1%}" for name in SERIES)
        on_mean = "yes" if row["picked_better_on_mean"] else "no"
        rows.append(f"{label[:30]:<31}{row['k']:>3}{cells}  {loo:<34}{row['better_on_mean']:<11}"
                    f"{row['picked_better_runs']}/{row['runs']} runs, mean {on_mean}")
    return rows


HEADER = (f"{'model':<31}{'K':>3}" + "".join(f"{name:>15}" for name in SERIES)
          + f"  {'auto picked (LOO plain/cal of n)':<34}{'better':<11}auto picked the better")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="default", help="comma-separated: default, ladder names or paths")
    parser.add_argument("--shots", default="1,4,8")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=200, help="dev articles evaluated (at most 200)")
    parser.add_argument("--examples", type=int, default=None,
                        help="pool examples auto's leave-one-out classifies (default: the library's)")
    parser.add_argument("--max-chars", type=int, default=None)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: its own)")
    parser.add_argument("--output-dir", type=Path, default=Path("bench/results"))
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)

    from zeroshot.eval.runs import EvalConfig, evaluate
    from zeroshot.models.loader import load_lm

    task = bbc_dev_task(args.max_chars)
    extra = {} if args.examples is None else {"calibrate_examples": args.examples}
    config = EvalConfig(task, shots=args.shots, seeds=args.seeds, limit=args.limit, calibrate="auto", **extra)
    options = {} if args.threads is None else {"n_threads": args.threads}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    lines = [HEADER]
    for name in args.models.split(","):
        load_before = os.getloadavg()
        started = time.perf_counter()
        lm = load_lm(model_path(name), backend=args.backend, **options)
        report = evaluate(lm, config, progress=not args.quiet)
        summary = summarise(report)
        busy = load_before[0] > (os.cpu_count() or 1)
        meta = {"model": lm.name, "backend": lm.backend, "n_params": lm.n_params, "task": task.name,
                "dev_docs": report.n_docs, "pool": len(task.pool), "shots": report.shots,
                "seeds": report.seeds, "calibrate_examples": config.calibrate_examples,
                "normalization": config.normalization, "max_chars": args.max_chars, "threads": args.threads,
                "cpu": lscpu_model(), "cpus": os.cpu_count(), "load_average_before": load_before,
                "load_average_after": os.getloadavg(), "seconds": time.perf_counter() - started,
                "timing": "draft: a shared, busy machine" if busy else "a quiet machine"}
        out = args.output_dir / f"calibrate-auto-{_slug(lm.name)}.json"
        out.write_text(json.dumps({"meta": meta, **summary, "report": report.to_dict()}, indent=1) + "\n",
                       encoding="utf-8")
        label = Path(lm.name).name.removesuffix(".gguf")
        lines += format_rows(label, summary)
        print(f"{label}: auto picked the better way in {summary['picked_better_runs']}/{summary['n_runs']} "
              f"(K, seed) runs and {summary['picked_better_k']}/{summary['n_k']} K on the mean; "
              f"{meta['seconds']:.0f} s, load average {load_before[0]:.1f} -> "
              f"{meta['load_average_after'][0]:.1f}; "
              f"wrote {out}", flush=True)
        del lm
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
