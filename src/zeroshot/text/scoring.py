"""Likelihood scoring of candidate answers, as GPT-3 and lm-evaluation-harness do.

Every candidate answer is scored by log p(answer | prompt). The raw per-token log-probabilities are
kept, so one forward pass gives every normalisation:

- ``sum``: total log-probability (lm-eval's ``acc``);
- ``token``: mean log-probability per answer token;
- ``char``: total log-probability per character of the answer text (lm-eval's ``acc_norm``);

and, on top of any of them, calibration (Zhao et al. 2021, "Calibrate before use"; lm-eval's
unconditional normalisation): the same answers are scored after a content-free input such as "N/A"
with the same prefix, and that score is subtracted, which removes the model's prior for each answer.
With several content-free inputs their answer distributions are averaged, as in the paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from zeroshot.errors import UserError
from zeroshot.models.lm import LanguageModel
from zeroshot.numerics import softmax
from zeroshot.text.prompts import PromptBuilder

NORMALIZATIONS = ("sum", "token", "char")
DEFAULT_CONTENT_FREE_INPUTS = ("N/A",)


def check_normalization(normalization: str) -> str:
    """`normalization` if it is known, else a `UserError` listing the choices."""
    if normalization not in NORMALIZATIONS:
        raise UserError(f"unknown normalization {normalization!r}: choose one of {', '.join(NORMALIZATIONS)}")
    return normalization


@dataclass
class ChoiceScores:
    """Everything measured for one query: enough to derive every normalisation and calibration.

    `logprob_sum[j]` is log p(choice j | prompt); `content_free_sum[i, j]` is log p(choice j | prefix +
    content-free input i) (empty when not calibrating).
    """

    choices: list[str]
    logprob_sum: np.ndarray  # (n_choices,)
    n_tokens: np.ndarray  # (n_choices,)
    n_chars: np.ndarray  # (n_choices,)
    content_free_sum: np.ndarray  # (n_content_free, n_choices)
    n_demonstrations: int

    def _normalize(self, sums: np.ndarray, normalization: str) -> np.ndarray:
        if normalization == "sum":
            return sums
        if normalization == "token":
            return sums / self.n_tokens
        if normalization == "char":
            return sums / self.n_chars
        raise UserError(f"unknown normalization {normalization!r}: choose one of {', '.join(NORMALIZATIONS)}")

    def scores(self, normalization: str = "sum", calibrate: bool = False) -> np.ndarray:
        """One score per choice; higher is better."""
        scores = self._normalize(self.logprob_sum, normalization)
        if calibrate:
            if self.content_free_sum.size == 0:
                raise ValueError("calibration needs scores given content-free inputs; none were computed")
            prior = softmax(self._normalize(self.content_free_sum, normalization)).mean(axis=0)
            scores = scores - np.log(prior)
        return scores

    def probabilities(self, normalization: str = "sum", calibrate: bool = False) -> np.ndarray:
        """The scores as a probability distribution over the choices."""
        return softmax(self.scores(normalization, calibrate))


def continuation_sums(
    lm: LanguageModel,
    context: Sequence[int],
    continuations: Sequence[Sequence[int]],
    reuse_cache: bool = True,
) -> np.ndarray:
    """Total log-probability of each continuation after `context` (one model call for all of them)."""
    per_token = lm.continuation_logprobs(
        list(context), [list(c) for c in continuations], reuse_cache=reuse_cache
    )
    return np.array([float(np.sum(lp)) for lp in per_token], dtype=np.float64)


class LikelihoodScorer:
    """Scores the candidate answers of queries that share one prompt prefix.

    Content-free scores depend only on the prefix and the choices, so they are computed once per
    (number of demonstrations kept, choices) and reused for every query.
    """

    def __init__(
        self,
        builder: PromptBuilder,
        content_free_inputs: Sequence[str] = (),
        reuse_cache: bool = True,
    ) -> None:
        self.builder = builder
        self.lm = builder.lm
        self.content_free_inputs = list(content_free_inputs)
        self.reuse_cache = reuse_cache
        self._answer_ids: dict[str, list[int]] = {}
        self._content_free: dict[tuple[int, tuple[str, ...]], np.ndarray] = {}

    def answer_ids(self, choice: str) -> list[int]:
        """Token ids of `choice` as it continues the prompt (with the template's leading space)."""
        if choice not in self._answer_ids:
            ids = self.lm.tokenize(self.builder.template.format_answer(choice))
            if not ids:
                raise UserError(f"the answer {choice!r} is empty after tokenization")
            self._answer_ids[choice] = ids
        return self._answer_ids[choice]

    def _content_free_sums(self, n_demonstrations: int, choices: Sequence[str]) -> np.ndarray:
        key = (n_demonstrations, tuple(choices))
        if key not in self._content_free:
            prefix = self.builder.prefix_ids(n_demonstrations)
            answers = [self.answer_ids(c) for c in choices]
            rows = []
            for text in self.content_free_inputs:
                query = self.lm.tokenize(self.builder.template.format_query(text))
                rows.append(continuation_sums(self.lm, prefix + query, answers, self.reuse_cache))
            self._content_free[key] = np.array(rows, dtype=np.float64).reshape(-1, len(choices))
        return self._content_free[key]

    def score(self, text: str, choices: Sequence[str]) -> ChoiceScores:
        """Score every choice as the answer to `text`."""
        answers = [self.answer_ids(c) for c in choices]
        prompt = self.builder.build(text, longest_answer_tokens=max(len(a) for a in answers))
        sums = continuation_sums(self.lm, prompt.context, answers, self.reuse_cache)
        content_free = (
            self._content_free_sums(prompt.n_demonstrations, choices)
            if self.content_free_inputs
            else np.zeros((0, len(choices)))
        )
        return ChoiceScores(
            choices=list(choices),
            logprob_sum=sums,
            n_tokens=np.array([len(a) for a in answers], dtype=np.float64),
            n_chars=np.array(
                [len(self.builder.template.format_answer(c)) for c in choices], dtype=np.float64
            ),
            content_free_sum=content_free,
            n_demonstrations=prompt.n_demonstrations,
        )
