"""Held-out bits per byte (and optionally 5 samples) of one recycled HF folder; written to its own JSON.

    python -m bench.recycle_eval FOLDER NAME --samples --out bench/results/recycle_it_NAME.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from bench.common import recycle_samples
from transformers import AutoModelForCausalLM, AutoTokenizer

from zeroshot.train.recycle import bits_per_byte, read_corpus, split_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("name")
    parser.add_argument("--corpus", default=".cache/recycle/it")
    parser.add_argument("--held-out-limit", type=int, default=20)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--samples", action="store_true")
    parser.add_argument("--note", default="")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    _, held = split_corpus(read_corpus(args.corpus))
    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(args.folder, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(args.folder)
    entry = {"held_out": bits_per_byte(model, tokenizer, held[: args.held_out_limit], args.seq_len).to_dict(),
             "eval_seconds": time.perf_counter() - started, "note": args.note}
    if args.samples:
        entry["samples"] = recycle_samples(args.folder, "cpu", 0)
    out = Path(args.out)
    data = {"folder": args.folder, "runs": {args.name: entry}}
    out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(args.name, entry["held_out"], flush=True)


if __name__ == "__main__":
    main()
