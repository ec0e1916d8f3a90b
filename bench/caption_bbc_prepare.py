"""Prepare the BBC headline-generation measurement (issue 14): split, MiniLM embeddings, texts.

The encoder is all-MiniLM-L6-v2 over each article's body *without* its title (the caption to learn);
the split is the built-in BBC task's (1,781 pool / 444 test, `zeroshot.eval.tasks.bbc_news_task`).
Writes one .npz (embeddings float32, titles, bodies, split) that `bench/caption_bbc.py` reads, so the
embeddings are computed once.

    PYTHONPATH=src nice -n 10 python bench/caption_bbc_prepare.py --out bench/results/caption-bbc-inputs.npz
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from zeroshot.eval.datasets import load_bbc_news
from zeroshot.eval.tasks import bbc_news_task
from zeroshot.models.sentence import load_sentence_encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    articles = load_bbc_news()
    task = bbc_news_task()
    # Docs carry the article's position in `load_bbc_news()`: the split, with no text matching needed.
    pool = np.array([doc.line for doc in task.pool], dtype=np.int64)
    test = np.array([doc.line for doc in task.docs], dtype=np.int64)
    assert len(pool) == 1781 and len(test) == 444, (len(pool), len(test))
    encoder = load_sentence_encoder(None)
    started = time.perf_counter()
    embeddings = encoder.encode([a.body for a in articles], batch_size=32, progress=True)
    seconds = time.perf_counter() - started
    np.savez_compressed(
        args.out,
        embeddings=embeddings,
        titles=np.array([a.title for a in articles]),
        bodies=np.array([a.body for a in articles]),
        ids=np.array([a.id for a in articles]),
        pool=pool,
        test=test,
        encoder=np.array(encoder.fingerprint()),
        embed_seconds=np.array(seconds),
    )
    print(f"{len(articles)} bodies embedded in {seconds:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
