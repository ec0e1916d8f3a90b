"""Score `bench/caption_bbc.py`'s predictions with pycocoevalcap: BLEU-4, ROUGE-L, CIDEr (issue 14).

Tokenises with pycocoevalcap's PTBTokenizer (Stanford CoreNLP, needs Java) as the COCO evaluation does;
one reference per article (its true title), so CIDEr's document frequencies come from the 444 titles.
Writes a summary JSON, a Markdown table, and a PNG of 10 test articles (true / captioner / baselines).

    PYTHONPATH=src python bench/caption_bbc_score.py bench/results/caption-bbc-runs.json \\
        --inputs bench/results/caption-bbc-inputs.npz
"""

from __future__ import annotations

import argparse
import json
import textwrap
from collections import defaultdict
from pathlib import Path

import numpy as np

BASELINES = {
    "nearest_neighbour": "(a) nearest-neighbour title",
    "zero_shot": "(b) LM zero-shot",
    "four_shot": "(c) LM, 4 demonstrations",
}


def score(references: list[str], predictions: list[str]) -> dict[str, float]:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    refs = tokenizer.tokenize({i: [{"caption": r}] for i, r in enumerate(references)})
    hyps = tokenizer.tokenize({i: [{"caption": p or "."}] for i, p in enumerate(predictions)})
    bleu, _ = Bleu(4).compute_score(refs, hyps, verbose=0)
    rouge, _ = Rouge().compute_score(refs, hyps)
    cider, _ = Cider().compute_score(refs, hyps)
    return {"BLEU-4": float(bleu[3]), "ROUGE-L": float(rouge), "CIDEr": float(cider)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "runs", type=Path, nargs="+", help="runs JSON; later files add test runs (more seeds)"
    )
    parser.add_argument("--inputs", type=Path, default=Path("bench/results/caption-bbc-inputs.npz"))
    parser.add_argument("--out", type=Path, default=None, help="summary JSON (default: beside runs)")
    args = parser.parse_args()
    results = json.loads(args.runs[0].read_text())
    for extra in args.runs[1:]:  # more seeds of some configurations, same code and settings
        seen = {(r["mapper"], r["prefix_length"], r["seed"]) for r in results["runs"]}
        more = json.loads(extra.read_text())
        assert more["references"] == results["references"], f"{extra} has another split"
        results["runs"] += [
            r for r in more["runs"] if (r["mapper"], r["prefix_length"], r["seed"]) not in seen
        ]
    for row in results["dev_runs"] + results["runs"]:  # every system is cut at its first newline
        for split in ("dev", "test"):
            if split in row:
                row[split] = [text.split("\n")[0].strip() for text in row[split]]
    out = args.out or args.runs[0].with_name(args.runs[0].stem.replace("-runs", "") + "-summary.json")
    test_refs, dev_refs = results["references"]["test"], results["references"]["dev"]

    summary: dict = {
        "setup": results["setup"],
        "chosen_lr": results.get("chosen_lr"),
        "baselines": {},
        "dev": [],
        "configs": {},
        "runs": [],
    }
    for key, label in BASELINES.items():
        if key in results["baselines"]:
            summary["baselines"][key] = {
                "label": label,
                **score(test_refs, results["baselines"][key]["test"]),
                "seconds": results["baselines"][key]["seconds"],
            }
    for row in results["dev_runs"]:
        summary["dev"].append(
            {k: row[k] for k in ("mapper", "prefix_length", "lr", "dev_loss", "train_seconds")}
            | score(dev_refs, row["dev"])
        )
    grouped = defaultdict(list)
    for row in results["runs"]:
        metrics = score(test_refs, row["test"])
        summary["runs"].append(
            {
                k: row[k]
                for k in (
                    "mapper",
                    "prefix_length",
                    "lr",
                    "seed",
                    "train_seconds",
                    "caption_seconds",
                    "parameters",
                    "epoch_losses",
                )
            }
            | metrics
        )
        grouped[f"{row['mapper']}-{row['prefix_length']}"].append(summary["runs"][-1])
    for key, rows in grouped.items():
        entry = {
            "n_seeds": len(rows),
            "seeds": [r["seed"] for r in rows],
            "lr": rows[0]["lr"],
            "trained_share": rows[0]["parameters"]["trained_share"],
            "trained_params": rows[0]["parameters"]["trained"],
            "frozen_params": rows[0]["parameters"]["frozen_lm"],
            "train_seconds_mean": float(np.mean([r["train_seconds"] for r in rows])),
        }
        for metric in ("BLEU-4", "ROUGE-L", "CIDEr"):
            values = [r[metric] for r in rows]
            entry[metric] = {
                "mean": float(np.mean(values)),
                "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                "values": values,
            }
        summary["configs"][key] = entry
    dev_best = {}
    for row in summary["dev"]:
        key = f"{row['mapper']}-{row['prefix_length']}"
        if row["lr"] == (results.get("chosen_lr") or {}).get(key):
            dev_best[key] = row["CIDEr"]
    summary["best_on_dev"] = max(dev_best, key=dev_best.get) if dev_best else None
    out.write_text(json.dumps(summary, indent=1))
    table = markdown(summary)
    out.with_suffix(".md").write_text(table)
    print(table)
    if summary["best_on_dev"]:
        examples_png(results, summary["best_on_dev"], args.inputs, out.with_name("caption-bbc-examples.png"))


