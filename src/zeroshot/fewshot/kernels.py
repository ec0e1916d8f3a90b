"""Kernels between embeddings, and the small numeric helpers the estimators share.

For unit vectors the RBF kernel exp(-gamma * |x - y|^2) equals exp(-2 * gamma * (1 - cos)): the
exponential kernel with beta = 2 * gamma. They differ only on embeddings that are not normalised.
"""

from __future__ import annotations

import numpy as np

from zeroshot.numerics import l2_normalize, log_softmax, softmax

KERNELS = ("exponential", "cosine", "rbf")


def binary_margin(logits: np.ndarray) -> np.ndarray:
    """(n, 2) logits -> (n,) margin of class 1 over class 0, as scikit-learn's binary decision_function;
    more classes pass through unchanged."""
    return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits


def cross_entropy(logits: np.ndarray, onehot: np.ndarray) -> float:
    """Mean cross-entropy of `logits` against one-hot targets (0 for no rows)."""
    if logits.shape[0] == 0:
        return 0.0
    return float(-(log_softmax(logits, axis=1) * onehot).sum(axis=1).mean())


def kernel_matrix(A: np.ndarray, B: np.ndarray, kernel: str, beta: float, gamma: float) -> np.ndarray:
    """K[i, j] = k(A[i], B[j]) for the named kernel.

    - "cosine": cos(a, b), a linear kernel on unit vectors (the adapter stays a linear classifier);
    - "exponential": exp(beta * (cos(a, b) - 1)), Tip-Adapter's affinity, 1 at the same point;
    - "rbf": exp(-gamma * |a - b|^2) on the raw embeddings.
    """
    if kernel == "rbf":
        squared = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * A @ B.T
        return np.exp(-gamma * np.maximum(squared, 0.0))
    cosine = l2_normalize(A) @ l2_normalize(B).T
    if kernel == "cosine":
        return cosine
    if kernel == "exponential":
        return np.exp(beta * (cosine - 1.0))
    raise ValueError(f"unknown kernel {kernel!r}: choose one of {', '.join(KERNELS)}")


class LogitClassifierMixin:
    """`decision_function`, `predict_proba` and `predict` for estimators that define `logits(X)`."""

    def decision_function(self, X) -> np.ndarray:
        """`logits`, except with two classes: the margin of the second over the first (as scikit-learn)."""
        return binary_margin(self.logits(X))

    def predict_proba(self, X) -> np.ndarray:
        return softmax(self.logits(X))

    def predict(self, X) -> np.ndarray:
        logits = self.logits(X)  # first, so an unfitted estimator raises NotFittedError
        return self.classes_[np.argmax(logits, axis=1)]
