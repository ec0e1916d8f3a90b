"""BBC News: test accuracy against labelled examples per label, for a soft prompt, in-context K-shot
(plain and calibrated) and the KernelAdapter on MiniLM embeddings (issue 16).

Every method sees the same labelled examples: for each seed, `sample_per_label` draws k examples per
label from the task's pool (nested in k), and every method is scored on the same fixed test documents
(the first `--limit` of the built-in task's shuffled test split). Articles are shortened to the task's
400 characters (about 90 tokens) for training and testing alike. Results are written after every run,
so a killed run keeps what it finished.

    python -m bench.adapt_bbc --methods soft,icl --limit 444 --out bench/results/adapt_bbc.json
    python -m bench.adapt_bbc --methods kernel --out bench/results/adapt_bbc_kernel.json
    python -m bench.adapt_bbc --plot bench/results/adapt_bbc.json bench/results/adapt_bbc_kernel.json
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np


def _save(path: Path, rows: list[dict], meta: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    tmp.replace(path)


def _resume(out: Path, meta: dict) -> list[dict]:
    """The rows an earlier run with the same settings wrote to `out` (so a killed bench continues)."""
    if not out.exists():
        return []
    data = json.loads(out.read_text())
    same = all(data["meta"].get(key) == meta[key] for key in ("n_test", "max_chars", "epochs", "patience",
                                                              "lr", "max_steps"))
    if not same:
        raise SystemExit(f"{out} holds runs with other settings: choose another --out")
    return data["rows"]


def run_soft_and_icl(args, task, test_docs, chosen_by, rows, meta, out: Path) -> None:
    import torch

    from zeroshot.models.loader import load_lm
    from zeroshot.text.classify import ZeroShotTextClassifier
    from zeroshot.text.prompts import Demonstration
    from zeroshot.train.soft_prompt import SoftPromptConfig, train_soft_prompt, trainable_model

    lm = load_lm(trainable_model(args.model), backend="transformers", device=args.device)
    # In-context runs may use the GGUF on the faster backend (llama.cpp when installed): same weights.
    options = {"n_threads": args.threads} if args.icl_backend == "llama.cpp" else {}
    icl_lm = (
        lm if args.icl_backend == "transformers" else load_lm(args.model, backend=args.icl_backend, **options)
    )
    meta["icl_backend"] = icl_lm.backend
    meta["model"] = lm.name
    meta["device"] = str(lm.device) + (
        f" ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else ""
    )
    meta["total_params"] = int(sum(p.numel() for p in lm.model.parameters()))
    texts = [d.query for d in test_docs]
    targets = [d.target for d in test_docs]
    pool_texts = [d.query for d in task.pool]
    pool_labels = [d.target for d in task.pool]

    def accuracy(predicted) -> float:
        return float(np.mean([p == t for p, t in zip(predicted, targets, strict=True)]))

    done = {(r["method"], r["k"], r["seed"]) for r in rows}
    for seed in args.seed_list:
        for k in args.shots:
            chosen = chosen_by[(seed, k)]
            if "icl" in args.methods and ("icl", k, seed) not in done:
                demos = [Demonstration(pool_texts[i], pool_labels[i]) for i in chosen]
                random.Random(seed).shuffle(demos)
                started = time.perf_counter()
                clf = ZeroShotTextClassifier(
                    icl_lm, task.labels, task.description, demos, task.template, calibrate=True
                ).fit()
                scores = [clf.scorer_.score(t, task.labels) for t in texts]
                seconds = time.perf_counter() - started
                for name, calibrate in (("icl", False), ("icl-calibrated", True)):
                    predicted = [r.choices[int(np.argmax(r.scores("sum", calibrate)))] for r in scores]
                    rows.append(
                        {
                            "method": name,
                            "k": k,
                            "seed": seed,
                            "accuracy": accuracy(predicted),
                            "demonstrations_kept": int(np.mean([r.n_demonstrations for r in scores])),
                            "seconds": seconds,
                        }
                    )
                _save(out, rows, meta)
                print(rows[-1], flush=True)
            if "soft" not in args.methods:
                continue
            for n_virtual in args.virtual_tokens:
                if (f"soft-{n_virtual}", k, seed) in done:
                    continue
                config = SoftPromptConfig(
                    n_virtual_tokens=n_virtual,
                    init="text",
                    epochs=args.epochs,
                    learning_rate=args.lr,
                    batch_size=4,
                    patience=args.patience,
                    max_steps=args.max_steps,
                    seed=seed,
                )
                with tempfile.TemporaryDirectory() as folder:
                    result = train_soft_prompt(
                        lm,
                        [pool_texts[i] for i in chosen],
                        [pool_labels[i] for i in chosen],
                        folder,
                        config,
                        description=task.description,
                        template=task.template,
                        label_set=task.labels,
                        progress=False,
                    )
                    started = time.perf_counter()
                    clf = ZeroShotTextClassifier(lm, task.labels, soft_prompt=folder).fit()
                    predicted = clf.predict(texts)
                    eval_seconds = time.perf_counter() - started
                rows.append(
                    {
                        "method": f"soft-{n_virtual}",
                        "k": k,
                        "seed": seed,
                        "accuracy": accuracy(predicted),
                        "train_seconds": result.seconds,
                        "eval_seconds": eval_seconds,
                        "epochs_run": result.epochs_run,
                        "best_epoch": result.best_epoch,
                        "n_train": result.n_train,
                        "n_dev": result.n_dev,
                        "trainable_params": result.trainable_params,
                        "trained_share": result.trained_share,
                        "train_loss": result.train_loss,
                        "dev_loss": result.dev_loss,
                    }
                )
                _save(out, rows, meta)
                print({k2: v for k2, v in rows[-1].items() if "loss" not in k2}, flush=True)


def run_kernel(args, task, test_docs, chosen_by, rows, meta, out: Path) -> None:
    """KernelAdapter on MiniLM embeddings of the same (shortened) texts the LM methods read.

    Only the texts some seed draws and the test documents are embedded (cached on disk).
    """
    from zeroshot.fewshot.embeddings_cache import cached_encode
    from zeroshot.fewshot.kernel_adapter import KernelAdapter
    from zeroshot.fewshot.tasks import SENTENCE_LOGIT_SCALE
    from zeroshot.fewshot.zero_shot_head import NEWS_TEMPLATES, ZeroShotHead
    from zeroshot.models.sentence import load_text_encoder

    encoder = load_text_encoder(None)
    meta["encoder"] = encoder.name
    needed = sorted({i for chosen in chosen_by.values() for i in chosen})
    vectors = cached_encode(encoder, [task.pool[i].query for i in needed])
    pool_vectors = dict(zip(needed, vectors, strict=True))
    test_vectors = cached_encode(encoder, [d.query for d in test_docs])
    targets = np.array([d.target for d in test_docs])
    prior = ZeroShotHead.from_prompts(encoder, task.labels, NEWS_TEMPLATES, logit_scale=SENTENCE_LOGIT_SCALE)
    prior.fit(test_vectors[:1])
    done = {(r["method"], r["k"], r["seed"]) for r in rows}
    rows[:] = [r for r in rows if r["method"] != "zero-shot-minilm"]
    rows.append(
        {
            "method": "zero-shot-minilm",
            "k": 0,
            "seed": 0,
            "accuracy": float(np.mean(prior.predict(test_vectors) == targets)),
        }
    )
    for seed in args.seed_list:
        for k in args.shots:
            if ("kernel-minilm", k, seed) in done:
                continue
            chosen = chosen_by[(seed, k)]
            X = np.stack([pool_vectors[i] for i in chosen])
            y = np.array([task.pool[i].target for i in chosen])
            started = time.perf_counter()
            model = KernelAdapter(prior=prior).fit(X, y)
            acc = float(np.mean(model.predict(test_vectors) == targets))
            rows.append(
                {
                    "method": "kernel-minilm",
                    "k": k,
                    "seed": seed,
                    "accuracy": acc,
                    "seconds": time.perf_counter() - started,
                }
            )
            _save(out, rows, meta)


NAMES = {
    "soft-10": "soft prompt, 10 tokens",
    "soft-20": "soft prompt, 20 tokens",
    "icl": "in-context K-shot",
    "icl-calibrated": "in-context K-shot, calibrated",
    "kernel-minilm": "KernelAdapter (MiniLM)",
}


def plot(paths: list[str], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, meta, seen = [], {}, set()
    for p in paths:
        data = json.loads(Path(p).read_text())
        for row in data["rows"]:  # a seed measured by two processes counts once
            if (row["method"], row["k"], row["seed"]) not in seen:
                seen.add((row["method"], row["k"], row["seed"]))
                rows.append(row)
        meta.update(data["meta"])
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=120)
    for method, label in NAMES.items():
        ks = sorted({r["k"] for r in rows if r["method"] == method})
        if not ks:
            continue
        per_k = [[r["accuracy"] for r in rows if r["method"] == method and r["k"] == k] for k in ks]
        mean = np.array([np.mean(v) for v in per_k]) * 100
        counts = sorted({len(v) for v in per_k})
        seeds = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        ax.plot(ks, mean, marker="o", label=f"{label} ({seeds} seeds per k)")
        ax.fill_between(ks, [min(v) * 100 for v in per_k], [max(v) * 100 for v in per_k], alpha=0.15)
    ax.axhline(20, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xticks([1, 2, 4, 8, 16], ["1", "2", "4", "8", "16"])
    ax.set_xlabel("labelled examples per label (k)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(
        f"BBC News, {meta.get('n_test')} test articles ({meta.get('max_chars')} chars); SmolLM2-135M frozen",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png)
    print(f"wrote {png}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="soft,icl")
    parser.add_argument("--shots", default="1,2,4,8,16")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--virtual-tokens", default="10,20")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--limit", type=int, default=444)
    parser.add_argument(
        "--per-label",
        type=int,
        default=None,
        help="test on the first N test articles of each label instead of --limit",
    )
    parser.add_argument("--max-chars", type=int, default=400)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--icl-backend", default="transformers", help="transformers, auto or llama.cpp")
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="bench/results/adapt_bbc.json")
    parser.add_argument("--plot", nargs="*", help="JSON results to plot (no runs)")
    parser.add_argument("--png", default="docs/notes/issue-16-bbc.png")
    args = parser.parse_args()
    if args.plot:
        plot(args.plot, Path(args.png))
        return
    import torch

    torch.set_num_threads(args.threads)
    args.methods = args.methods.split(",")
    args.seed_list = list(range(args.first_seed, args.first_seed + args.seeds))
    args.shots = [int(s) for s in args.shots.split(",")]
    args.virtual_tokens = [int(s) for s in args.virtual_tokens.split(",")]
    from zeroshot.eval.tasks import bbc_news_task
    from zeroshot.train.soft_prompt import sample_per_label

    task = bbc_news_task(max_chars=args.max_chars)
    test_docs = task.docs[: args.limit]
    if args.per_label:
        test_docs = [
            d
            for d in task.docs
            if sum(e.target == d.target for e in task.docs[: task.docs.index(d)]) < args.per_label
        ]
    pool_labels = [d.target for d in task.pool]
    chosen_by = {(s, k): sample_per_label(pool_labels, k, s) for s in args.seed_list for k in args.shots}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "n_test": len(test_docs),
        "shots": args.shots,
        "seeds": args.seeds,
        "epochs": args.epochs,
        "patience": args.patience,
        "lr": args.lr,
        "max_chars": args.max_chars,
        "threads": args.threads,
        "max_steps": args.max_steps,
        "virtual_tokens": args.virtual_tokens,
    }
    rows = _resume(out, meta)
    if "kernel" in args.methods:
        run_kernel(args, task, test_docs, chosen_by, rows, meta, out)
    if "soft" in args.methods or "icl" in args.methods:
        run_soft_and_icl(args, task, test_docs, chosen_by, rows, meta, out)
    _save(out, rows, meta)


if __name__ == "__main__":
    main()
