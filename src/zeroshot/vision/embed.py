"""Stream images through a CLIP-family image encoder in batches, decoding in parallel with the model.

A thread pool decodes, resizes and crops the images of the next batches while the model encodes the
current one (PIL and torch release the GIL, so threads overlap for real). A file that cannot be used is
reported in its batch's `failures` with the reason; it never stops the stream.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice

import numpy as np
from PIL import Image

from zeroshot.errors import UserError
from zeroshot.models.clip import ImageSpec, ImageTextModel
from zeroshot.vision.images import ImageError, load_image
from zeroshot.vision.transforms import normalise_batch, resize_and_crop

ImageSource = str | os.PathLike | bytes | Image.Image


@dataclass
class ImageBatch:
    """One batch of results: which inputs it covers, their embeddings, and the inputs that failed."""

    indices: list[int]  # positions in `sources` embedded in this batch, in order
    embeddings: np.ndarray  # (len(indices), dim) float32, L2-normalised
    failures: list[tuple[int, str]] = field(default_factory=list)  # (position, reason)


def prepare_image(source: ImageSource, spec: ImageSpec) -> np.ndarray:
    """Decode one image and resize/crop it for the model: (H, W, 3) uint8. Raises `ImageError`."""
    try:
        return resize_and_crop(load_image(source), spec)
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - a decoder bug on one odd file must not stop the batch
        name = "image" if isinstance(source, bytes | Image.Image) else str(source)
        raise ImageError(f"{name}: cannot decode ({type(exc).__name__}: {exc})") from exc


def iter_image_embeddings(model: ImageTextModel, sources: Iterable[ImageSource], batch_size: int = 32,
                          num_workers: int = 2, progress: bool = True, prefetch_batches: int = 2
                          ) -> Iterator[ImageBatch]:
    """Embed `sources` (paths, raw bytes or PIL images) batch by batch, in order.

    Each `ImageBatch` covers the next `batch_size` sources: the ones that decoded are in `indices` and
    `embeddings`, the others in `failures` with a reason. `num_workers` threads decode up to
    `prefetch_batches` batches ahead of the model. Shows a tqdm progress bar unless `progress` is False.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    total = len(sources) if isinstance(sources, Sequence) else None
    spec = model.image_spec
    chunks = _chunks(enumerate(sources), batch_size)
    pending: deque[list[tuple[int, Future]]] = deque()
    with ThreadPoolExecutor(max_workers=max(1, num_workers), thread_name_prefix="zeroshot-decode") as pool, \
            tqdm(total=total, unit="img", desc="embedding images", disable=not progress, leave=False) as bar:
        try:
            def submit_next() -> bool:
                chunk = next(chunks, None)
                if chunk is None:
                    return False
                pending.append([(index, pool.submit(prepare_image, source, spec)) for index, source in chunk])
                return True

            for _ in range(1 + max(0, prefetch_batches)):
                if not submit_next():
                    break
            while pending:
                jobs = pending.popleft()
                submit_next()  # keep the workers busy while the model runs on this batch
                batch = _encode(model, jobs)
                bar.update(len(jobs))
                yield batch
        finally:
            for jobs in pending:
                for _, future in jobs:
                    future.cancel()


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _encode(model: ImageTextModel, jobs: list[tuple[int, Future]]) -> ImageBatch:
    indices: list[int] = []
    arrays: list[np.ndarray] = []
    failures: list[tuple[int, str]] = []
    for index, future in jobs:
        try:
            arrays.append(future.result())
            indices.append(index)
        except ImageError as exc:
            failures.append((index, str(exc)))
    if not arrays:
        return ImageBatch([], np.zeros((0, model.embedding_dim), dtype=np.float32), failures)
    pixels = normalise_batch(np.stack(arrays), model.image_spec)
    return ImageBatch(indices, model.encode_images(pixels).astype(np.float32, copy=False), failures)


def embed_images(model: ImageTextModel, sources: Sequence[ImageSource], batch_size: int = 32,
                 num_workers: int = 2, progress: bool = True
                 ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
    """All of `iter_image_embeddings` at once: (indices, embeddings, failures).

    `indices` (int64) are the positions in `sources` that were embedded, row by row of `embeddings`.
    """
    indices: list[int] = []
    parts: list[np.ndarray] = []
    failures: list[tuple[int, str]] = []
    for batch in iter_image_embeddings(model, sources, batch_size, num_workers, progress):
        indices.extend(batch.indices)
        parts.append(batch.embeddings)
        failures.extend(batch.failures)
    embeddings = np.concatenate(parts) if parts else np.zeros((0, model.embedding_dim), dtype=np.float32)
    return np.asarray(indices, dtype=np.int64), embeddings, failures


def embed_decoded_images(clip, images: Sequence) -> np.ndarray:
    """(n, dim) float32 CLIP embeddings of decoded (PIL) images; `UserError` names the first that fails."""
    _, vectors, failures = embed_images(clip, list(images), num_workers=1, progress=False)
    if failures:
        index, reason = failures[0]
        raise UserError(f"image {index}: {reason}")
    return np.asarray(vectors, dtype=np.float32)
