"""How fast `detect-generated` reads, against the Binoculars authors' way, on the same texts (issue 30).

    python -m bench.generated_text_speed [--articles 8]

Texts: the first `--articles` test articles of the measurement set, each with its human text and every
generator's text (4-5 texts sharing one context, as a teacher's pile of essays on one prompt shares it).
- **ours**: `score_texts` (Binoculars), each model's context cache reused by the texts that follow it;
  PyTorch backend (the float32 folders the benches use), then the llama.cpp backend on the GGUFs;
- **authors' way** (binoculars/detector.py): every text run through both models from its first token,
  context included, one full forward each; the same ratio over the same judged tokens.
Reports judged tokens per second, the largest score difference, the load average and `lscpu`'s model.
Writes bench/results/generated-text-speed.json. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
DATA = HERE.parent / ".cache" / "generated-text"


def texts(n_articles: int) -> tuple[list[str], list[str]]:
    articles = [a for a in json.loads((DATA / "articles.json").read_text()) if a["split"] == "test"]
    chosen = {a["id"]: a for a in articles[:n_articles]}
    machine: dict[str, list[str]] = {i: [] for i in chosen}
    for path in sorted(DATA.glob("*.jsonl")):
        if path.name.startswith("scores"):
            continue
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row["id"] in machine:
                machine[row["id"]].append(row["machine"])
    out_texts, out_contexts = [], []
    for i, a in chosen.items():
        for text in [a["human"], *machine[i]]:
            out_texts.append(text)
            out_contexts.append(a["context"])
    return out_texts, out_contexts


def authors_way(observer, performer, config, items, contexts) -> tuple[list[float], float, int]:
    """Binoculars as its authors compute it: one full forward per model per text (no shared cache)."""
    import torch

    from zeroshot.audit.generated import binoculars_ratio, split_judged

    scores, tokens = [], 0
    started = time.perf_counter()
    for text, context in zip(items, contexts, strict=True):
        context_ids, ids = split_judged(observer, text, context, config)
        full = torch.tensor([context_ids + ids[:-1]])
        with torch.inference_mode():
            rows = [torch.log_softmax(m.model(input_ids=full).logits[0, len(context_ids) - 1:].float(),
                                      -1).numpy() for m in (observer, performer)]
        scores.append(-binoculars_ratio(rows[0], rows[1], ids))
        tokens += len(ids)
    return scores, time.perf_counter() - started, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=int, default=8)
    args = parser.parse_args()
    import numpy as np
    import torch
    from bench.common import lscpu_model

    from zeroshot.audit.generated import DEFAULT_MODELS, DetectConfig, score_texts
    from zeroshot.models.catalogue import get, require_installed
    from zeroshot.models.dequantise import gguf_to_hf_folder
    from zeroshot.models.loader import load_lm

    torch.set_num_threads(2)
    items, contexts = texts(args.articles)
    config = DetectConfig("binoculars")
    load_before = os.getloadavg()
    report = {"lscpu": lscpu_model(), "load_before": [round(x, 2) for x in load_before], "texts": len(items)}
    hf = [load_lm(str(gguf_to_hf_folder(require_installed(get(n)))), backend="transformers")
          for n in DEFAULT_MODELS["binoculars"]]
    authors, seconds, tokens = authors_way(*hf, config, items, contexts)
    report["authors_way_transformers"] = {"seconds": round(seconds, 2), "tokens": tokens,
                                          "tokens_per_second": round(tokens / seconds, 1)}
    ours = score_texts(items, *hf, config, contexts)
    report["ours_transformers"] = {"seconds": round(ours.seconds, 2), "tokens": ours.tokens,
                                   "tokens_per_second": round(ours.tokens_per_second, 1)}
    report["max_score_difference"] = float(np.max(np.abs(np.array([t.score for t in ours.texts]) - authors)))
    del hf
    gguf = [load_lm(n, backend="llama.cpp") for n in DEFAULT_MODELS["binoculars"]]
    # The llama.cpp backend's whole distributions as session 7 computed them (log-softmax in float64,
    # then float32), against the float32 log-softmax it uses now: same texts, same loaded models.
    import zeroshot.models.lm_llamacpp as llamacpp_backend
    from zeroshot.numerics import log_softmax

    def float64_then_float32(rows, axis=-1, dtype=None):
        return log_softmax(rows, axis).astype(np.float32)

    llamacpp_backend.log_softmax = float64_then_float32
    before = score_texts(items, *gguf, config, contexts)
    llamacpp_backend.log_softmax = log_softmax
    ours_cpp = score_texts(items, *gguf, config, contexts)
    report["ours_llamacpp_float64_softmax"] = {"seconds": round(before.seconds, 2), "tokens": before.tokens,
                                               "tokens_per_second": round(before.tokens_per_second, 1)}
    report["ours_llamacpp"] = {"seconds": round(ours_cpp.seconds, 2), "tokens": ours_cpp.tokens,
                               "tokens_per_second": round(ours_cpp.tokens_per_second, 1)}
    report["llamacpp_float32_max_score_difference"] = float(np.max(np.abs(
        np.array([t.score for t in ours_cpp.texts]) - [t.score for t in before.texts])))
    report["speedup_vs_authors_way"] = round(report["ours_transformers"]["tokens_per_second"]
                                             / report["authors_way_transformers"]["tokens_per_second"], 2)
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    out = HERE / "results" / "generated-text-speed.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
