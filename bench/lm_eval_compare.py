"""zeroshot's likelihood scoring against lm-evaluation-harness: same model, same 200 BBC prompts at K=4.

    python -m bench.lm_eval_compare [--articles 200] [--shots 4] [--lm-eval-python PATH]

lm-evaluation-harness (`lm_eval`) is installed in its own virtual environment (it pins `datasets`,
`evaluate` and friends that zeroshot does not need) by `make setup-lm-eval`, in `.cache/lm-eval-venv`.

Both sides read one float32 Hugging Face folder, de-quantised once from the default GGUF (cached in
`.cache/smollm2-135m-hf`), so they run the same weights on the same PyTorch. Each article's prompt is
built by zeroshot (task description + the same 4 seeded demonstrations + the article) and handed to
lm_eval as a local JSON multiple-choice task with the five topics as choices, so both score exactly
the same strings; lm_eval runs it zero-shot. Timed side by side in this one run, each end to end
(model load included) and scoring alone:

- lm_eval `--model hf` (its one-token-continuation cache is the only reuse it has);
- zeroshot, transformers backend, shared-prefix reuse (same folder);
- zeroshot, default llama.cpp backend on the GGUF (what `zeroshot eval-text` runs by default).

- zeroshot's scoring engine (`continuation_logprobs`, prefix reuse) on exactly lm_eval's token ids,
  which must reproduce lm_eval's log-likelihoods (its prompt builder tokenizes piece by piece, which
  can split a piece boundary differently from tokenizing the whole string).

Per-article log-likelihoods and predictions are compared with lm_eval's.
Writes bench/results/lm_eval_compare_bs{batch size}.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
HF_DIR = ROOT / ".cache" / "smollm2-135m-hf"
LM_EVAL_PYTHON = ROOT / ".cache" / "lm-eval-venv" / "bin" / "python"
TASK_NAME = "zeroshot_bbc_news_k4"


def export_hf_folder(out: Path) -> Path:
    """De-quantise the default GGUF into a float32 Hugging Face folder (once)."""
    from zeroshot.models.dequantise import gguf_to_hf_folder

    return gguf_to_hf_folder(out=out)


def write_task(folder: Path, contexts: list[str], choices: list[str], gold: list[int]) -> None:
    """The prompts as an lm_eval task: a JSONL file and the YAML that describes it."""
    docs = folder / "docs.jsonl"
    with docs.open("w", encoding="utf-8") as f:
        for i, (context, answer) in enumerate(zip(contexts, gold, strict=True)):
            f.write(json.dumps({"id": i, "context": context, "choices": choices, "gold": answer}) + "\n")
    (folder / f"{TASK_NAME}.yaml").write_text(
        f"task: {TASK_NAME}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {docs}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        "doc_to_text: context\n"
        "doc_to_choice: choices\n"
        "doc_to_target: gold\n"
        'target_delimiter: ""\n'
        "metric_list:\n  - metric: acc\n"
    )


def run_lm_eval(python: str, hf_dir: Path, folder: Path, batch_size: str) -> tuple[float, np.ndarray]:
    """Run lm_eval in its own interpreter; returns (wall seconds, log-likelihoods per doc and choice)."""
    out = folder / "out"
    command = [
        python, "-m", "lm_eval", "--model", "hf",
        "--model_args", f"pretrained={hf_dir},dtype=float32",
        "--tasks", TASK_NAME, "--include_path", str(folder), "--device", "cpu",
        "--batch_size", batch_size, "--output_path", str(out), "--log_samples",
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    started = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL)  # its progress bars show on stderr
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"lm_eval failed (exit {done.returncode}); its messages are above")
    samples = sorted(out.rglob(f"samples_{TASK_NAME}_*.jsonl"))
    if not samples:
        raise SystemExit(f"lm_eval wrote no samples under {out}")
    rows = [json.loads(line) for line in samples[-1].read_text().splitlines() if line.strip()]
    rows.sort(key=lambda r: r["doc_id"])
    loglik = np.array([[float(r[0]) for r in row["filtered_resps"]] for row in rows])
    return seconds, loglik


def time_zeroshot_engine(model: str, contexts: list[str], choices: list[str]) -> dict:
    """Load + score with `continuation_logprobs` (prefix reuse) on exactly the token ids lm_eval scores.

    lm_eval tokenizes the whole context string, and each answer as the tokens that `context + answer`
    adds to it; zeroshot's prompt builder tokenizes the prompt piece by piece, which can split a piece
    boundary differently. Feeding lm_eval's ids makes the two computations the same one.
    """
    from tqdm import tqdm

    from zeroshot.models.loader import load_lm

    started = time.perf_counter()
    lm = load_lm(model, backend="transformers")
    loaded = time.perf_counter()
    rows = []
    for context in tqdm(contexts, desc="zeroshot engine", unit="doc"):
        context_ids = lm.tokenizer(context)["input_ids"]
        conts = [lm.tokenizer(context + c)["input_ids"][len(context_ids):] for c in choices]
        rows.append([float(x.sum()) for x in lm.continuation_logprobs(context_ids, conts)])
    finished = time.perf_counter()
    return {"backend": lm.backend, "load_seconds": loaded - started, "score_seconds": finished - loaded,
            "total_seconds": finished - started, "loglik": np.array(rows)}


def time_zeroshot(model: str | None, backend: str, task, demos, texts: list[str]) -> dict:
    """Load + classify `texts` with shared-prefix reuse; log-likelihood sums per text and label."""
    from zeroshot.models.loader import load_lm
    from zeroshot.text.classify import ZeroShotTextClassifier

    started = time.perf_counter()
    lm = load_lm(model, backend=backend)
    loaded = time.perf_counter()
    clf = ZeroShotTextClassifier(lm, task.labels, task.description, demos, task.template, progress=True)
    scores = clf.fit().score_texts(texts)
    finished = time.perf_counter()
    return {
        "backend": lm.backend,
        "load_seconds": loaded - started,
        "score_seconds": finished - loaded,
        "total_seconds": finished - started,
        "loglik": np.array([s.logprob_sum for s in scores]),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=200)
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lm-eval-python", default=str(LM_EVAL_PYTHON))
    parser.add_argument("--lm-eval-batch-size", default="1")
    parser.add_argument("--skip-llama-cpp", action="store_true")
    args = parser.parse_args(argv)
    if not Path(args.lm_eval_python).exists():
        raise SystemExit(f"no interpreter at {args.lm_eval_python}: run `make setup-lm-eval` first")

    from zeroshot.eval.tasks import bbc_news_task
    from zeroshot.models.loader import load_lm
    from zeroshot.text.prompts import PromptBuilder, sample_demonstrations

    hf_dir = export_hf_folder(HF_DIR)
    task = bbc_news_task()
    docs = task.docs[: args.articles]
    texts = [d.query for d in docs]
    gold = np.array([task.labels.index(d.target) for d in docs])
    demos = sample_demonstrations(task.demonstration_pool(), args.shots, args.seed)
    builder = PromptBuilder(load_lm(hf_dir, backend="transformers"), task.description, demos, task.template)
    contexts = [builder.prefix_text() + task.template.format_query(t) for t in texts]
    choices = [task.template.format_answer(label) for label in task.labels]

    with tempfile.TemporaryDirectory() as tmp:
        write_task(Path(tmp), contexts, choices, gold.tolist())
        lm_eval_s, lm_eval_ll = run_lm_eval(args.lm_eval_python, hf_dir, Path(tmp), args.lm_eval_batch_size)
    engine = time_zeroshot_engine(str(hf_dir), contexts, choices)
    ours = time_zeroshot(str(hf_dir), "transformers", task, demos, texts)
    fast = None if args.skip_llama_cpp else time_zeroshot(None, "auto", task, demos, texts)

    def accuracy(loglik: np.ndarray) -> float:
        return float((loglik.argmax(1) == gold).mean())

    def agreement(loglik: np.ndarray) -> float:
        return float((loglik.argmax(1) == lm_eval_ll.argmax(1)).mean())

    def summary(run: dict) -> dict:
        return {k: v for k, v in run.items() if k != "loglik"} | {
            "accuracy": accuracy(run["loglik"]), "agreement_with_lm_eval": agreement(run["loglik"]),
            "speedup_vs_lm_eval": lm_eval_s / run["total_seconds"]}

    result = {
        "articles": len(texts),
        "shots": args.shots,
        "seed": args.seed,
        "model_folder": str(hf_dir),
        "lm_eval_batch_size": args.lm_eval_batch_size,
        "lm_eval_version": subprocess.run(
            [args.lm_eval_python, "-c", "import importlib.metadata as m; print(m.version('lm_eval'))"],
            capture_output=True, text=True).stdout.strip(),
        "lm_eval_seconds": lm_eval_s,
        "lm_eval_accuracy": accuracy(lm_eval_ll),
        "zeroshot_engine_same_tokens": summary(engine) | {
            "max_abs_loglik_difference": float(np.abs(lm_eval_ll - engine["loglik"]).max())},
        "zeroshot_classifier_transformers": summary(ours) | {
            "median_abs_loglik_difference": float(np.median(np.abs(lm_eval_ll - ours["loglik"])))},
    }
    if fast is not None:
        result["zeroshot_classifier_llama_cpp"] = summary(fast)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"lm_eval_compare_bs{args.lm_eval_batch_size}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\nBBC News, K={args.shots} (seed {args.seed}), {len(texts)} articles, 5 labels, end to end "
          "(model load included)")
    print(f"{'runner':<46}{'seconds':>9}{'speed-up':>10}{'accuracy':>10}{'agree':>8}")
    print(f"{'lm_eval --model hf (float32)':<46}{lm_eval_s:>9.1f}{1.0:>9.1f}x{accuracy(lm_eval_ll):>10.3f}"
          f"{1.0:>8.3f}")
    rows = [("zeroshot engine, lm_eval's tokens (float32)", engine),
            ("zeroshot classifier, transformers (float32)", ours)]
    rows += [("zeroshot classifier, llama.cpp (Q4_1)", fast)] if fast else []
    for name, run in rows:
        print(f"{name:<46}{run['total_seconds']:>9.1f}{lm_eval_s / run['total_seconds']:>9.1f}x"
              f"{accuracy(run['loglik']):>10.3f}{agreement(run['loglik']):>8.3f}")
    print("same tokens, same weights: max |log-likelihood difference| "
          f"{result['zeroshot_engine_same_tokens']['max_abs_loglik_difference']:.2e}")
    return result


if __name__ == "__main__":
    main()
