"""Few-shot learning by functional gradient descent in a kernel's RKHS, with the encoder left frozen.

    f(x) = f0(x) + sum_i alpha_i K(x_i, x)

f0 is a zero-shot prior (a `ZeroShotHead`) or zero; x_i are the support embeddings; alpha_i is a
vector of one coefficient per class. The functional gradient of the cross-entropy over the support set
at f is sum_i (softmax(f(x_i)) - onehot(y_i)) K(x_i, .), so a gradient step in function space is the
coefficient update

    alpha_i <- alpha_i - learning_rate * (softmax(f(x_i)) - onehot(y_i)).

The number of steps is the regulariser: few steps stay close to the prior, many steps fit the support
set. By default it is chosen by k-fold cross-validation over the support set (the prior scores
held-out examples even when their class has no example left in the fold, so this works at 1 shot),
then the adapter is refit on all of it. Only the support embeddings and alpha are stored: kilobytes.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.utils.validation import check_is_fitted

from zeroshot.fewshot._prior import fit_support, one_hot, prior_logits
from zeroshot.fewshot._validation import FewShotInputError, check_embeddings
from zeroshot.fewshot.kernels import (
    KERNELS,
    LogitClassifierMixin,
    cross_entropy,
    kernel_matrix,
)
from zeroshot.numerics import softmax

EARLY_STOPPING = ("cv", "holdout", "loss", None)


class KernelAdapter(LogitClassifierMixin, ClassifierMixin, BaseEstimator):
    """A kernel expansion over the support set added to a zero-shot prior, fit by functional gradient descent.

    Parameters
    ----------
    prior : ZeroShotHead or None
        f0. None starts from zero (then it is a kernel classifier trained from scratch).
    kernel : "cosine", "exponential" or "rbf"
        cos, exp(beta * (cos - 1)), or exp(-gamma * |x - y|^2) (see `kernels.kernel_matrix`). The
        default, with learning_rate 0.3, did best on a BBC development split (bench/fewshot_tune.py).
    beta : float
        Sharpness of the exponential kernel.
    gamma : float or None
        RBF width; None means 1 / (n_features * X.var()) as in scikit-learn's SVC(gamma="scale").
    learning_rate : float
        Step size of each functional gradient step.
    max_steps : int
        Most gradient steps.
    early_stopping : "cv", "holdout", "loss" or None
        How the number of steps is chosen: "cv" the step count with the lowest mean held-out
        cross-entropy over `cv_folds` folds of the support set, then refit on all of it; "holdout" the
        same with one stratified split of `validation_fraction`; "loss" stop when the training loss
        improves by less than `tol` for `n_iter_no_change` steps; None always `max_steps`.
    random_state : int
        Seed of the fold shuffling.
    """

    def __init__(
        self,
        prior=None,
        kernel: str = "cosine",
        beta: float = 5.0,
        gamma: float | None = None,
        learning_rate: float = 0.3,
        max_steps: int = 100,
        early_stopping: str | None = "cv",
        cv_folds: int = 5,
        validation_fraction: float = 0.25,
        n_iter_no_change: int = 10,
        tol: float = 1e-4,
        random_state: int = 0,
    ):
        self.prior = prior
        self.kernel = kernel
        self.beta = beta
        self.gamma = gamma
        self.learning_rate = learning_rate
        self.max_steps = max_steps
        self.early_stopping = early_stopping
        self.cv_folds = cv_folds
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state

    def fit(self, X, y) -> KernelAdapter:
        self._check_params()
        X, y, self.prior_, self.classes_ = fit_support(self.prior, X, y)
        self.n_features_in_ = X.shape[1]
        self.gamma_ = float(self.gamma) if self.gamma is not None else 1.0 / (X.shape[1] * X.var() or 1.0)
        targets = one_hot(y, self.classes_)
        f0 = prior_logits(self.prior_, X, len(self.classes_))
        K = kernel_matrix(X, X, self.kernel, self.beta, self.gamma_)
        if self.early_stopping in ("cv", "holdout"):
            splits = self._splits(y)
            curves = [
                self._descend(
                    K[np.ix_(tr, tr)],
                    f0[tr],
                    targets[tr],
                    self.max_steps,
                    held_out=(K[np.ix_(ho, tr)], f0[ho], targets[ho]),
                )[1]
                for tr, ho in splits
            ]
            self.validation_loss_ = np.mean(curves, axis=0)
            steps = int(np.argmin(self.validation_loss_))
        else:
            steps = self.max_steps
        self.dual_coef_, self.loss_curve_, self.n_steps_ = self._descend(K, f0, targets, steps)
        self.support_ = X
        return self

    def _check_params(self) -> None:
        if self.kernel not in KERNELS:
            raise FewShotInputError(f"unknown kernel {self.kernel!r}: choose one of {', '.join(KERNELS)}")
        if self.early_stopping not in EARLY_STOPPING:
            raise FewShotInputError(
                f"unknown early_stopping {self.early_stopping!r}: choose cv, holdout, loss or None"
            )
        for name in ("learning_rate", "beta"):
            if not getattr(self, name) > 0:
                raise FewShotInputError(f"{name} must be positive, got {getattr(self, name)}")
        if int(self.max_steps) < 0:
            raise FewShotInputError(f"max_steps must be 0 or more, got {self.max_steps}")

    def _splits(self, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        n = len(y)
        if self.early_stopping == "holdout":
            n_folds = max(2, int(round(1.0 / self.validation_fraction)))
        else:
            n_folds = self.cv_folds
        n_folds = int(min(max(n_folds, 2), n))
        _, counts = np.unique(y, return_counts=True)
        if counts.min() >= n_folds:
            splitter = StratifiedKFold(n_folds, shuffle=True, random_state=self.random_state)
        else:  # too few examples per class to stratify: the prior still scores classes a fold lacks
            splitter = KFold(n_folds, shuffle=True, random_state=self.random_state)
        splits = list(splitter.split(np.zeros(n), y))
        return splits[:1] if self.early_stopping == "holdout" else splits

    def _descend(self, K: np.ndarray, f0: np.ndarray, targets: np.ndarray, steps: int, held_out=None):
        """Run functional gradient descent; return (alpha, loss per step, steps taken).

        With `held_out = (K_ho_tr, f0_ho, targets_ho)` the loss curve is the held-out loss instead.
        The curve has one entry per step count 0..steps (entry t: loss after t steps).
        """
        alpha = np.zeros_like(targets)
        losses = []
        for step in range(steps + 1):
            logits = f0 + K @ alpha
            if held_out is None:
                losses.append(cross_entropy(logits, targets))
                if self.early_stopping == "loss" and self._plateaued(losses):
                    return alpha, np.array(losses), step
            else:
                K_ho, f0_ho, targets_ho = held_out
                losses.append(cross_entropy(f0_ho + K_ho @ alpha, targets_ho))
            if step < steps:
                alpha = alpha - self.learning_rate * (softmax(logits) - targets)
        return alpha, np.array(losses), steps

    def _plateaued(self, losses: list[float]) -> bool:
        window = int(self.n_iter_no_change)
        return len(losses) > window and losses[-window - 1] - losses[-1] < self.tol * window

    def logits(self, X) -> np.ndarray:
        """Logits f0(x) + sum_i alpha_i K(x_i, x), columns in `classes_` order."""
        check_is_fitted(self)
        X = check_embeddings(X, dim=self.n_features_in_, owner=type(self).__name__)
        K = kernel_matrix(X, self.support_, self.kernel, self.beta, self.gamma_)
        return prior_logits(self.prior_, X, len(self.classes_)) + K @ self.dual_coef_
