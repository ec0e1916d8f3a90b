"""The zero-shot prior f0 that the adapters start from, and the support-set checks that go with it."""

from __future__ import annotations

import numpy as np
from sklearn.base import clone

from zeroshot.fewshot._validation import (
    FewShotInputError,
    check_embeddings,
    check_every_class_has_examples,
    check_no_unknown_labels,
    check_targets,
)


def fit_support(prior, X, y) -> tuple[np.ndarray, np.ndarray, object | None, np.ndarray]:
    """Check a support set against an optional prior; return (X, y, fitted prior or None, classes).

    With a prior, its classes are the adapter's classes: every label in `y` must be one of them and
    every one of them must have at least one example (docs/fewshot.md, 'Contract').
    """
    X = check_embeddings(X, "support embeddings")
    y = check_targets(y, X.shape[0])
    if prior is None:
        return X, y, None, np.unique(y)
    if not hasattr(prior, "fit") or not hasattr(prior, "decision_function"):
        raise FewShotInputError(
            "prior must be a classifier with fit and decision_function (e.g. ZeroShotHead)"
        )
    fitted = clone(prior).fit(X, y)
    check_no_unknown_labels(y, fitted.classes_, "the prior")
    check_every_class_has_examples(y, fitted.classes_)
    return X, y, fitted, fitted.classes_


def prior_logits(prior_, X: np.ndarray, n_classes: int) -> np.ndarray:
    """f0(X): the prior's logits, or zeros when there is no prior."""
    if prior_ is None:
        return np.zeros((X.shape[0], n_classes))
    if hasattr(prior_, "logits"):
        return np.asarray(prior_.logits(X), dtype=np.float64)
    scores = np.asarray(prior_.decision_function(X), dtype=np.float64)
    return np.stack([np.zeros_like(scores), scores], axis=1) if scores.ndim == 1 else scores


def one_hot(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return (y[:, None] == classes[None, :]).astype(np.float64)
