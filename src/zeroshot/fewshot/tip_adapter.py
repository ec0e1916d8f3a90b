"""Tip-Adapter (Zhang et al., ECCV 2022): a training-free cache model added to a zero-shot prior.

    logits(x) = f0(x) + alpha * exp(-beta * (1 - x . F^T)) @ L

F are the L2-normalised support embeddings (the cache keys), L their one-hot labels (the values).
The paper's defaults, alpha = 1 and beta = 5.5, were set for CLIP, whose prior logits are 100 * cos;
other encoders and logit scales need other values (docs/fewshot.md gives ours for MiniLM).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from zeroshot.fewshot._prior import fit_support, one_hot, prior_logits
from zeroshot.fewshot._validation import FewShotInputError, check_embeddings
from zeroshot.fewshot.kernels import LogitClassifierMixin, kernel_matrix
from zeroshot.numerics import l2_normalize


class TipAdapter(LogitClassifierMixin, ClassifierMixin, BaseEstimator):
    """Zero-shot prior plus an affinity-weighted vote of the cached support examples; `fit` only stores them.

    Parameters
    ----------
    prior : ZeroShotHead or None
        f0; None leaves only the cache (a soft nearest-neighbour vote).
    alpha : float
        Weight of the cache relative to the prior.
    beta : float
        Sharpness of the affinity exp(-beta * (1 - cos)).
    """

    def __init__(self, prior=None, alpha: float = 1.0, beta: float = 5.5):
        self.prior = prior
        self.alpha = alpha
        self.beta = beta

    def fit(self, X, y) -> TipAdapter:
        if not (np.isfinite(self.alpha) and np.isfinite(self.beta)) or self.beta < 0:
            raise FewShotInputError(
                f"alpha must be a number and beta >= 0, got alpha={self.alpha}, beta={self.beta}"
            )
        X, y, self.prior_, self.classes_ = fit_support(self.prior, X, y)
        self.n_features_in_ = X.shape[1]
        self.support_ = l2_normalize(X)
        self.cache_values_ = one_hot(y, self.classes_)
        return self

    def logits(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = check_embeddings(X, dim=self.n_features_in_, owner=type(self).__name__)
        affinity = kernel_matrix(X, self.support_, "exponential", self.beta, 0.0)
        return prior_logits(self.prior_, X, len(self.classes_)) + self.alpha * affinity @ self.cache_values_
