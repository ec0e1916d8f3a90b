"""The zero-shot classifier of a frozen dual encoder: logits = scale * cos(x, w_c).

w_c is the embedding of class c's label prompts ("This news article is about sport.") from a text
encoder, or a CLIP text-tower class-weight matrix. It is a fixed prior: `fit` learns nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from zeroshot.fewshot._validation import (
    FewShotInputError,
    check_embeddings,
    check_no_unknown_labels,
)
from zeroshot.fewshot.kernels import LogitClassifierMixin
from zeroshot.numerics import l2_normalize

# Prompt ensembles for text classification: the class embedding is the normalised mean over templates.
NEWS_TEMPLATES = (
    "This news article is about {label}.",
    "A news story about {label}.",
    "{label} news.",
)


class ZeroShotHead(LogitClassifierMixin, ClassifierMixin, BaseEstimator):
    """Classify embeddings by their cosine to one embedding per class, scaled into logits.

    Parameters
    ----------
    class_embeddings : array (n_classes, d)
        One row per class, e.g. mean label-prompt embeddings (see `from_prompts`) or a CLIP zero-shot
        class-weight matrix. Rows are L2-normalised.
    labels : sequence, optional
        The class of each row; defaults to 0..n_classes-1. `classes_` holds them sorted, as in
        scikit-learn, and the columns of `predict_proba` follow `classes_`.
    logit_scale : float
        Temperature turning cosines into logits (CLIP learns 100). It does not change predictions,
        only probabilities and how strongly the head pulls when used as an adapter's prior.

    Contract of `fit(X, y=None)`: nothing is learned. It checks that `X` has the embeddings' width and
    that every label in `y` (if given) is one of `labels`, and records `classes_`. Classes with no
    example in `y` are fine: that is what zero-shot means.
    """

    def __init__(self, class_embeddings=None, labels: Sequence | None = None, logit_scale: float = 100.0):
        self.class_embeddings = class_embeddings
        self.labels = labels
        self.logit_scale = logit_scale

    @classmethod
    def from_prompts(
        cls,
        encoder,
        labels: Sequence[str],
        templates: Sequence[str] = NEWS_TEMPLATES,
        logit_scale: float = 100.0,
    ) -> ZeroShotHead:
        """A head whose class embeddings are `encoder`'s mean embedding of each label's prompts.

        `encoder` is anything with `encode(texts) -> (n, d) array` (a sentence encoder, or a CLIP model
        wrapped so that `encode = encode_texts`).
        """
        if not labels:
            raise FewShotInputError("no labels given for the zero-shot head")
        texts = [template.format(label=label) for label in labels for template in templates]
        vectors = np.asarray(encoder.encode(texts), dtype=np.float64)
        per_label = l2_normalize(vectors).reshape(len(labels), len(templates), -1).mean(axis=1)
        return cls(
            class_embeddings=l2_normalize(per_label).astype(np.float32),
            labels=list(labels),
            logit_scale=logit_scale,
        )

    def fit(self, X, y=None) -> ZeroShotHead:
        """Check `X` (and `y`) against the class embeddings; learns nothing (see the class docstring)."""
        if self.class_embeddings is None:
            raise FewShotInputError(
                "ZeroShotHead needs class_embeddings (one row per class): build it with "
                "ZeroShotHead.from_prompts(encoder, labels) or pass a CLIP class-weight matrix"
            )
        weights = check_embeddings(self.class_embeddings, "class embeddings")
        labels = np.arange(len(weights)) if self.labels is None else np.asarray(list(self.labels))
        if labels.shape != (len(weights),):
            raise FewShotInputError(
                f"{len(weights)} class embeddings but {labels.size} labels: they must match"
            )
        if np.unique(labels).size != labels.size:
            raise FewShotInputError("the zero-shot head's labels contain duplicates")
        if labels.size < 2:
            raise FewShotInputError("the zero-shot head has one class: a classifier needs at least two")
        if not np.isfinite(self.logit_scale) or self.logit_scale <= 0:
            raise FewShotInputError(f"logit_scale must be a positive number, got {self.logit_scale}")
        X = check_embeddings(X, dim=weights.shape[1], owner=type(self).__name__)
        if y is not None:
            y = np.asarray(y)
            if y.shape[0] != X.shape[0]:
                raise FewShotInputError(
                    f"got {X.shape[0]} embeddings but {y.shape[0]} labels: they must match"
                )
            check_no_unknown_labels(y, labels, "the zero-shot head")
        order = np.argsort(labels, kind="stable")
        self.classes_ = labels[order]
        self.weights_ = l2_normalize(weights[order])
        self.n_features_in_ = weights.shape[1]
        return self

    def logits(self, X) -> np.ndarray:
        """Logits (n, n_classes): logit_scale * cos(x, w_c), columns in `classes_` order."""
        check_is_fitted(self)
        X = check_embeddings(X, dim=self.n_features_in_, owner=type(self).__name__)
        return self.logit_scale * (l2_normalize(X) @ self.weights_.T)
