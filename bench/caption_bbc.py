"""BBC headline generation with a prefix captioner against three baselines (issue 14), in one run.

Encoder: all-MiniLM-L6-v2 over the article body without its title (precomputed once by
`bench/caption_bbc_prepare.py`). LM: the default SmolLM2-135M-Instruct GGUF, de-quantised to float32
(`zeroshot.models.dequantise.gguf_to_hf_folder`), frozen. Captions: the titles. Train on the 1,781
pool articles, test on the 444 held-out ones.

- baselines: (a) the title of the nearest pool article by embedding; (b) the LM zero-shot with
  "Article: ...\\nHeadline:"; (c) the LM with 4 fixed demonstrations from the pool. Bodies are cut to
  `--body-tokens` LM tokens; greedy decoding of at most `--max-tokens` tokens, cut at the first newline.
- captioner: a dev split of the pool (200 articles, seeded) picks the learning rate of each
  (mapper, prefix length) by teacher-forced dev loss, and gives dev predictions (the best configuration
  is named by dev CIDEr, scored by `bench/caption_bbc_score.py`); then every configuration trains on
  the whole pool with each seed and captions the test articles.

Writes JSON (every prediction, training times, parameter counts) after each finished run, so an
interrupted run keeps what it finished. Scoring (pycocoevalcap) is a separate step:

    PYTHONPATH=src python bench/caption_bbc.py --inputs bench/results/caption-bbc-inputs.npz \\
        --out bench/results/caption-bbc-runs.json --device cuda
    PYTHONPATH=src python bench/caption_bbc_score.py bench/results/caption-bbc-runs.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from zeroshot.caption.captioner import CaptionerConfig, PrefixCaptioner, load_caption_lm
from zeroshot.models.lm import GenerationConfig


def truncate_bodies(lm, bodies, n_tokens: int) -> list[str]:
    tokenizer = lm.tokenizer
    return [
        tokenizer.decode(tokenizer(b, add_special_tokens=False)["input_ids"][:n_tokens]).strip()
        for b in bodies
    ]


@torch.inference_mode()
def generate_batch(lm, prompts: list[str], max_tokens: int, batch_size: int = 32) -> list[str]:
    """Greedy completions of many prompts at once (left padding), cut at the first newline."""
    tokenizer = lm.tokenizer
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    config = lm._hf_config(GenerationConfig(max_new_tokens=max_tokens))
    out = []
    for begin in range(0, len(prompts), batch_size):
        batch = tokenizer(prompts[begin : begin + batch_size], return_tensors="pt", padding=True).to(
            lm.device
        )
        ids = lm.model.generate(**batch, generation_config=config)
        for row in ids[:, batch["input_ids"].shape[1] :]:
            out.append(tokenizer.decode(row, skip_special_tokens=True).strip().split("\n")[0].strip())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default=None, help="GGUF or HF folder (default: the built-in GGUF)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--prefix-lengths", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--mappers", nargs="+", default=["mlp", "transformer"])
    parser.add_argument("--lrs", type=float, nargs="+", default=[2e-4, 1e-3])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dev-size", type=int, default=200)
    parser.add_argument("--body-tokens", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=20)
    parser.add_argument("--limit", type=int, default=None, help="first N pool and test articles (dry runs)")
    parser.add_argument("--budget-s", type=float, default=1e9, help="start no new run after this many s")
    args = parser.parse_args()
    started = time.perf_counter()
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 as on the CPU

    data = np.load(args.inputs)
    emb, titles, bodies = (
        data["embeddings"],
        [str(t) for t in data["titles"]],
        [str(b) for b in data["bodies"]],
    )
    pool, test = data["pool"][: args.limit], data["test"][: args.limit]
    dev_rng = np.random.default_rng(14)
    dev = np.sort(dev_rng.choice(pool, size=min(args.dev_size, len(pool) // 5), replace=False))
    train = np.array([i for i in pool if i not in set(dev.tolist())])

    load_started = time.perf_counter()
    lm = load_caption_lm(args.model, device=args.device)
    device_name = torch.cuda.get_device_name() if lm.device.type == "cuda" else "cpu"
    results = {
        "setup": {
            "device": device_name,
            "lm": lm.name,
            "n_pool": len(pool),
            "n_test": len(test),
            "n_dev": len(dev),
            "n_train_for_dev": len(train),
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "body_tokens": args.body_tokens,
            "max_tokens": args.max_tokens,
            "lm_load_s": time.perf_counter() - load_started,
            "torch": torch.__version__,
        },
        "references": {"test": [titles[i] for i in test], "dev": [titles[i] for i in dev]},
        "test_ids": [str(data["ids"][i]) for i in test],
        "baselines": {},
        "dev_runs": [],
        "runs": [],
    }

    def save() -> None:
        results["elapsed_s"] = time.perf_counter() - started
        args.out.write_text(json.dumps(results, indent=1))

    # (a) nearest neighbour: the title of the most similar pool article (cosine; the rows are unit vectors)
    began = time.perf_counter()
    nearest = pool[np.argmax(emb[test] @ emb[pool].T, axis=1)]
    results["baselines"]["nearest_neighbour"] = {
        "test": [titles[i] for i in nearest],
        "seconds": time.perf_counter() - began,
    }
    # (b) zero-shot and (c) 4 fixed demonstrations, both greedy from the same LM.
    short = dict(
        zip(
            np.concatenate([pool, test]).tolist(),
            truncate_bodies(lm, [bodies[i] for i in np.concatenate([pool, test])], args.body_tokens),
            strict=True,
        )
    )
    demos = np.random.default_rng(4).choice(pool, size=4, replace=False)
    shots = "".join(f"Article: {short[i]}\nHeadline: {titles[i]}\n\n" for i in demos)
    for name, prefix in (("zero_shot", ""), ("four_shot", shots)):
        began = time.perf_counter()
        prompts = [f"{prefix}Article: {short[i]}\nHeadline:" for i in test]
        results["baselines"][name] = {
            "test": generate_batch(lm, prompts, args.max_tokens),
            "seconds": time.perf_counter() - began,
        }
    results["baselines"]["four_shot"]["demonstrations"] = [str(data["ids"][i]) for i in demos]
    save()
    print(f"baselines done at {time.perf_counter() - started:.0f} s", flush=True)

    decode = GenerationConfig(max_new_tokens=args.max_tokens)

    def train_one(mapper, length, lr, seed, rows):
        config = CaptionerConfig(embedding_dim=emb.shape[1], prefix_length=length, mapper=mapper)
        captioner = PrefixCaptioner(
            config,
            lm,
            encoder={"kind": "sentence", "name": "all-MiniLM-L6-v2", "embedding_dim": int(emb.shape[1])},
            seed=seed,
        )
        if lm.device.type == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        captioner.fit(
            emb[rows],
            [titles[i] for i in rows],
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=lr,
            seed=seed,
        )
        if lm.device.type == "cuda":
            torch.cuda.synchronize()
        return captioner, time.perf_counter() - began

    @torch.inference_mode()
    def dev_loss(captioner) -> float:
        ids = captioner.caption_ids([titles[i] for i in dev])
        losses = [
            float(captioner.loss(torch.as_tensor(emb[dev[b : b + 64]]).to(lm.device), ids[b : b + 64]))
            * len(ids[b : b + 64])
            for b in range(0, len(dev), 64)
        ]
        return sum(losses) / len(dev)

    chosen_lr = {}
    for mapper in args.mappers:
        for length in args.prefix_lengths:
            best = None
            for lr in args.lrs:
                if time.perf_counter() - started > args.budget_s:
                    break
                captioner, seconds = train_one(mapper, length, lr, 0, train)
                row = {
                    "mapper": mapper,
                    "prefix_length": length,
                    "lr": lr,
                    "seed": 0,
                    "train_seconds": seconds,
                    "dev_loss": dev_loss(captioner),
                    "epoch_losses": captioner.history.epoch_losses,
                    "dev": captioner.generate(emb[dev], decode, batch_size=128),
                }
                results["dev_runs"].append(row)
                if best is None or row["dev_loss"] < best["dev_loss"]:
                    best = row
                save()
                print(
                    f"dev {mapper} p={length} lr={lr}: loss {row['dev_loss']:.3f} ({seconds:.0f} s)",
                    flush=True,
                )
            if best is not None:
                chosen_lr[f"{mapper}-{length}"] = best["lr"]
    results["chosen_lr"] = chosen_lr

    for seed in args.seeds:
        for mapper in args.mappers:
            for length in args.prefix_lengths:
                key = f"{mapper}-{length}"
                if key not in chosen_lr or time.perf_counter() - started > args.budget_s:
                    continue
                captioner, seconds = train_one(mapper, length, chosen_lr[key], seed, pool)
                began = time.perf_counter()
                predictions = captioner.generate(emb[test], decode, batch_size=128)
                results["runs"].append(
                    {
                        "mapper": mapper,
                        "prefix_length": length,
                        "lr": chosen_lr[key],
                        "seed": seed,
                        "train_seconds": seconds,
                        "caption_seconds": time.perf_counter() - began,
                        "epoch_losses": captioner.history.epoch_losses,
                        "parameters": captioner.parameter_counts(),
                        "test": predictions,
                    }
                )
                save()
                print(f"test {key} seed {seed}: {seconds:.0f} s, e.g. {predictions[0]!r}", flush=True)
    save()
    print(f"done in {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
