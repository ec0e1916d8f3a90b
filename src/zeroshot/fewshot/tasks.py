"""Labelled embedding tasks for the few-shot curve: the built-in BBC News, or the user's own file.

Accepted TASK values (docs/fewshot.md has examples):
- `bbc-news`: the 2,225 BBC articles embedded by the chosen text encoder (cached on disk);
- `FILE.jsonl`: one `{"text": ..., "label": ...}` per line, embedded by the chosen text encoder;
  the zero-shot prior embeds each label through `templates`;
- `FILE.npz`: precomputed `embeddings` (n, d) and `labels` (n,), optionally `class_embeddings`
  (c, d) with `class_labels` (c,) for the zero-shot prior (without them only the methods that need
  no prior run);
- `FILE.npy`: precomputed embeddings, with one label per line in `FILE.labels.txt` beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zeroshot.errors import UserError
from zeroshot.fewshot._validation import check_embeddings
from zeroshot.fewshot.zero_shot_head import NEWS_TEMPLATES, ZeroShotHead
from zeroshot.validation import read_jsonl

GENERIC_TEMPLATES = ("This text is about {label}.", "{label}.")
# The prior's temperature for unit-norm sentence embeddings, chosen among 10, 30 and 100 on a development
# split of the BBC training pool (bench/fewshot_tune.py): with CLIP's 100 the prior is so sure of itself
# that a few shots barely move the adapters.
SENTENCE_LOGIT_SCALE = 10.0


@dataclass
class EmbeddingTask:
    """Embeddings with their labels, and the zero-shot head of the label prompts when there is one."""

    name: str
    embeddings: np.ndarray
    labels: np.ndarray
    prior: ZeroShotHead | None
    encoder: str

    @property
    def classes(self) -> np.ndarray:
        return np.unique(self.labels)


def load_embedding_task(
    task: str,
    encoder: str | None = None,
    templates: Sequence[str] | None = None,
    logit_scale: float = SENTENCE_LOGIT_SCALE,
    progress: bool = True,
    limit: int | None = None,
) -> EmbeddingTask:
    """Load TASK (see the module docstring).

    `limit` keeps a stratified subset of n examples for quick runs: every class, in the task's own
    proportions, drawn with seed `LIMIT_SEED` (the first n would keep only the first classes of a
    file sorted by label, as BBC News is).
    """
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}")
    if task == "bbc-news":
        from zeroshot.eval.datasets import load_bbc_news

        articles = load_bbc_news()
        articles = [articles[i] for i in stratified_subset([a.label for a in articles], limit)]
        texts, labels = [a.text for a in articles], [a.label for a in articles]
        return _embed_texts(
            "bbc-news", texts, labels, encoder, templates or NEWS_TEMPLATES, logit_scale, progress
        )
    path = Path(task).expanduser()
    if not path.is_file():
        raise UserError(f"task {task!r} is neither `bbc-news` nor an existing file (.jsonl, .npz or .npy)")
    if path.suffix == ".jsonl":
        texts, labels = _read_jsonl(path)
        keep = stratified_subset(labels, limit)
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
        return _embed_texts(
            path.name, texts, labels, encoder, templates or GENERIC_TEMPLATES, logit_scale, progress
        )
    if path.suffix in (".npz", ".npy"):
        if encoder is not None:
            raise UserError(f"{path.name} holds precomputed embeddings: drop --encoder")
        return _read_arrays(path, logit_scale, limit)
    raise UserError(f"unknown task file type {path.suffix!r}: use .jsonl (text + label), .npz or .npy")


LIMIT_SEED = 0


def stratified_subset(labels: Sequence, limit: int | None, seed: int = LIMIT_SEED) -> list[int]:
    """Indices of `limit` examples keeping every class in its share of `labels` (all of them if None).

    Largest-remainder allocation with at least one example per class; within a class the examples
    are drawn by a seeded shuffle; the indices come back in their original order.
    """
    n = len(labels)
    if limit is None or limit >= n:
        return list(range(n))
    by_class: dict = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    if limit < len(by_class):
        raise UserError(f"--limit {limit} cannot keep one example of each of the task's {len(by_class)} "
                        f"classes: use --limit {len(by_class)} or more")
    shares = {c: len(members) * limit / n for c, members in by_class.items()}
    take = {c: max(1, int(share)) for c, share in shares.items()}
    by_remainder = sorted(by_class, key=lambda c: (shares[c] - int(shares[c]), len(by_class[c])),
                          reverse=True)
    while sum(take.values()) < limit:
        for c in by_remainder:
            if sum(take.values()) < limit and take[c] < len(by_class[c]):
                take[c] += 1
    while sum(take.values()) > limit:  # the one-per-class floor overshot: trim the largest classes
        largest = max(take, key=lambda c: take[c])
        take[largest] -= 1
    rng = np.random.default_rng(seed)
    kept = [i for c, members in by_class.items() for i in rng.permutation(members)[: take[c]].tolist()]
    return sorted(kept)


def _embed_texts(name, texts, labels, encoder_spec, templates, logit_scale, progress) -> EmbeddingTask:
    from zeroshot.fewshot.embeddings_cache import cached_encode
    from zeroshot.models.sentence import load_text_encoder

    encoder = load_text_encoder(encoder_spec)
    embeddings = cached_encode(encoder, texts, progress=progress)
    classes = sorted(set(labels))
    prior = ZeroShotHead.from_prompts(encoder, classes, templates, logit_scale=logit_scale)
    return EmbeddingTask(name, embeddings, np.asarray(labels), prior, encoder.name)


def _read_jsonl(path: Path) -> tuple[list[str], list[str]]:
    # a label may be a number in the file; it is a class name here
    rows = read_jsonl(path, {"text": str, "label": (str, int, float, bool)})
    if not rows:
        raise UserError(f"{path.name} has no examples")
    return [row["text"] for _, row in rows], [str(row["label"]) for _, row in rows]


def _read_arrays(path: Path, logit_scale: float, limit: int | None) -> EmbeddingTask:
    prior = None
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                if "embeddings" not in arrays or "labels" not in arrays:
                    raise UserError(f"{path.name} must hold arrays named `embeddings` and `labels`")
                embeddings, labels = arrays["embeddings"], arrays["labels"]
                if "class_embeddings" in arrays:
                    class_labels = arrays["class_labels"] if "class_labels" in arrays else None
                    prior = ZeroShotHead(arrays["class_embeddings"], class_labels, logit_scale=logit_scale)
        else:
            embeddings = np.load(path, allow_pickle=False)
            label_file = path.with_suffix(".labels.txt")
            if not label_file.is_file():
                raise UserError(f"{path.name} needs its labels in {label_file.name} (one per line)")
            labels = np.array([line.strip() for line in label_file.read_text().splitlines() if line.strip()])
    except (ValueError, OSError) as exc:
        raise UserError(f"cannot read {path.name}: {exc}") from exc
    embeddings = check_embeddings(embeddings, f"embeddings in {path.name}").astype(np.float32)
    labels = np.asarray(labels)
    if labels.shape != (len(embeddings),):
        raise UserError(f"{path.name}: {len(embeddings)} embeddings but {labels.size} labels")
    keep = stratified_subset(labels.tolist(), limit)
    embeddings, labels = embeddings[keep], labels[keep]
    if prior is not None:
        prior.fit(embeddings[:1])  # the width check, with a clear message, before any experiment
    return EmbeddingTask(
        path.name,
        embeddings,
        labels.astype(str) if labels.dtype.kind in "OU" else labels,
        prior,
        "precomputed",
    )
