"""Score the issue-30 measurement set (`bench/generated_text_set.py`) with every detector, resumably.

    python -m bench.generated_text_score            # scores what the set holds so far; run again to go on

Both Qwen2.5-Coder sizes read every text once (the PyTorch backend: on this 2-core CPU it reads whole
distributions about 2.5x faster than llama.cpp, whose prompt batches ran ~50 tokens/s on the 0.5B), and
from their distributions come, per text: each model's mean log-likelihood, mean log-rank and mean
entropy, and the Binoculars ratio with either model as the observer. The analysis
(`bench/generated_text_report.py`) then picks on dev, and reports on test. Records are appended to
`.cache/generated-text/scores.jsonl`, one per (article, source); an interrupted run resumes.
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


def texts_to_score() -> list[dict]:
    """(article id, split, source, context, text) for the human text and every generator's text."""
    articles = json.loads((DATA / "articles.json").read_text())
    order = {row["id"]: i for i, row in enumerate(articles)}
    items = [{"id": r["id"], "split": r["split"], "source": "human", "context": r["context"],
              "text": r["human"]} for r in articles]
    for path in sorted(DATA.glob("*.jsonl")):
        if path.name == "scores.jsonl":
            continue
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                items.append({"id": r["id"], "split": r["split"], "source": r["generator"],
                              "context": r["context"], "text": r["machine"]})
    # Grouped by article, so that the context's cache is reused by all of its texts.
    return sorted(items, key=lambda r: (order[r["id"]], r["source"] != "human", r["source"]))


def main() -> None:
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args()
    import numpy as np
    import torch

    from zeroshot.audit.generated import DetectConfig, binoculars_ratio, split_judged, token_statistics
    from zeroshot.models.catalogue import get, require_installed
    from zeroshot.models.dequantise import gguf_to_hf_folder
    from zeroshot.models.loader import load_lm

    torch.set_num_threads(2)
    out = DATA / "scores.jsonl"
    done = set()
    if out.exists():
        done = {(r["id"], r["source"]) for r in map(json.loads, out.read_text().splitlines()) if r}
    todo = [t for t in texts_to_score() if (t["id"], t["source"]) not in done]
    print(f"{len(done)} scored, {len(todo)} to score", flush=True)
    if not todo:
        return
    lms = {k: load_lm(str(gguf_to_hf_folder(require_installed(get(n)))), backend="transformers")
           for k, n in SCORERS.items()}
    config = DetectConfig(min_tokens=1)
    started, tokens = time.perf_counter(), 0
    with out.open("a") as f:
        for n, item in enumerate(todo, 1):
            context_ids, ids = split_judged(lms["small"], item["text"], item["context"], config)
            rows = {k: lm.continuation_distributions(context_ids, [ids])[0] for k, lm in lms.items()}
            record = {"id": item["id"], "split": item["split"], "source": item["source"], "tokens": len(ids)}
            for k, r in rows.items():
                stats = token_statistics(r, ids)
                record[f"{k}_logprob"] = float(stats["logprob"].mean())
                record[f"{k}_logrank"] = float(np.log(stats["rank"]).mean())
                record[f"{k}_entropy"] = float(stats["entropy"].mean())
            record["bino_small_observes"] = binoculars_ratio(rows["small"], rows["large"], ids)
            record["bino_large_observes"] = binoculars_ratio(rows["large"], rows["small"], ids)
            f.write(json.dumps(record) + "\n")
            f.flush()
            tokens += len(ids)
            if n % 20 == 0:
                rate = tokens / (time.perf_counter() - started)
                print(f"  {n}/{len(todo)}  {rate:.1f} judged tokens/s (both models)", flush=True)


if __name__ == "__main__":
    main()
