"""Input checks shared by the few-shot estimators, each failing with one clear sentence.

`FewShotInputError` is a `UserError` (the CLI prints it and exits 2) and also a `ValueError`, which is
what scikit-learn's tools (`check_estimator`, `GridSearchCV(error_score=...)`) expect of bad input.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import DataConversionWarning
from sklearn.utils.multiclass import type_of_target

from zeroshot.errors import UserError


class FewShotInputError(UserError, ValueError):
    """Embeddings or labels a few-shot estimator cannot use."""


class FewShotTypeError(FewShotInputError, TypeError):
    """Values that are not numbers at all (also a `TypeError`, as NumPy raises for them)."""


def check_embeddings(
    X, name: str = "embeddings", dim: int | None = None, owner: str = "the classifier"
) -> np.ndarray:
    """`X` as a finite 2-D float array (n, d); `dim` is the width it must have, if known."""
    if hasattr(X, "toarray"):
        raise FewShotInputError(f"{name} must be a dense array; sparse input is not supported")
    try:
        array = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise FewShotInputError(f"{name} must be a 2-D array of numbers: {exc}") from exc
    if array.dtype == object:
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise FewShotTypeError(f"{name} must be numbers: {exc}") from exc
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise FewShotInputError(f"{name} must be numbers, got values of type {array.dtype}")
    if np.iscomplexobj(array):
        raise FewShotInputError(f"Complex data not supported: {name} must be real numbers")
    if array.ndim != 2:
        raise FewShotInputError(
            f"{name} must be 2-D (one row per example), got shape {array.shape}. "
            "Reshape your data: a single example as x.reshape(1, -1)"
        )
    if array.shape[0] == 0:
        raise FewShotInputError(
            f"{name} are empty: found array with 0 sample(s) (shape={array.shape}) while a "
            "minimum of 1 is required."
        )
    if array.shape[1] == 0:
        raise FewShotInputError(
            f"{name} are empty: found array with 0 feature(s) (shape={array.shape}) while "
            "a minimum of 1 is required."
        )
    array = array.astype(np.float64, copy=False)
    if not np.isfinite(array).all():
        rows = np.flatnonzero(~np.isfinite(array).all(axis=1))
        raise FewShotInputError(
            f"{name} contain NaN or infinite values (rows {_few(rows)}): re-embed those inputs or drop them"
        )
    if dim is not None and array.shape[1] != dim:
        raise FewShotInputError(
            f"X has {array.shape[1]} features, but {owner} is expecting {dim} features as "
            f"input: were these {name} made by a different encoder?"
        )
    return array


def check_targets(y, n_rows: int) -> np.ndarray:
    """`y` as a 1-D array of `n_rows` class labels with at least two classes."""
    if y is None:
        raise FewShotInputError(
            "this estimator requires y to be passed, but the target y is None: give one label per row"
        )
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        warnings.warn(
            "A column-vector y was passed when a 1d array was expected: using y.ravel()",
            DataConversionWarning,
            stacklevel=3,
        )
        labels = labels.ravel()
    if labels.ndim != 1:
        raise FewShotInputError(f"labels must be 1-D (one label per row), got shape {labels.shape}")
    if labels.shape[0] != n_rows:
        raise FewShotInputError(f"got {n_rows} embeddings but {labels.shape[0]} labels: they must match")
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise FewShotInputError("labels contain NaN or infinite values")
    try:
        kind = type_of_target(labels, input_name="y", raise_unknown=True)
    except ValueError as exc:
        raise FewShotInputError(f"labels are not class labels: {exc}") from exc
    if kind not in ("binary", "multiclass"):
        raise FewShotInputError(
            f"labels are not class labels (Unknown label type: {kind}): a classifier "
            "needs one class name or number per example"
        )
    if np.unique(labels).size < 2:
        only = labels[0] if labels.size else None
        raise FewShotInputError(
            f"only one class ({only!r}) in the labels: a classifier needs at least two classes"
        )
    return labels


def check_no_unknown_labels(labels: np.ndarray, known: np.ndarray, where: str) -> None:
    """Fail when `labels` hold a class outside `known` (e.g. one the zero-shot head has no prompt for)."""
    unknown = np.setdiff1d(np.unique(labels), known)
    if unknown.size:
        raise FewShotInputError(
            f"labels {_few(unknown)} are not among the classes of {where} "
            f"({_few(known)}): add them there or drop those examples"
        )


def check_every_class_has_examples(labels: np.ndarray, classes: np.ndarray) -> None:
    """Fail when a class of the prior has no example in the support set (see docs/fewshot.md, 'Contract')."""
    missing = np.setdiff1d(classes, np.unique(labels))
    if missing.size:
        raise FewShotInputError(
            f"classes {_few(missing)} have no examples in the support set: give at least "
            "one example per class, or leave them out of the zero-shot head's labels"
        )


def _few(values, limit: int = 5) -> str:
    values = [v.item() if hasattr(v, "item") else v for v in values]
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")
