"""Zero-shot image classification: class names in, probabilities out, no training.

`text_classifier` turns labels and prompt templates into a class-weight matrix the CLIP paper's way:
encode every "template with label" prompt, L2-normalise, average over the templates of each class,
re-normalise. The matrix is cached on disk (safetensors) under a key built from everything that
determines it: the model's weights fingerprint, the labels and the templates. `ZeroShotImageClassifier`
scores images against it: softmax over classes of logit_scale x cosine (CLIP), or a per-class sigmoid
with the learned bias (SigLIP).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from zeroshot.errors import UserError
from zeroshot.files import write_atomic
from zeroshot.models.clip import ImageTextModel, load_clip
from zeroshot.numerics import batched, l2_normalize
from zeroshot.validation import check_labels
from zeroshot.vision.embed import ImageSource, iter_image_embeddings
from zeroshot.vision.images import ImageError
from zeroshot.vision.templates import fill, get_templates

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the cached file's layout or meaning changes
_PROMPTS_PER_CALL = 256


def default_cache_dir() -> Path:
    """`$ZEROSHOT_CACHE/classifiers`, else `~/.cache/zeroshot/classifiers`."""
    root = os.environ.get("ZEROSHOT_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "zeroshot") / "classifiers"


def cache_key(model: ImageTextModel, labels: Sequence[str], templates: Sequence[str]) -> str:
    """The cache file's name for this model, labels and templates (a hash of all three)."""
    payload = json.dumps({"format": CACHE_FORMAT, "model": model.fingerprint, "labels": list(labels),
                          "templates": list(templates)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def text_classifier(model: ImageTextModel, labels: Sequence[str],
                    templates: str | Sequence[str] | None = None,
                    cache_dir: str | os.PathLike | None | Literal[False] = None,
                    progress: bool = False) -> np.ndarray:
    """The (n_labels, dim) class-weight matrix: per label, the re-normalised mean of its prompts' embeddings.

    `templates` is a shipped set's name, a file or a list (default: the 80 ImageNet templates).
    Cached in `cache_dir` (default `default_cache_dir()`; `False` disables the cache); a cached file
    that is unreadable or does not match is rebuilt, never trusted.
    """
    labels = check_labels(labels, minimum=1)  # a detector's single query is a weight matrix too
    templates = get_templates(templates)
    path = None
    if cache_dir is not False:
        folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        path = folder / f"{cache_key(model, labels, templates)}.safetensors"
        cached = _read_cache(path, model, labels, templates)
        if cached is not None:
            return cached
    weights = _ensemble(model, labels, templates, progress)
    if path is not None:
        _write_cache(path, weights, model, labels, templates)
    return weights


def _ensemble(model: ImageTextModel, labels: list[str], templates: list[str], progress: bool) -> np.ndarray:
    from tqdm.auto import tqdm

    prompts = [fill(template, label) for label in labels for template in templates]
    chunks = list(batched(prompts, _PROMPTS_PER_CALL))
    bar = tqdm(chunks, desc="encoding prompts", unit="batch", leave=False,
               disable=not progress or len(chunks) < 2)
    parts = [model.encode_texts(chunk) for chunk in bar]
    embeddings = np.concatenate(parts).reshape(len(labels), len(templates), -1)
    return l2_normalize(embeddings.mean(axis=1, dtype=np.float64)).astype(np.float32)


def _metadata(model: ImageTextModel, labels: list[str], templates: list[str]) -> dict[str, str]:
    return {"format": str(CACHE_FORMAT), "model": model.name, "fingerprint": model.fingerprint,
            "labels": json.dumps(labels), "templates": json.dumps(templates)}


def _read_cache(path: Path, model: ImageTextModel, labels: list[str],
                templates: list[str]) -> np.ndarray | None:
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="np") as handle:
            metadata = handle.metadata() or {}
            weights = handle.get_tensor("weights")
    except Exception as exc:  # noqa: BLE001 - any unreadable cache file is rebuilt
        log.warning("rebuilding the unreadable cached classifier %s (%s)", path, exc)
        return None
    expected = _metadata(model, labels, templates)
    norms = np.linalg.norm(weights, axis=-1) if weights.ndim == 2 else None
    if (any(metadata.get(key) != value for key, value in expected.items() if key != "model")
            or weights.shape != (len(labels), model.embedding_dim) or weights.dtype != np.float32
            or not np.all(np.isfinite(weights)) or norms is None or not np.allclose(norms, 1.0, atol=1e-3)):
        log.warning("rebuilding the cached classifier %s: it does not match its key", path)
        return None
    return weights


def _write_cache(path: Path, weights: np.ndarray, model: ImageTextModel, labels: list[str],
                 templates: list[str]) -> None:
    from safetensors.numpy import save_file

    # Written whole or not at all, so a crash or a concurrent reader never sees half a file.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = _metadata(model, labels, templates)
        write_atomic(path, lambda temporary: save_file({"weights": np.ascontiguousarray(weights)},
                                                       str(temporary), metadata=metadata))
    except OSError as exc:
        log.warning("could not cache the classifier in %s (%s); it will be rebuilt next time", path, exc)


@dataclass
class Prediction:
    """The result for one input image: its probabilities per label, or why it could not be read."""

    index: int  # position in the inputs
    source: str  # the path, or "image #index" for bytes and PIL images
    probabilities: np.ndarray | None  # (n_labels,) float32, None when the image failed
    error: str | None = None

    def to_dict(self, labels: Sequence[str], top_k: int = 5) -> dict:
        """JSON-ready, as the CLI (`--format json`) and the server report it: the best label, every
        label's probability (6 decimals) and the `top_k` best; or the error."""
        if self.probabilities is None:
            return {"image": self.source, "error": self.error}
        scores = {label: round(float(p), 6) for label, p in zip(labels, self.probabilities, strict=True)}
        order = np.argsort(-self.probabilities, kind="stable")[:top_k]
        return {"image": self.source, "label": labels[int(order[0])], "scores": scores,
                "top_k": [{"label": labels[i], "score": scores[labels[i]]} for i in order]}


def classification_to_dict(labels: Sequence[str], predictions: Iterable[Prediction], top_k: int = 5) -> dict:
    """The JSON of a classification run: the labels and one entry per image."""
    if top_k < 1:
        raise UserError("top-k must be at least 1")
    return {"labels": list(labels), "results": [p.to_dict(labels, top_k) for p in predictions]}


class ZeroShotImageClassifier:
    """Classify images into classes named only by text.

    >>> classifier = ZeroShotImageClassifier("openai/clip-vit-base-patch32", ["cat", "dog"])
    >>> classifier.predict(["pet.jpg"])  # doctest: +SKIP
    ['cat']

    `model` is an `ImageTextModel` or anything `load_clip` takes. `templates` defaults to the CLIP
    paper's 80 ImageNet templates. The class-weight matrix is built once (and cached on disk, see
    `text_classifier`); images are decoded in parallel and embedded in batches.
    """

    def __init__(self, model: ImageTextModel | str | os.PathLike, labels: Sequence[str],
                 templates: str | Sequence[str] | None = None, *, batch_size: int = 32, num_workers: int = 2,
                 cache_dir: str | os.PathLike | None | Literal[False] = None, progress: bool = False) -> None:
        self.model = model if isinstance(model, ImageTextModel) else load_clip(model)
        self.labels = check_labels(labels)
        self.templates = get_templates(templates)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.progress = progress
        self.class_weights = text_classifier(self.model, self.labels, self.templates, cache_dir, progress)

    def probabilities_from_embeddings(self, image_embeddings: np.ndarray) -> np.ndarray:
        """(n, n_labels) float32 probabilities for L2-normalised image embeddings (n, dim)."""
        cosine = torch.from_numpy(np.asarray(image_embeddings, dtype=np.float32)) @ torch.from_numpy(
            self.class_weights).T
        logits = cosine * self.model.logit_scale + self.model.logit_bias
        scores = torch.sigmoid(logits) if self.model.is_siglip else logits.softmax(dim=-1)
        return scores.numpy()

    def iter_predictions(self, images: Iterable[ImageSource]) -> Iterator[Prediction]:
        """One `Prediction` per input, in input order; unreadable images carry their error, never raise."""
        images = images if isinstance(images, Sequence) else list(images)
        batches = iter_image_embeddings(self.model, images, self.batch_size, self.num_workers, self.progress)
        for batch in batches:
            probabilities = self.probabilities_from_embeddings(batch.embeddings)
            results = [Prediction(index, _describe(images[index], index), row)
                       for index, row in zip(batch.indices, probabilities, strict=True)]
            results += [Prediction(index, _describe(images[index], index), None, reason)
                        for index, reason in batch.failures]
            yield from sorted(results, key=lambda prediction: prediction.index)

    def predict_proba(self, images: ImageSource | Sequence[ImageSource]) -> np.ndarray:
        """(n_images, n_labels) probabilities. Raises `ImageError` (a `UserError`) for an unreadable image."""
        rows = []
        for prediction in self.iter_predictions(_as_list(images)):
            if prediction.probabilities is None:
                raise ImageError(prediction.error or f"{prediction.source}: unreadable")
            rows.append(prediction.probabilities)
        return np.stack(rows) if rows else np.zeros((0, len(self.labels)), dtype=np.float32)

    def predict(self, images: ImageSource | Sequence[ImageSource]) -> list[str]:
        """The most probable label of each image."""
        return [self.labels[i] for i in self.predict_proba(images).argmax(axis=1)]

    def top_k(self, images: ImageSource | Sequence[ImageSource], k: int = 5) -> list[list[tuple[str, float]]]:
        """The `k` most probable (label, probability) pairs of each image, most probable first."""
        return [self.top_k_of(row, k) for row in self.predict_proba(images)]

    def top_k_of(self, probabilities: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
        """The `k` best (label, probability) pairs of one row of probabilities."""
        if k < 1:
            raise UserError("top-k must be at least 1")
        order = np.argsort(-probabilities, kind="stable")[:k]
        return [(self.labels[i], float(probabilities[i])) for i in order]


def _as_list(images: ImageSource | Sequence[ImageSource]) -> list[ImageSource]:
    if isinstance(images, str | os.PathLike | bytes) or hasattr(images, "getpixel"):
        return [images]
    return list(images)


def _describe(source: ImageSource, index: int) -> str:
    return str(source) if isinstance(source, str | os.PathLike) else f"image #{index}"