def markdown(summary: dict) -> str:
    lines = [
        "| system | BLEU-4 | ROUGE-L | CIDEr | seeds | trained params (share) | train s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for entry in summary["baselines"].values():
        lines.append(
            f"| {entry['label']} | {entry['BLEU-4']:.4f} | {entry['ROUGE-L']:.4f} | {entry['CIDEr']:.4f} "
            f"| - | 0 | - |"
        )
    for key, entry in sorted(summary["configs"].items()):
        mapper, length = key.split("-")
        cells = [f"{entry[m]['mean']:.4f} ± {entry[m]['std']:.4f}" for m in ("BLEU-4", "ROUGE-L", "CIDEr")]
        best = " (best on dev)" if key == summary.get("best_on_dev") else ""
        lines.append(
            f"| captioner {mapper}, prefix {length}, lr {entry['lr']:g}{best} | {' | '.join(cells)} | "
            f"{entry['n_seeds']} | {entry['trained_params']:,} ({100 * entry['trained_share']:.2f}%) | "
            f"{entry['train_seconds_mean']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def examples_png(results: dict, config: str, inputs: Path, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mapper, length = config.split("-")
    run = next(
        r
        for r in results["runs"]
        if r["mapper"] == mapper and r["prefix_length"] == int(length) and r["seed"] == 0
    )
    data = np.load(inputs)
    bodies = {str(i): str(b) for i, b in zip(data["ids"], data["bodies"], strict=True)}
    picks = np.random.default_rng(10).choice(len(results["test_ids"]), size=10, replace=False)
    fig, ax = plt.subplots(figsize=(13, 17))
    ax.axis("off")
    y = 1.0
    for n, i in enumerate(picks, start=1):
        article = results["test_ids"][i]
        rows = [
            ("article", textwrap.shorten(bodies[article], 150)),
            ("true", results["references"]["test"][i]),
            (f"captioner ({mapper}, p={length})", run["test"][i]),
        ]
        rows += [(BASELINES[k], results["baselines"][k]["test"][i]) for k in BASELINES]
        ax.text(0, y, f"{n}. {article}", fontsize=10, fontweight="bold", va="top", transform=ax.transAxes)
        y -= 0.014
        for label, text in rows:
            colour = "black" if label != "true" else "darkgreen"
            ax.text(0.02, y, f"{label}: {text}", fontsize=8.5, va="top", color=colour, transform=ax.transAxes)
            y -= 0.0135
        y -= 0.008
    ax.set_title(
        f"BBC headline generation: 10 test articles (captioner seed 0, {mapper} mapper, prefix {length})",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
