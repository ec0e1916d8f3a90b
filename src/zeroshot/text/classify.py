"""Zero- and few-shot text classification and multiple choice with a frozen causal LM.

Both score every candidate answer by its likelihood after the prompt (see `scoring.py`) and return
the full probability table. Classification has one label set for all texts; multiple choice has its
own choices per question. The prompt prefix (description + demonstrations) is the same for every
query, so the language model evaluates it once and reuses its key/value cache.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from zeroshot.errors import UserError
from zeroshot.models.lm import LanguageModel
from zeroshot.text.calibration import CalibrationChoice, choose_calibration
from zeroshot.text.prompts import (
    Demonstration,
    PromptBuilder,
    PromptTemplate,
    sample_demonstrations,
    truncate_text,
)
from zeroshot.text.scoring import (
    DEFAULT_CONTENT_FREE_INPUTS,
    ChoiceScores,
    LikelihoodScorer,
    check_normalization,
)
from zeroshot.validation import DEFAULT_CALIBRATE, check_calibrate, check_labels


def as_demonstrations(examples: Iterable[Demonstration | tuple[str, str]] | None) -> list[Demonstration]:
    """Demonstrations from `Demonstration`s or (text, answer) pairs."""
    out = []
    for example in examples or ():
        out.append(example if isinstance(example, Demonstration) else Demonstration(*example))
    return out


def _warn_dropped(results: Sequence[ChoiceScores], wanted: int) -> None:
    short = [r.n_demonstrations for r in results if r.n_demonstrations < wanted]
    if short:
        warnings.warn(
            f"{len(short)} of {len(results)} prompts did not fit the model's context with {wanted} "
            f"demonstrations; they kept as few as {min(short)} (the queries themselves are never cut)",
            stacklevel=3,
        )


class _LikelihoodTask:
    """What classification and multiple choice share: prompt, scoring, normalisation, calibration."""

    def __init__(
        self,
        lm: LanguageModel,
        description: str = "",
        demonstrations: Sequence[Demonstration | tuple[str, str]] | None = None,
        template: PromptTemplate | None = None,
        normalization: str = "sum",
        calibrate: bool | str = DEFAULT_CALIBRATE,
        content_free_inputs: Sequence[str] = DEFAULT_CONTENT_FREE_INPUTS,
        max_chars: int | None = None,
        reuse_cache: bool = True,
        progress: bool = False,
    ) -> None:
        self.lm = lm
        self.description = description
        self.demonstrations = demonstrations
        self.template = template
        self.normalization = normalization
        self.calibrate = calibrate
        self.content_free_inputs = content_free_inputs
        self.max_chars = max_chars
        self.reuse_cache = reuse_cache
        self.progress = progress

    def _make_scorer(self, demonstrations: Sequence[Demonstration], lm: LanguageModel | None = None,
                     description: str | None = None, template: PromptTemplate | None = None
                     ) -> LikelihoodScorer:
        check_normalization(self.normalization)
        demos = [Demonstration(truncate_text(d.text, self.max_chars), d.answer) for d in demonstrations]
        builder = PromptBuilder(lm or self.lm, self.description if description is None else description,
                                demos, template or self.template)
        content_free = self.content_free_inputs if self.calibrate_ else ()
        return LikelihoodScorer(builder, content_free, reuse_cache=self.reuse_cache)

    def _resolve_calibration(self, choose: Callable[[], CalibrationChoice]) -> None:
        """Set `calibrate_` (the scoring used) and `calibration_` (what auto chose, else None).

        `choose` is called for "auto" only: it returns the `CalibrationChoice` of this task's pool.
        """
        mode = check_calibrate(self.calibrate, "calibrate")
        self.calibration_: CalibrationChoice | None = choose() if mode == "auto" else None
        self.calibrate_ = self.calibration_.calibrate if self.calibration_ is not None else mode == "on"

    def _score_all(self, queries: Sequence[tuple[str, Sequence[str]]]) -> list[ChoiceScores]:
        scorer = self.scorer_
        results = [
            scorer.score(truncate_text(text, self.max_chars), choices)
            for text, choices in tqdm(queries, desc="scoring", unit="text", disable=not self.progress)
        ]
        _warn_dropped(results, len(scorer.builder.demonstrations))
        return results


@dataclass
class TextClassification:
    """The answer to "classify these texts": what the CLI prints, the server returns and Python gets."""

    labels: list[str]
    texts: list[str]
    probabilities: np.ndarray  # (n_texts, n_labels), columns in the order of `labels`
    normalization: str = "sum"
    calibrate: bool = False  # the scoring used (with calibrate="auto", the one it chose)
    shots: int = 0
    calibration: dict | None = None  # calibrate="auto": `CalibrationChoice.to_dict()`

    def to_dict(self) -> dict:
        """JSON-ready: per text the best label and every label's probability (6 decimals); with
        calibrate="auto", what it chose and why ("calibration")."""
        rows = []
        for text, row in zip(self.texts, self.probabilities, strict=True):
            scores = {label: round(float(p), 6) for label, p in zip(self.labels, row, strict=True)}
            rows.append({"text": text, "label": self.labels[int(np.argmax(row))], "scores": scores})
        out = {"labels": list(self.labels), "normalization": self.normalization, "calibrate": self.calibrate,
               "shots": self.shots}
        if self.calibration is not None:  # absent otherwise: outputs from before "auto" keep their shape
            out["calibration"] = self.calibration
        return {**out, "results": rows}


class ZeroShotTextClassifier(_LikelihoodTask):
    """Classify texts into `labels` by the likelihood a language model gives each label.

    Zero-shot with no demonstrations; few-shot with `demonstrations` ((text, label) pairs) or by
    `fit(X, y)`, which draws `n_shots` of them from (X, y) with `seed` (class-balanced if `balanced`).
    `calibrate` is False/"off", True/"on" or "auto": at `fit`, plain or calibrated scoring is chosen by
    leave-one-out on the labelled pool (X, y), or on the given `demonstrations` without them
    (`zeroshot.text.calibration`); with neither, auto falls back to plain scoring and says why
    (`calibration_.reason`). `calibrate_` is the scoring used.
    `soft_prompt` (a folder from `zeroshot tune-prompt`, or a loaded `SoftPrompt`) puts trained virtual
    tokens before every prompt: they take the description's place, and the prompt's own template is
    used unless `template` is given (`lm` must be the transformers model it was trained on).

    >>> clf = ZeroShotTextClassifier(lm, ["sport", "politics"], description="Topic of each article.")
    >>> clf.predict(["The striker scored twice."])
    ['sport']
    """

    def __init__(
        self,
        lm: LanguageModel,
        labels: Sequence[str],
        description: str = "",
        demonstrations: Sequence[Demonstration | tuple[str, str]] | None = None,
        template: PromptTemplate | None = None,
        normalization: str = "sum",
        calibrate: bool | str = DEFAULT_CALIBRATE,
        content_free_inputs: Sequence[str] = DEFAULT_CONTENT_FREE_INPUTS,
        max_chars: int | None = None,
        n_shots: int = 0,
        seed: int = 0,
        balanced: bool = False,
        reuse_cache: bool = True,
        progress: bool = False,
        soft_prompt=None,
    ) -> None:
        super().__init__(
            lm,
            description,
            demonstrations,
            template,
            normalization,
            calibrate,
            content_free_inputs,
            max_chars,
            reuse_cache,
            progress,
        )
        self.labels = labels
        self.n_shots = n_shots
        self.seed = seed
        self.balanced = balanced
        self.soft_prompt = soft_prompt

    def fit(self, X: Sequence[str] | None = None, y: Sequence[str] | None = None) -> ZeroShotTextClassifier:
        """Fix the prompt. With (X, y), draw `n_shots` demonstrations from them; returns `self`."""
        self.classes_ = np.array(check_labels(self.labels), dtype=object)
        demos = as_demonstrations(self.demonstrations)
        given = list(demos)
        pool: list[Demonstration] = []
        if X is not None:
            if y is None or len(X) != len(y):
                raise UserError("fit needs one label per text")
            unknown = sorted({str(label) for label in y} - set(self.classes_))
            if unknown:
                raise UserError(f"demonstration labels not among the labels: {', '.join(unknown)}")
            pool = [Demonstration(str(text), str(label)) for text, label in zip(X, y, strict=True)]
            demos = demos + sample_demonstrations(pool, self.n_shots, self.seed, self.balanced)
        self.demonstrations_ = demos
        lm, description, template = self.lm, self.description, self.template
        if self.soft_prompt is not None:
            from zeroshot.text.soft_prompt import attach_soft_prompt

            lm = attach_soft_prompt(self.lm, self.soft_prompt)
            description, template = "", self.template or lm.prompt.template
        # Auto's pool: the labelled examples (X, y), drawn from as fit draws; without them, the given
        # demonstrations, each held out from the others.
        loo_pool, loo_k = (pool, self.n_shots) if pool else (given, len(given))

        def choose() -> CalibrationChoice:
            if not loo_pool:
                return CalibrationChoice.fallback("no labelled examples to choose from, so plain scoring")
            return choose_calibration(lm, loo_pool, list(self.classes_), loo_k, description=description,
                                      template=template, normalization=self.normalization,
                                      balanced=self.balanced, seed=self.seed,
                                      content_free_inputs=self.content_free_inputs, max_chars=self.max_chars)

        self._resolve_calibration(choose)
        self.scorer_ = self._make_scorer(demos, lm, description, template)
        return self

    def _ensure_fitted(self) -> None:
        if not hasattr(self, "scorer_"):
            self.fit()

    def score_texts(self, texts: Sequence[str]) -> list[ChoiceScores]:
        """The raw measurements for each text (every normalisation and calibration derive from them)."""
        self._ensure_fitted()
        if isinstance(texts, str):
            raise UserError("pass a list of texts, not one string")
        labels = list(self.classes_)
        return self._score_all([(text, labels) for text in texts])

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probability of each label (columns in the order of `classes_`) for each text."""
        results = self.score_texts(texts)
        if not results:
            return np.zeros((0, len(self.classes_)))
        return np.stack([r.probabilities(self.normalization, self.calibrate_) for r in results])

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The most likely label of each text."""
        proba = self.predict_proba(texts)
        return [str(self.classes_[i]) for i in proba.argmax(axis=1)]

    def classify(self, texts: Sequence[str]) -> TextClassification:
        """`predict_proba` as a result that every entry point reports the same way."""
        return self.result(texts, self.predict_proba(texts))

    def result(self, texts: Sequence[str], probabilities: np.ndarray) -> TextClassification:
        """The `TextClassification` of probabilities this classifier computed for `texts`."""
        self._ensure_fitted()
        choice = None if self.calibration_ is None else self.calibration_.to_dict()
        return TextClassification([str(c) for c in self.classes_], list(texts), np.asarray(probabilities),
                                  self.normalization, self.calibrate_, len(self.demonstrations_), choice)


@dataclass(frozen=True)
class MultipleChoiceItem:
    """A question and its own candidate answers."""

    question: str
    choices: Sequence[str]


class MultipleChoiceScorer(_LikelihoodTask):
    """Pick among each question's own choices by likelihood (lm-evaluation-harness's multiple choice).

    `demonstrations` are (question, correct answer) pairs shown before every question. They carry no
    choices of their own, so there is no pool to choose by: `calibrate="auto"` falls back to plain
    scoring (`calibration_.reason` says so).
    """

    def fit(self, X: object = None, y: object = None) -> MultipleChoiceScorer:
        """Fix the prompt; returns `self` (nothing is learned)."""
        self.demonstrations_ = as_demonstrations(self.demonstrations)
        self._resolve_calibration(lambda: CalibrationChoice.fallback(
            "multiple-choice demonstrations carry no choices to hold out, so plain scoring"))
        self.scorer_ = self._make_scorer(self.demonstrations_)
        return self

    def score_items(
        self, items: Sequence[MultipleChoiceItem | tuple[str, Sequence[str]]]
    ) -> list[ChoiceScores]:
        """The raw measurements for each item."""
        if not hasattr(self, "scorer_"):
            self.fit()
        queries = []
        for number, item in enumerate(items, start=1):
            question, choices = (
                (item.question, item.choices) if isinstance(item, MultipleChoiceItem) else item
            )
            try:
                choices = check_labels(choices, what="choices")
            except UserError as exc:
                raise UserError(f"question {number}: {exc}") from None
            queries.append((question, choices))
        return self._score_all(queries)

    def predict_proba(
        self, items: Sequence[MultipleChoiceItem | tuple[str, Sequence[str]]]
    ) -> list[np.ndarray]:
        """For each item, the probability of each of its choices (in the order given)."""
        results = self.score_items(items)
        return [r.probabilities(self.normalization, self.calibrate_) for r in results]

    def predict(self, items: Sequence[MultipleChoiceItem | tuple[str, Sequence[str]]]) -> list[str]:
        """The most likely choice of each item."""
        results = self.score_items(items)
        return [r.choices[int(np.argmax(r.scores(self.normalization, self.calibrate_)))] for r in results]
