"""Score the issue-30 measurement set (`bench/generated_text_set.py`) with every detector, resumably.

    python -m bench.generated_text_score            # scores what the set holds so far; run again to go on

Both Qwen2.5-Coder sizes read every text once (the PyTorch backend: on this 2-core CPU it reads whole
distributions about 2.5x faster than llama.cpp, whose prompt batches ran ~50 tokens/s on the 0.5B), and
from their distributions come, per text: each model's mean log-likelihood, mean log-rank and mean
entropy, and the Binoculars ratio with either model as the observer. The analysis
(`bench/generated_text_report.py`) then picks on dev, and reports on test. Records are appended to
`.cache/generated-text/scores.jsonl`, one per (article, source); an interrupted run resumes.
`--models small` runs the 0.5B alone (the three single-model detectors; `scores-small.jsonl`): on 2 cores
a text costs about 1.5 s with it and 6.5 s with both, so a short session covers every test article for
those three and as many as it can for Binoculars.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
DATA = HERE.parent / ".cache" / "generated-text"
SCORERS = {"small": "qwen2.5-coder-0.5b", "large": "qwen2.5-coder-1.5b"}
# A scorer of another family that wrote none of the texts: the same distance from every generator, so its
# column is the one that can show detectability against generator size (single-model detectors only).
STRANGER = "smollm2-135m"
OUTPUTS = {"both": "scores.jsonl", "small": "scores-small.jsonl", "stranger": "scores-stranger.jsonl"}


def texts_to_score(test_articles: int | None = None) -> list[dict]:
    """(article id, split, source, context, text) for the human text and every generator's text; of the
    test split, only the first `test_articles` articles (None: all)."""
    articles = json.loads((DATA / "articles.json").read_text())
    if test_articles is not None:
        test_ids = [a["id"] for a in articles if a["split"] == "test"][:test_articles]
        articles = [a for a in articles if a["split"] != "test" or a["id"] in test_ids]
    order = {row["id"]: i for i, row in enumerate(articles)}
    items = [{"id": r["id"], "split": r["split"], "source": "human", "context": r["context"],
              "text": r["human"]} for r in articles]
    for path in sorted(DATA.glob("*.jsonl")):
        if path.name.startswith("scores"):
            continue
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                if r["id"] not in order:
                    continue
                items.append({"id": r["id"], "split": r["split"], "source": r["generator"],
                              "context": r["context"], "text": r["machine"]})
    # Grouped by article, so that the context's cache is reused by all of its texts.
    return sorted(items, key=lambda r: (order[r["id"]], r["source"] != "human", r["source"]))


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", choices=("both", "small", "stranger"), default="both",
                        help="both (every detector), small (the single-model detectors' 0.5B only: "
                             "about a quarter of the time, written to scores-small.jsonl) or stranger "
                             f"({STRANGER}, a family that wrote none of the texts: scores-stranger.jsonl)")
    parser.add_argument("--test-articles", type=int, default=None,
                        help="score only the first N test articles")
    parser.add_argument("--skip-human-only", action="store_true",
                        help="leave out the human-only dev articles")
    parser.add_argument("--threads", type=int, default=2,
                        help="PyTorch threads (1: share the 2 cores with a llama.cpp generation, which "
                             "decodes on one)")
    parser.add_argument("--shard", default="0/1",
                        help="i/n: score every n-th article from the i-th; n one-thread runs side by side "
                             "read about n times as fast on n cores (one run scales poorly past a thread)")
    args = parser.parse_args()
    import numpy as np
    import torch

    from zeroshot.audit.generated import DetectConfig, binoculars_ratio, split_judged, token_statistics
    from zeroshot.models.catalogue import get, require_installed
    from zeroshot.models.dequantise import gguf_to_hf_folder
    from zeroshot.models.loader import load_lm

    torch.set_num_threads(args.threads)
    out = DATA / OUTPUTS[args.models]
    done = set()
    # A text scored by both models needs no small-only pass; the stranger's pass is its own.
    for path in {out} if args.models == "stranger" else {out, DATA / "scores.jsonl"}:
        if path.exists():
            done |= {(r["id"], r["source"]) for r in map(json.loads, path.read_text().splitlines()) if r}
    human_only = {a["id"] for a in json.loads((DATA / "articles.json").read_text()) if a.get("human_only")}
    todo = [t for t in texts_to_score(args.test_articles) if (t["id"], t["source"]) not in done
            and not (args.skip_human_only and t["id"] in human_only)]
    shard, shards = map(int, args.shard.split("/"))
    articles = list(dict.fromkeys(t["id"] for t in todo))  # whole articles, so each keeps its cache
    mine = set(articles[shard::shards])
    todo = [t for t in todo if t["id"] in mine]
    print(f"{len(done)} scored, {len(todo)} to score in shard {shard}/{shards}", flush=True)
    if not todo:
        return
    scorers = {"both": SCORERS, "small": {"small": SCORERS["small"]}, "stranger": {"stranger": STRANGER}}[
        args.models]
    lms = {k: load_lm(str(gguf_to_hf_folder(require_installed(get(n)))), backend="transformers")
           for k, n in scorers.items()}
    config = DetectConfig(min_tokens=1)
    started, tokens = time.perf_counter(), 0
    with out.open("a") as f:
        for n, item in enumerate(todo, 1):
            context_ids, ids = split_judged(next(iter(lms.values())), item["text"], item["context"], config)
            rows = {k: lm.continuation_distributions(context_ids, [ids])[0] for k, lm in lms.items()}
            record = {"id": item["id"], "split": item["split"], "source": item["source"], "tokens": len(ids)}
            for k, r in rows.items():
                stats = token_statistics(r, ids)
                record[f"{k}_logprob"] = float(stats["logprob"].mean())
                record[f"{k}_logrank"] = float(np.log(stats["rank"]).mean())
                record[f"{k}_entropy"] = float(stats["entropy"].mean())
            if "large" in rows:
                record["bino_small_observes"] = binoculars_ratio(rows["small"], rows["large"], ids)
                record["bino_large_observes"] = binoculars_ratio(rows["large"], rows["small"], ids)
            f.write(json.dumps(record) + "\n")
            f.flush()
            tokens += len(ids)
            if n % 20 == 0:
                rate = tokens / (time.perf_counter() - started)
                names = ", ".join(scorers.values())
                print(f"  {n}/{len(todo)}  {rate:.1f} judged tokens/s ({names})", flush=True)


if __name__ == "__main__":
    main()
