"""The measurement set for machine-written text detection (issue 30): real BBC News articles, and the same
articles written by each ladder model from the same headline and first sentence.

    python -m bench.generated_text_set --generator gemma-3-270m            # one ladder model
    python -m bench.generated_text_set --generator all                     # the whole ladder

For each article (BBC News, exact and near-duplicate articles removed, a fixed seeded order; the first
`--dev` are the dev split, the next `--test` the test split) the *context* is the headline and the body's
first sentence, as GPT-3's news experiment gave its model the title and subtitle. The *human* text is the
rest of the real body; the *machine* text is what the generator writes after the same context, sampled
with the settings its makers publish (`SAMPLING`). Both are cut to the same number of words
(`--words`), with whitespace collapsed the same way, so that length and layout tell nothing.

Generation runs batched through PyTorch (the GGUF de-quantised once to float32) or one article at a
time through llama.cpp (`--engine llama.cpp`); the note says which ran for which model, and why. Rows
are appended as they come to `.cache/generated-text/<generator>.jsonl`: an interrupted run keeps what it
wrote and resumes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
OUT = HERE.parent / ".cache" / "generated-text"
GENERATORS = ("gemma-3-270m", "qwen2.5-coder-0.5b", "smollm2-135m", "qwen2.5-coder-1.5b")
# The sampling each maker publishes (generation_config.json, or the model card's example): Gemma 3: top-k
# 64, top-p 0.95 at temperature 1; Qwen2.5 instruct: temperature 0.7, top-p 0.8, top-k 20, repetition
# penalty 1.05; SmolLM2-Instruct: temperature 0.2, top-p 0.9.
SAMPLING = {
    "smollm2-135m": {"temperature": 0.2, "top_k": 0, "top_p": 0.9, "repetition_penalty": 1.0},
    "gemma-3-270m": {"temperature": 1.0, "top_k": 64, "top_p": 0.95, "repetition_penalty": 1.0},
    "qwen2.5-coder-0.5b": {"temperature": 0.7, "top_k": 20, "top_p": 0.8, "repetition_penalty": 1.05},
    "qwen2.5-coder-1.5b": {"temperature": 0.7, "top_k": 20, "top_p": 0.8, "repetition_penalty": 1.05},
}


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def first_words(text: str, n: int) -> str:
    return " ".join(normalise(text).split(" ")[:n])


def split_first_sentence(body: str) -> tuple[str, str]:
    """The body's first sentence and the rest (BBC bodies open with a one-sentence paragraph)."""
    body = body.strip()
    head, _, rest = body.partition("\n")
    match = re.search(r"(?<=[.!?])\s", head)
    if match:  # a first paragraph of several sentences: cut after the first
        head, rest = head[: match.start()], head[match.end():] + "\n" + rest
    return head.strip(), rest.strip()


def articles(n_dev: int, n_test: int, words: int, seed: int = 0, extra_human: int = 0) -> list[dict]:
    """Deduplicated BBC articles with a long enough rest, shuffled with `seed`: dev first, then test, then
    `extra_human` more dev articles that only people wrote (a threshold at 1 % of humans needs more
    humans than the generated dev articles give, and human text costs no generation)."""
    from zeroshot.eval.datasets import load_bbc_news

    seen_titles, seen_bodies, rows = set(), set(), []
    for article in load_bbc_news():
        title, body = normalise(article.title).lower(), normalise(article.body).lower()
        # Near duplicates in BBC News repeat the title or the opening of the body (issue 28 found 44).
        if title in seen_titles or body[:200] in seen_bodies:
            continue
        seen_titles.add(title)
        seen_bodies.add(body[:200])
        first, rest = split_first_sentence(article.body)
        if len(rest.split()) < words or not first:
            continue
        rows.append({"id": article.id, "context": f"{article.title.strip()}\n\n{first}",
                     "human": first_words(rest, words)})
    order = np.random.default_rng(seed).permutation(len(rows))
    picked = [rows[i] for i in order[: n_dev + n_test + extra_human]]
    for i, row in enumerate(picked):
        row["split"] = "test" if n_dev <= i < n_dev + n_test else "dev"
        row["human_only"] = i >= n_dev + n_test
    return picked


