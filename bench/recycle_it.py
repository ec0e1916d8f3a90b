"""Recycling the default English LM for Italian (issue 16): held-out bits per byte of
(a) the base model with its own tokenizer, (b) recycled embeddings with the body frozen (mean init, and
random init for comparison), (c) the same steps training the whole model; tokens per byte under both
tokenizers, training time, and sampled continuations of Italian prompts from (a) and (b).

Needs the corpus from `python -m bench.recycle_setup --langs it`. Writes JSON after every stage.

    python -m bench.recycle_it --steps 1000 --out bench/results/recycle_it.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.common import recycle_samples


def _save(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=".cache/recycle/it")
    parser.add_argument("--model", default=None)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--full-lr", type=float, default=2e-4)
    parser.add_argument("--runs", default="mean,random,full")
    parser.add_argument("--held-out-limit", type=int, default=None, help="held-out paragraphs scored")
    parser.add_argument("--device", default=None)
    parser.add_argument("--work", default=".cache/recycle-runs")
    parser.add_argument("--out", default="bench/results/recycle_it.json")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zeroshot.train.recycle import RecycleConfig, bits_per_byte, read_corpus, recycle_lm, split_corpus
    from zeroshot.train.soft_prompt import trainable_model

    torch.backends.cuda.matmul.allow_tf32 = True
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    base = trainable_model(args.model)
    train, held = split_corpus(read_corpus(args.corpus))
    held_eval = held[: args.held_out_limit] if args.held_out_limit else held
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data: dict = {
        "corpus": args.corpus,
        "train_paragraphs": len(train),
        "held_out_paragraphs": len(held),
        "held_out_scored": len(held_eval),
        "train_bytes": sum(len(t.encode()) for t in train),
        "device": device + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else ""),
        "args": vars(args),
        "runs": {},
    }

    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).to(device)
    tokenizer = AutoTokenizer.from_pretrained(base)
    data["runs"]["a-base"] = {
        "held_out": bits_per_byte(model, tokenizer, held_eval, args.seq_len).to_dict(),
        "train_tokens_per_byte": None,
        "eval_seconds": time.perf_counter() - started,
    }
    data["runs"]["a-base"]["samples"] = recycle_samples(base, device, 0)
    del model
    _save(out, data)
    print("a-base", data["runs"]["a-base"]["held_out"], flush=True)

    shared_tokenizer = None
    for run in args.runs.split(","):
        mode = "full" if run == "full" else "embeddings"
        init = "random" if run == "random" else "mean"
        config = RecycleConfig(
            init=init,
            mode=mode,
            steps=args.steps,
            seq_len=args.seq_len,
            batch_size=args.batch_size,
            learning_rate=args.full_lr if mode == "full" else args.lr,
            save_every=max(1, args.steps // 20),
        )
        folder = Path(args.work) / run
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        result = recycle_lm(
            base, train, folder, config, device=device, progress=False, tokenizer=shared_tokenizer
        )
        tokenizer = AutoTokenizer.from_pretrained(folder)
        shared_tokenizer = shared_tokenizer or tokenizer
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device)
        started = time.perf_counter()
        score = bits_per_byte(model, tokenizer, held_eval, args.seq_len).to_dict()
        entry = {"held_out": score, "result": result.to_dict(), "eval_seconds": time.perf_counter() - started}
        if run == "mean":
            entry["samples"] = recycle_samples(str(folder), device, 0)
            # Before any training: the initialisation alone.
            init_only = recycle_lm(
                base,
                train,
                Path(args.work) / "mean-step0",
                RecycleConfig(init="mean", steps=1, learning_rate=1e-12, warmup=1),
                device=device,
                progress=False,
                tokenizer=shared_tokenizer,
            )
            init_model = AutoModelForCausalLM.from_pretrained(init_only.output_dir).to(device)
            entry["held_out_at_init"] = bits_per_byte(
                init_model, tokenizer, held_eval, args.seq_len
            ).to_dict()
        data["runs"][f"{'c' if run == 'full' else 'b'}-{run}"] = entry
        _save(out, data)
        print(run, score, result.seconds, flush=True)
        del model


if __name__ == "__main__":
    main()
