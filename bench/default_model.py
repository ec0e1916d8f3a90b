"""The default LM, chosen by measurement on dev splits (issue 27): the decision table and its rule.

    python -m bench.default_model --step accuracy [--models ...]   # BBC dev + arithmetic dev (long at 1.5B)
    python -m bench.default_model --step speed [--models ...]      # seconds per article: a quiet machine
    python -m bench.default_model --step table                     # the table, from the JSONs the steps wrote

Candidates: the four catalogue models (`zeroshot models`). Data, dev splits only (the test splits are
never read):

- **BBC News dev** (`bench.common.bbc_dev_task`: 200 articles from the demonstration pool's side; the
  rest of the pool gives the demonstrations): plain and calibrated accuracy at K = 0 and 4 (3 seeds),
  and `--calibrate auto`'s pick, through `bench.calibrate_auto` (`calibrate-auto-<model>.json`);
- **two-digit addition dev** (`bench/tasks/arith-2d-add-dev.jsonl`, 300 questions, GPT-3's "2D+" task
  in its own "Q: What is 48 plus 76? A:" format; `bench.make_arithmetic_task`): exact match at K = 0
  and 4 (3 seeds), greedy, at most 8 new tokens (`arith-dev-<model>.json`);
- **speed**: 24 dev articles at K = 0 and K = 4 (one seed, calibrated), llama.cpp on 2 threads, wall
  and CPU seconds per article, the load average beside them (`default-model-speed-<model>.json`).

Accuracy runs pin llama.cpp to one thread, so two of them can share a 2-core machine; accuracy does not
depend on the thread count, and speed is measured on its own.

The rule, fixed before the table was read:

1. a default must declare a licence (the catalogue's `licence` is not "unknown"): users are shown it;
2. the demo must stay well under a minute after set-up: 48 article scorings (24 articles, zero-shot and
   5-shot) at most 30 s, so at most 0.6 s per article at K = 4 on 2 threads;
3. among those, the highest dev quality: the mean of BBC dev accuracy at K = 4 (the scoring `auto`
   picks) and arithmetic dev exact match at K = 4; within 2 points, the cheaper (CPU seconds/article).

Writes `bench/results/default-model.json` (the table and the winner) and prints the table in Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from bench.common import bbc_dev_task, lscpu_model, model_path

RESULTS = Path("bench/results")
ARITH_DEV = Path(__file__).resolve().parent / "tasks" / "arith-2d-add-dev.jsonl"
CANDIDATES = ("smollm2-135m", "gemma-3-270m", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")
SPEED_ARTICLES = 24
DEMO_BUDGET_S_PER_ARTICLE = 0.6
TIE_POINTS = 0.02


def _slug(name: str) -> str:
    from bench.calibrate_auto import _slug as slug

    return slug(name)


def _lm_slug(name: str) -> str:
    """The slug of the file name `load_lm` reports for catalogue model `name` (names the JSONs)."""
    from zeroshot.models.catalogue import get

    return _slug(get(name).filename)


def accuracy(name: str, out_dir: Path) -> None:
    """BBC dev through `bench.calibrate_auto` (K = 0, 4; 3 seeds; one thread) and the arithmetic dev task."""
    from bench import calibrate_auto

    from zeroshot.eval.runs import EvalConfig, evaluate
    from zeroshot.eval.tasks import load_task
    from zeroshot.models.loader import load_lm

    bbc = out_dir / f"calibrate-auto-{_lm_slug(name)}.json"
    if not bbc.exists():
        calibrate_auto.main(
            [
                "--models",
                name,
                "--shots",
                "0,4",
                "--seeds",
                "3",
                "--threads",
                "1",
                "-q",
                "--output-dir",
                str(out_dir),
            ]
        )
    arith = out_dir / f"arith-dev-{_lm_slug(name)}.json"
    if arith.exists():
        return
    if not ARITH_DEV.exists():
        sys.exit(f"{ARITH_DEV} is missing: run `python -m bench.make_arithmetic_task` first")
    task = load_task(ARITH_DEV)
    lm = load_lm(model_path(name), n_threads=1)
    config = EvalConfig(task, shots="0,4", seeds=3, max_new_tokens=8)
    load, started, cpu = os.getloadavg(), time.perf_counter(), time.process_time()
    report = evaluate(lm, config, progress=False)
    meta = {
        "model": lm.name,
        "task": task.name,
        "threads": 1,
        "cpu": lscpu_model(),
        "load_average_before": load,
        "load_average_after": os.getloadavg(),
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
    }
    arith.write_text(
        json.dumps({"meta": meta, "report": report.to_dict()}, indent=1) + "\n", encoding="utf-8"
    )
    print(f"{name}: wrote {arith} ({meta['seconds']:.0f} s)", flush=True)


def speed(name: str, out_dir: Path) -> dict:
    """Seconds per dev article at K = 0 and K = 4 on 2 llama.cpp threads, wall and CPU."""
    from zeroshot.eval.runs import EvalConfig, evaluate
    from zeroshot.models.loader import load_lm

    task = bbc_dev_task()
    before = os.getloadavg()
    started = time.perf_counter()
    lm = load_lm(model_path(name), n_threads=2)
    row: dict = {
        "model": name,
        "load_seconds": time.perf_counter() - started,
        "threads": 2,
        "articles": SPEED_ARTICLES,
        "cpu": lscpu_model(),
        "load_average_before": before,
    }
    for k in (0, 4):
        config = EvalConfig(task, shots=str(k), seeds=1, limit=SPEED_ARTICLES, calibrate="on")
        wall, cpu = time.perf_counter(), time.process_time()
        evaluate(lm, config, progress=False)
        row[f"wall_s_per_article_k{k}"] = (time.perf_counter() - wall) / SPEED_ARTICLES
        row[f"cpu_s_per_article_k{k}"] = (time.process_time() - cpu) / SPEED_ARTICLES
    row["load_average_after"] = os.getloadavg()
    row["timing"] = "quiet" if max(before[0], row["load_average_after"][0]) <= 2 else "draft: load above 2"
    path = out_dir / f"default-model-speed-{_lm_slug(name)}.json"
    path.write_text(json.dumps(row, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(row), flush=True)
    return row


def _point(report: dict, series: str, k: int) -> dict:
    i = report["shots"].index(k)
    point = report["series"][series][i]
    return {"mean": point["mean"], "std": point["std"]}


def table(names: list[str], out_dir: Path) -> dict:
    """The decision table from the JSONs, and the winner by the rule in this module's docstring."""
    from zeroshot.models.catalogue import get

    rows = []
    for name in names:
        entry, slug = get(name), _lm_slug(name)
        bbc = json.loads((out_dir / f"calibrate-auto-{slug}.json").read_text(encoding="utf-8"))
        arith_file = out_dir / f"arith-dev-{slug}.json"
        # A model over the demo budget cannot win, so its long arithmetic run may be skipped.
        arith = json.loads(arith_file.read_text(encoding="utf-8")) if arith_file.exists() else None
        speed_file = out_dir / f"default-model-speed-{slug}.json"
        fast = json.loads(speed_file.read_text(encoding="utf-8")) if speed_file.exists() else {}
        series = next(iter(arith["report"]["series"])) if arith else None
        picks = {row["k"]: row["choice"]["choice"] for row in bbc["per_k"]}
        row = {
            "model": name,
            "parameters": entry.parameters,
            "size_bytes": entry.size,
            "licence": entry.licence,
            "bbc_dev": {
                f"k{k}": {way: _point(bbc["report"], way, k) for way in ("plain", "calibrated", "auto")}
                for k in (0, 4)
            },
            "auto_pick": {f"k{k}": picks[k] for k in (0, 4)},
            "auto_picked_better_runs": [bbc["picked_better_runs"], bbc["n_runs"]],
            "arith_dev": {f"k{k}": _point(arith["report"], series, k) for k in (0, 4)} if arith else None,
            "arith_metric": series,
            "speed": fast,
        }
        row["quality"] = (
            (row["bbc_dev"]["k4"]["auto"]["mean"] + row["arith_dev"]["k4"]["mean"]) / 2 if arith else None
        )
        row["eligible"] = {
            "licence": entry.licence != "unknown",
            "demo_budget": bool(fast) and fast["wall_s_per_article_k4"] <= DEMO_BUDGET_S_PER_ARTICLE,
            "measured": arith is not None,
        }
        rows.append(row)
    eligible = [r for r in rows if all(r["eligible"].values())]
    winner = None
    if eligible:
        best = max(r["quality"] for r in eligible)  # eligible rows are measured: quality is set
        close = [r for r in eligible if best - r["quality"] <= TIE_POINTS]
        winner = min(close, key=lambda r: r["speed"]["cpu_s_per_article_k4"])["model"]
    return {
        "rule": __doc__.split("The rule, fixed before the table was read:")[1].split("Writes")[0].strip(),
        "rows": rows,
        "winner": winner,
    }