def generate_llamacpp(generator: str, rows: list[dict], todo: list[dict], words: int, max_new_tokens: int,
                      seed: int) -> None:
    """One article at a time through the product's llama.cpp backend (faster than batched PyTorch for
    the small models on 2 cores), seeded per article."""
    from zeroshot.models.lm import GenerationConfig
    from zeroshot.models.loader import load_lm

    lm = load_lm(generator, backend="llama.cpp")
    settings = SAMPLING[generator]
    out = OUT / f"{generator}.jsonl"
    started, written = time.perf_counter(), 0
    for n, row in enumerate(todo, 1):
        config = GenerationConfig(max_new_tokens=max_new_tokens, seed=seed * 1_000_003 + rows.index(row),
                                  **settings)
        text = lm.generate(row["context"] + " ", config)
        written += lm.last_num_tokens
        machine = first_words(text, words)
        with out.open("a") as f:
            f.write(json.dumps({**row, "machine": machine, "generator": generator,
                                "machine_words": len(machine.split()), "sampling": settings,
                                "engine": "llama.cpp"}) + "\n")
        if n % 16 == 0:
            print(f"  {n}/{len(todo)}  {written / (time.perf_counter() - started):.1f} generated tokens/s",
                  flush=True)


def generate(generator: str, rows: list[dict], words: int, max_new_tokens: int, batch: int,
             seed: int, engine: str = "torch", splits: tuple[str, ...] = ("dev", "test")) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zeroshot.models.catalogue import get, require_installed
    from zeroshot.models.dequantise import gguf_to_hf_folder

    out = OUT / f"{generator}.jsonl"
    done = set()
    if out.exists():
        done = {json.loads(line)["id"] for line in out.read_text().splitlines() if line.strip()}
    todo = [r for r in rows if r["id"] not in done and not r.get("human_only") and r["split"] in splits]
    print(f"{generator}: {len(done)} done, {len(todo)} to write", flush=True)
    if not todo:
        return
    if engine == "llama.cpp":
        generate_llamacpp(generator, rows, todo, words, max_new_tokens, seed)
        return
    folder = gguf_to_hf_folder(require_installed(get(generator)))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    settings = SAMPLING[generator]
    OUT.mkdir(parents=True, exist_ok=True)
    started, written = time.perf_counter(), 0
    for start in range(0, len(todo), batch):
        chunk = todo[start: start + batch]
        # Each batch's seed is a function of (seed, its first article), so a resumed run writes the same.
        torch.manual_seed(seed * 1_000_003 + rows.index(chunk[0]))
        enc = tokenizer([r["context"] + " " for r in chunk], return_tensors="pt", padding=True,
                        add_special_tokens=True)
        with torch.inference_mode():
            ids = model.generate(**enc, do_sample=True, max_new_tokens=max_new_tokens,
                                 pad_token_id=tokenizer.pad_token_id, **settings)
        new = ids[:, enc["input_ids"].shape[1]:]
        with out.open("a") as f:
            for row, tokens in zip(chunk, new, strict=True):
                text = tokenizer.decode(tokens, skip_special_tokens=True)
                machine = first_words(text, words)
                f.write(json.dumps({**row, "machine": machine, "generator": generator,
                                    "machine_words": len(machine.split()), "sampling": settings}) + "\n")
                written += int((tokens != tokenizer.pad_token_id).sum())
        elapsed = time.perf_counter() - started
        print(f"  {start + len(chunk)}/{len(todo)}  {written / elapsed:.1f} generated tokens/s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generator", default="all", help="a ladder model name, or all")
    parser.add_argument("--dev", type=int, default=40)
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--words", type=int, default=50)
    parser.add_argument("--max-new-tokens", type=int, default=80)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engine", choices=("torch", "llama.cpp"), default="torch")
    parser.add_argument("--extra-human", type=int, default=40, help="human-only dev articles")
    parser.add_argument("--splits", default="dev,test",
                        help="splits to write (test: a generator added after the dev choices)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    rows = articles(args.dev, args.test, args.words, args.seed, args.extra_human)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "articles.json").write_text(json.dumps(rows, indent=1))
    for generator in GENERATORS if args.generator == "all" else (args.generator,):
        generate(generator, rows, args.words, args.max_new_tokens, args.batch, args.seed, args.engine,
                 tuple(args.splits.split(",")))


if __name__ == "__main__":
    main()
