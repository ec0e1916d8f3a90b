"""The CLIP paper's linear probe: L2-regularised logistic regression on frozen embeddings.

Radford et al. (2021) choose the regularisation strength C on a validation split. With a handful of
shots there is no separate validation set, so `C` is chosen by stratified k-fold cross-validation over
the support set itself (k = min(cv_folds, smallest class count)). With one example of some class no
fold can hold it out and still train on it, so `fallback_C` is used; `C_selection_` says which happened.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.validation import check_is_fitted

from zeroshot.fewshot._validation import FewShotInputError, check_embeddings, check_targets
from zeroshot.fewshot.kernels import cross_entropy

DEFAULT_C_GRID = (0.1, 1.0, 10.0, 100.0)


class LinearProbe(ClassifierMixin, BaseEstimator):
    """Multinomial logistic regression with C picked by cross-validation on the training examples.

    Parameters
    ----------
    C : float or None
        Inverse L2 strength. None (default) chooses it from `C_grid` by cross-validated accuracy (ties
        go to the lower held-out cross-entropy, then to the smaller C).
    C_grid : tuple of float
        Candidates for C.
    cv_folds : int
        At most this many folds.
    fallback_C : float
        C used when some class has a single example (cross-validation impossible).
    max_iter : int
        L-BFGS iterations for each fit.
    random_state : int
        Seed of the fold shuffling.
    """

    def __init__(
        self,
        C: float | None = None,
        C_grid: tuple = DEFAULT_C_GRID,
        cv_folds: int = 5,
        fallback_C: float = 10.0,
        max_iter: int = 200,
        random_state: int = 0,
    ):
        self.C = C
        self.C_grid = C_grid
        self.cv_folds = cv_folds
        self.fallback_C = fallback_C
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X, y) -> LinearProbe:
        X = check_embeddings(X)
        y = check_targets(y, X.shape[0])
        self.classes_, counts = np.unique(y, return_counts=True)
        self.n_features_in_ = X.shape[1]
        self.cv_scores_ = {}
        if self.C is not None:
            self.C_, self.C_selection_ = float(self.C), "given"
        elif counts.min() < 2:
            self.C_, self.C_selection_ = float(self.fallback_C), "fallback (a class has one example)"
        else:
            folds = int(min(self.cv_folds, counts.min()))
            self.cv_scores_ = self._cross_validate(X, y, folds)
            best = max(self.cv_scores_.items(), key=lambda item: (item[1][0], -item[1][1], -item[0]))
            self.C_, self.C_selection_ = float(best[0]), f"{folds}-fold cross-validation"
        if not np.isfinite(self.C_) or self.C_ <= 0:
            raise FewShotInputError(f"C must be a positive number, got {self.C_}")
        self.model_ = self._logistic(self.C_).fit(X, y)
        self.coef_, self.intercept_ = self.model_.coef_, self.model_.intercept_
        self.n_iter_ = self.model_.n_iter_
        return self

    def _logistic(self, C: float) -> LogisticRegression:
        return LogisticRegression(C=C, max_iter=self.max_iter)

    def _cross_validate(self, X: np.ndarray, y: np.ndarray, folds: int) -> dict[float, tuple[float, float]]:
        """C -> (mean held-out accuracy, mean held-out cross-entropy)."""
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.random_state)
        splits = list(splitter.split(X, y))
        scores = {}
        for C in self.C_grid:
            accuracies, losses = [], []
            for train, held_out in splits:
                model = self._logistic(float(C)).fit(X[train], y[train])
                accuracies.append(model.score(X[held_out], y[held_out]))
                columns = np.searchsorted(model.classes_, y[held_out])
                logits = model.decision_function(X[held_out])
                if logits.ndim == 1:  # two classes: scikit-learn returns one margin
                    logits = np.stack([np.zeros_like(logits), logits], axis=1)
                losses.append(cross_entropy(logits, np.eye(len(model.classes_))[columns]))
            scores[float(C)] = (float(np.mean(accuracies)), float(np.mean(losses)))
        return scores

    def decision_function(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self.model_.decision_function(
            check_embeddings(X, dim=self.n_features_in_, owner=type(self).__name__)
        )

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self.model_.predict_proba(
            check_embeddings(X, dim=self.n_features_in_, owner=type(self).__name__)
        )

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self.model_.predict(check_embeddings(X, dim=self.n_features_in_, owner=type(self).__name__))
