"""The price of portability: the portable llama.cpp build against the native one, side by side.

    python -m bench.llama_builds [--rounds 3] [--articles 20] [--tokens 128]

Needs both wheels built (`make setup-llama` and `make setup-llama-native` leave them in
.cache/llama-wheels/). Each wheel is unpacked into .cache/llama-builds/<name>/ and every measurement
runs in a fresh child process that imports that build (PYTHONPATH), alternating portable and native
round by round so that a noisy machine slows both alike. Measured per round, on the default GGUF:
- generation: 128 new tokens, greedy, end-of-text banned, after a 4-token warm-up (tokens/s);
- scoring: BBC News K=4 (seed 0) on the first N test articles with shared-prefix reuse (s/article).
Reports the median per build and the ratio native / portable; writes bench/results/llama_builds.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
WHEELS = ROOT / ".cache" / "llama-wheels"
BUILDS = ROOT / ".cache" / "llama-builds"

CHILD = r"""
import json, sys, time
from zeroshot.models.lm_llamacpp import LlamaCppLM
from zeroshot.models.lm import GenerationConfig, builtin_model_path
import llama_cpp
lm = LlamaCppLM(str(builtin_model_path()), n_ctx=4096)
lm.generate("Once upon a time", GenerationConfig(max_new_tokens=4, ignore_eos=True))
started = time.perf_counter()
lm.generate("Once upon a time", GenerationConfig(max_new_tokens=TOKENS, ignore_eos=True))
gen_s = time.perf_counter() - started
from zeroshot.eval.tasks import bbc_news_task
from zeroshot.text.classify import ZeroShotTextClassifier
from zeroshot.text.prompts import sample_demonstrations
task = bbc_news_task()
texts = [d.query for d in task.docs[:ARTICLES]]
demos = sample_demonstrations(task.demonstration_pool(), 4, 0)
clf = ZeroShotTextClassifier(lm, task.labels, task.description, demos, task.template, reuse_cache=True)
clf.fit()
clf.predict_proba(texts[:1])
started = time.perf_counter()
proba = clf.predict_proba(texts)
score_s = time.perf_counter() - started
print(json.dumps({"tokens_per_s": TOKENS / gen_s, "seconds_per_article": score_s / len(texts),
                  "predictions": proba.argmax(1).tolist(), "llama_cpp": llama_cpp.__file__}))
"""


def unpack(wheel: Path, name: str) -> Path:
    """The wheel's files in a folder of their own (importable with PYTHONPATH), unpacked once."""
    target = BUILDS / name
    stamp = target / ".wheel"
    if not (stamp.is_file() and stamp.read_text() == wheel.name):
        target.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(target)
        stamp.write_text(wheel.name)
    return target


def find_wheel(native: bool) -> Path:
    for args_file in sorted(WHEELS.glob("*/cmake-args.txt")):
        args = args_file.read_text().split()
        if ("-DGGML_NATIVE=ON" in args) == native:
            wheels = sorted(args_file.parent.glob("llama_cpp_python-*.whl"))
            if wheels:
                return wheels[-1]
    kind = "native" if native else "portable"
    sys.exit(f"no {kind} wheel in {WHEELS}: run `make setup-llama{'-native' if native else ''}` first")


def measure(build: Path, tokens: int, articles: int) -> dict:
    code = CHILD.replace("TOKENS", str(tokens)).replace("ARTICLES", str(articles))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(build), str(ROOT / "src")]))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--articles", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args(argv)
    builds = {name: unpack(find_wheel(name == "native"), name) for name in ("portable", "native")}
    runs: dict[str, list[dict]] = {name: [] for name in builds}
    for round_ in range(args.rounds):
        order = list(builds) if round_ % 2 == 0 else list(reversed(builds))
        for name in order:
            result = measure(builds[name], args.tokens, args.articles)
            print(f"round {round_ + 1} {name:<9} {result}", flush=True)
            runs[name].append(result)
    summary: dict = {"rounds": args.rounds, "articles": args.articles, "tokens": args.tokens,
                     "cpu": _cpu_name(), "builds": {}}
    for name, results in runs.items():
        good = [r for r in results if "error" not in r]
        summary["builds"][name] = {
            "wheel": (builds[name] / ".wheel").read_text(),
            "errors": [r["error"] for r in results if "error" in r],
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in good) if good else None,
            "seconds_per_article": (statistics.median(r["seconds_per_article"] for r in good)
                                    if good else None),
            "predictions": good[0]["predictions"] if good else None,
        }
    p, n = summary["builds"]["portable"], summary["builds"]["native"]
    if p["tokens_per_s"] and n["tokens_per_s"]:
        summary["native_over_portable_generation"] = n["tokens_per_s"] / p["tokens_per_s"]
        summary["native_over_portable_scoring"] = p["seconds_per_article"] / n["seconds_per_article"]
        summary["same_predictions"] = p["predictions"] == n["predictions"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "llama_builds.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\n{summary['cpu']}; median of {args.rounds} alternating rounds")
    print(f"{'build':<10}{'gen tokens/s':>14}{'BBC K=4 s/article':>20}")
    for name, row in summary["builds"].items():
        if row["tokens_per_s"]:
            print(f"{name:<10}{row['tokens_per_s']:>14.1f}{row['seconds_per_article']:>20.3f}")
        else:
            print(f"{name:<10}  failed: {row['errors'][:1]}")
    if "same_predictions" in summary:
        print(f"native / portable: generation {summary['native_over_portable_generation']:.3f}x, "
              f"scoring {summary['native_over_portable_scoring']:.3f}x; "
              f"same predictions: {summary['same_predictions']}")
    print(f"wrote {out}")
    return summary


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return "unknown CPU"


if __name__ == "__main__":
    main()
