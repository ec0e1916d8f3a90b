"""lm-evaluation-harness as a client of `zeroshot serve`, beside zeroshot in process and lm_eval `hf`.

    python -m bench.lm_eval_server [--items 50] [--lm-eval-python PATH]

Two tasks on the same BBC News articles (the first N of the built-in held-out split, 400 characters each):

- `bbc4_mc`: 4-way multiple choice (the gold topic and 3 others drawn with a fixed seed, listed in the
  prompt), scored by log-likelihood (lm-eval's `acc`);
- `bbc_gen`: generate-until "\\n" (greedy, at most 16 tokens), exact match with the topic.

Each task is run, in this one script, three ways, each timed end to end (start-up included):

1. `lm_eval --model local-completions` against `zeroshot serve` (default GGUF on llama.cpp), with the
   tokenizer the server exports (`zeroshot export-tokenizer`);
2. zeroshot in process: the library `zeroshot eval-text` runs (`zeroshot.eval.runs.evaluate`) on the same
   documents, written as a zeroshot JSONL task, plus the per-choice log-likelihoods of its scorer;
3. `lm_eval --model hf` on the de-quantised float32 folder (`gguf_to_hf_folder`).

Reports accuracy, the largest per-item log-likelihood difference between each pair, and wall times.
Writes bench/results/lm_eval_server.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LM_EVAL_PYTHON = ROOT / ".cache" / "lm-eval-venv" / "bin" / "python"


def build_items(n: int) -> list[dict]:
    """The first `n` held-out articles, with a 4-way choice set and both prompts."""
    from zeroshot.eval.tasks import load_task

    task = load_task("bbc-news")
    rng = random.Random(17)
    items = []
    for doc in task.docs[:n]:
        query = task.template.format_query(doc.query)  # "Article: ...\nTopic:"
        others = rng.sample([t for t in task.labels if t != doc.target], 3)
        choices = sorted([doc.target, *others])
        mc_prompt = f"Which topic is this BBC News article about: {', '.join(choices)}?\n\n{query}"
        items.append({"mc_prompt": mc_prompt, "choices": choices, "gold": choices.index(doc.target),
                      "target": doc.target, "gen_prompt": f"{task.description}\n\n{query}"})
    return items


def write_tasks(folder: Path, items: list[dict]) -> None:
    """Both tasks as lm_eval YAML + JSONL and as zeroshot JSONL task files, on the same strings."""
    docs = folder / "docs.jsonl"
    docs.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    common = f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {docs}\ntest_split: test\n"
    (folder / "bbc4_mc.yaml").write_text(
        "task: bbc4_mc\n" + common + "output_type: multiple_choice\ndoc_to_text: mc_prompt\n"
        "doc_to_choice: choices\ndoc_to_target: gold\ntarget_delimiter: \" \"\n"
        "metric_list:\n  - metric: acc\n")
    (folder / "bbc_gen.yaml").write_text(
        "task: bbc_gen\n" + common + "output_type: generate_until\ndoc_to_text: gen_prompt\n"
        "doc_to_target: target\ntarget_delimiter: \" \"\ngeneration_kwargs:\n  until: [\"\\n\"]\n"
        "  max_gen_toks: 16\n  do_sample: false\n  temperature: 0.0\n"
        "metric_list:\n  - metric: exact_match\n    regexes_to_ignore: [\"^\\\\s+\", \"\\\\s+$\"]\n")
    with (folder / "zs_mc.jsonl").open("w", encoding="utf-8") as f:
        f.write(json.dumps({"config": {"doc_to_text": "{mc_prompt}", "doc_to_target": "{gold}",
                                       "doc_to_choice": "choices", "target_delimiter": " "}}) + "\n")
        for item in items:
            f.write(json.dumps({"mc_prompt": item["mc_prompt"], "choices": item["choices"],
                                "gold": item["gold"], "split": "test"}) + "\n")
    with (folder / "zs_gen.jsonl").open("w", encoding="utf-8") as f:
        f.write(json.dumps({"config": {"doc_to_text": "{gen_prompt}", "doc_to_target": "{target}"}}) + "\n")
        for item in items:
            f.write(json.dumps({"gen_prompt": item["gen_prompt"], "target": item["target"], "split": "test"})
                    + "\n")


def run_lm_eval(python: str, model: str, model_args: str, folder: Path, out: Path) -> tuple[float, dict]:
    """One lm_eval run over both tasks; returns (wall seconds, {task: (metric, per-doc samples)})."""
    command = [python, "-m", "lm_eval", "--model", model, "--model_args", model_args,
               "--tasks", "bbc4_mc,bbc_gen", "--include_path", str(folder), "--batch_size", "1",
               "--output_path", str(out), "--log_samples"]
    if model == "hf":
        command += ["--device", "cpu"]
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"lm_eval --model {model} failed:\n{done.stderr[-3000:]}")
    results = json.loads(max(out.rglob("results_*.json"), key=os.path.getmtime).read_text())
    parsed = {}
    for task, metric in (("bbc4_mc", "acc,none"), ("bbc_gen", "exact_match,none")):
        samples_file = max(out.rglob(f"samples_{task}_*.jsonl"), key=os.path.getmtime)
        samples = sorted((json.loads(line) for line in samples_file.read_text().splitlines()),
                         key=lambda s: s["doc_id"])
        parsed[task] = (results["results"][task][metric], samples)
    return seconds, parsed


def mc_loglikelihoods(samples: list[dict]) -> np.ndarray:
    return np.array([[float(r[0]) for r in s["filtered_resps"]] for s in samples])


def gen_texts(samples: list[dict]) -> list[str]:
    return [s["filtered_resps"][0] if isinstance(s["filtered_resps"], list) else s["filtered_resps"]
            for s in samples]


def run_in_process(folder: Path, threads: int | None = None) -> dict:
    """zeroshot eval-text's library call on both task files, plus its scorer's per-choice log-likelihoods."""
    from zeroshot.eval.runs import EvalConfig, evaluate
    from zeroshot.eval.tasks import load_task
    from zeroshot.models.loader import load_lm
    from zeroshot.text.classify import MultipleChoiceScorer

    started = time.perf_counter()
    lm = load_lm(None, n_threads=threads) if threads else load_lm()
    mc, gen = load_task(folder / "zs_mc.jsonl"), load_task(folder / "zs_gen.jsonl")
    mc_report = evaluate(lm, EvalConfig(mc, shots=[0], seeds=1), progress=False)
    mc_seconds = time.perf_counter() - started
    started = time.perf_counter()
    gen_report = evaluate(lm, EvalConfig(gen, shots=[0], seeds=1), progress=False)
    gen_seconds = time.perf_counter() - started
    scorer = MultipleChoiceScorer(lm, mc.description, [], mc.template).fit().scorer_
    lls = np.array([scorer.score(doc.query, list(doc.choices)).logprob_sum for doc in mc.docs])
    return {"mc_acc": mc_report.series["plain"][0].mean, "gen_acc": gen_report.series["plain"][0].mean,
            "mc_seconds": mc_seconds, "gen_seconds": gen_seconds, "mc_ll": lls, "backend": lm.backend}


@contextmanager
def serving(threads: int | None):
    """`zeroshot serve`'s app for the default model, on a free port in this process (the LM loaded with
    `threads` llama.cpp threads, since `zeroshot serve` has no such option); yields the base URL."""
    from zeroshot.models.lm import load_lm
    from zeroshot.server.app import ServerSettings, create_app
    from zeroshot.server.background import serve_in_thread

    app = create_app(ServerSettings())
    app.state.resources._lm = load_lm(None, n_threads=threads) if threads else None
    with serve_in_thread(app) as base_url:
        yield base_url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--lm-eval-python", default=str(LM_EVAL_PYTHON))
    parser.add_argument("--threads", type=int, default=None,
                        help="Threads for every side (llama.cpp n_threads, torch/OMP); default: theirs.")
    args = parser.parse_args()
    from zeroshot.models.dequantise import gguf_to_hf_folder
    from zeroshot.models.tokenizer_export import export_tokenizer

    items = build_items(args.items)
    hf_dir, tokenizer_dir = gguf_to_hf_folder(), export_tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_tasks(folder, items)
        if args.threads:
            os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the lm_eval hf subprocess's torch
        started = time.perf_counter()
        with serving(args.threads) as base:
            served = json.load(urllib.request.urlopen(f"{base}/v1/models"))["data"][0]["id"]
            api_args = (f"model={served},base_url={base}/v1/completions,tokenizer={tokenizer_dir},"
                        "tokenizer_backend=huggingface,num_concurrent=1,max_retries=1")
            api_seconds, api = run_lm_eval(args.lm_eval_python, "local-completions", api_args, folder,
                                           folder / "api")
            api_seconds_with_start = time.perf_counter() - started
        local = run_in_process(folder, args.threads)
        hf_seconds, hf = run_lm_eval(args.lm_eval_python, "hf", f"pretrained={hf_dir},dtype=float32", folder,
                                     folder / "hf")
    api_ll, hf_ll = mc_loglikelihoods(api["bbc4_mc"][1]), mc_loglikelihoods(hf["bbc4_mc"][1])
    api_gen, hf_gen = gen_texts(api["bbc_gen"][1]), gen_texts(hf["bbc_gen"][1])
    report = {
        "items": args.items, "requests_mc": int(api_ll.size), "server": served, "tokenizer": "exported",
        "accuracy": {"bbc4_mc": {"lm_eval_local_completions": api["bbc4_mc"][0], "zeroshot_in_process":
                                 local["mc_acc"], "lm_eval_hf_float32": hf["bbc4_mc"][0]},
                     "bbc_gen": {"lm_eval_local_completions": api["bbc_gen"][0], "zeroshot_in_process":
                                 local["gen_acc"], "lm_eval_hf_float32": hf["bbc_gen"][0]}},
        "max_abs_loglikelihood_diff": {
            "server_vs_in_process": float(np.abs(api_ll - local["mc_ll"]).max()),
            "server_vs_hf_float32": float(np.abs(api_ll - hf_ll).max()),
            "in_process_vs_hf_float32": float(np.abs(local["mc_ll"] - hf_ll).max())},
        "same_prediction": {
            "server_vs_in_process": int((api_ll.argmax(1) == local["mc_ll"].argmax(1)).sum()),
            "server_vs_hf_float32": int((api_ll.argmax(1) == hf_ll.argmax(1)).sum())},
        "same_generation_server_vs_hf": int(sum(a == b for a, b in zip(api_gen, hf_gen, strict=True))),
        "wall_seconds": {"lm_eval_local_completions_both_tasks": round(api_seconds, 1),
                         "lm_eval_local_completions_incl_server_start": round(api_seconds_with_start, 1),
                         "zeroshot_in_process_mc_incl_load": round(local["mc_seconds"], 1),
                         "zeroshot_in_process_gen": round(local["gen_seconds"], 1),
                         "lm_eval_hf_float32_both_tasks": round(hf_seconds, 1)},
        "in_process_backend": local["backend"], "threads": args.threads,
        "load_average_at_end": os.getloadavg(),
        "generations_first5": {"server": api_gen[:5], "hf_float32": hf_gen[:5]},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "lm_eval_server.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
