"""The few numerical rules every task shares: softmax, log-softmax, L2 normalisation, batching.

Written once so that a probability means the same thing in every command: computed in float64 over
the last axis, with the maximum subtracted first so that large scores never overflow.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def log_softmax(scores: np.ndarray, axis: int = -1, dtype: type = np.float64) -> np.ndarray:
    """Log-probabilities over `axis`, computed in `dtype` (float64; float32 for whole-vocabulary
    distributions, as PyTorch's are: float64 there cost the llama.cpp backend's Binoculars a tenth of
    its time, for differences of 1e-6 in the scores; bench/generated_text_speed.py)."""
    shifted = np.array(scores, dtype=dtype)  # a copy, which the steps below may overwrite
    shifted -= shifted.max(axis=axis, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    return shifted


def softmax(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """Probabilities over `axis` (float64), summing to 1."""
    return np.exp(log_softmax(scores, axis))


def l2_normalize(vectors: np.ndarray, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    """`vectors` scaled to unit length along `axis`; an all-zero vector stays zero instead of NaN."""
    vectors = np.asarray(vectors)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=axis, keepdims=True), eps)


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most `size` items (the last may be shorter); `itertools.batched` in 3.12."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def batch_slices(n: int, size: int) -> Iterator[slice]:
    """Slices covering range(n) in consecutive batches of at most `size` (for arrays and tensors)."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