def markdown(result: dict) -> str:
    def pct(point: dict) -> str:
        return f"{point['mean']:.1%} ± {point['std']:.1%}"

    head = (
        "| model | size | licence | BBC K=0 plain | BBC K=0 cal. | BBC K=4 plain | BBC K=4 cal. | auto picks "
        "(K=0/4) | 2D+ K=0 | 2D+ K=4 | quality | s/article K=4 (2 thr.) | CPU s/article K=4 | eligible |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in result["rows"]:
        b, a, s = r["bbc_dev"], r["arith_dev"], r["speed"]
        wall = f"{s['wall_s_per_article_k4']:.2f}" if s else "-"
        cpu = f"{s['cpu_s_per_article_k4']:.2f}" if s else "-"
        quality = f"{r['quality']:.1%}" if r["quality"] is not None else "-"
        ok = (
            "yes"
            if all(r["eligible"].values())
            else "no: " + ", ".join(k for k, v in r["eligible"].items() if not v)
        )
        lines.append(
            f"| {r['model']} | {r['size_bytes'] / 1e6:.0f} MB | {r['licence']} | {pct(b['k0']['plain'])} | "
            f"{pct(b['k0']['calibrated'])} | {pct(b['k4']['plain'])} | {pct(b['k4']['calibrated'])} | "
            f"{r['auto_pick']['k0']}/{r['auto_pick']['k4']} | {pct(a['k0']) if a else 'not run'} | "
            f"{pct(a['k4']) if a else 'not run'} | {quality} | "
            f"{wall} | {cpu} | {ok} |"
        )
    lines.append(f"\nWinner by the rule: **{result['winner']}**")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", choices=("accuracy", "speed", "table", "all"), default="all")
    parser.add_argument("--models", default=",".join(CANDIDATES))
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    names = args.models.split(",")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    if args.step in ("accuracy", "all"):
        for name in names:
            accuracy(name, args.output_dir)
    if args.step in ("speed", "all"):
        for name in names:
            speed(name, args.output_dir)
    if args.step in ("table", "all"):
        result = table(names, args.output_dir)
        (args.output_dir / "default-model.json").write_text(
            json.dumps(result, indent=1) + "\n", encoding="utf-8"
        )
        print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
