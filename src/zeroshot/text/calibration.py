"""`--calibrate auto`: plain or calibrated scoring, chosen by leave-one-out on the demonstration pool.

Contextual calibration (Zhao et al. 2021; see `scoring.py`) rescues small models whose label prior
swamps the evidence, and costs accuracy where the model is already fair (issue 27: it hurts at 1.5B).
`choose_calibration` decides from labelled examples the user already gave as demonstrations, never
from the documents being scored: its inputs are a pool of (text, answer) pairs and the prompt format,
and nothing else.

The rule, with the run's K, sampling rule (plain or class-balanced) and normalization:

- at most `max_examples` pool examples (a seeded draw) are held out and each classified with K
  demonstrations drawn (seeded) from the *rest* of the pool, never including itself (K is capped at the
  pool size minus one). The held-out examples come in `draws` groups (fewer with fewer examples, more
  where a small pool needs them) that share one draw of demonstrations, drawn from the pool without
  the whole group. A group's examples share their prompt prefix, which the model evaluates once (a
  fresh draw per example would cost a full prompt each), and the choice still averages over several
  draws, as a run averages over seeds;
- each is scored once; calibration is a re-weighting of the same likelihoods (plus one content-free
  query per prompt), so the plain and the calibrated answer come from the same model calls;
- the way with more correct answers wins; a tie keeps plain scoring, which needs no assumption about
  a content-free input and is what the scores are without calibration.

A pool of fewer than two examples cannot hold one out and keep one to learn from: auto then falls back
to plain scoring and says why (`CalibrationChoice.reason`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from zeroshot.errors import UserError
from zeroshot.models.lm import LanguageModel
from zeroshot.text.prompts import (
    Demonstration,
    PromptBuilder,
    PromptTemplate,
    sample_demonstrations,
    truncate_text,
)
from zeroshot.text.scoring import DEFAULT_CONTENT_FREE_INPUTS, LikelihoodScorer, check_normalization

AUTO_MAX_EXAMPLES = 50  # pool examples classified: about the cost of 50 documents and 10 prompt prefixes
AUTO_DRAWS = 10  # draws of demonstrations the held-out examples share (K > 0)
RULE = "leave-one-out on the demonstration pool"


@dataclass(frozen=True)
class CalibrationChoice:
    """What `--calibrate auto` chose, from what evidence, at what cost.

    `correct_plain` and `correct_calibrated` count the `n_examples` held-out pool examples each way got
    right, each classified with `k` demonstrations from the rest of the pool, in `draws` draws of
    demonstrations seeded by `seed`.
    """

    calibrate: bool
    reason: str
    k: int = 0
    n_examples: int = 0
    correct_plain: int = 0
    correct_calibrated: int = 0
    seed: int = 0
    seconds: float = 0.0
    draws: int = 0

    @property
    def choice(self) -> str:
        """"calibrated" or "plain"."""
        return "calibrated" if self.calibrate else "plain"

    @classmethod
    def fallback(cls, reason: str) -> CalibrationChoice:
        """Plain scoring, chosen without evidence (no pool to hold examples out of), and why."""
        return cls(False, reason)

    def to_dict(self) -> dict:
        """JSON-ready: the choice, the rule, the leave-one-out counts, the seed and the seconds it took."""
        data = asdict(self)
        correct = {"plain": data.pop("correct_plain"), "calibrated": data.pop("correct_calibrated")}
        data.pop("calibrate")
        return {"choice": self.choice, "rule": RULE, **data, "correct": correct,
                "seconds": round(self.seconds, 3)}

    @classmethod
    def from_dict(cls, data: dict) -> CalibrationChoice:
        """The choice `to_dict` wrote (a resumed evaluation reuses it rather than choosing again)."""
        return cls(data["choice"] == "calibrated", data["reason"], data["k"], data["n_examples"],
                   data["correct"]["plain"], data["correct"]["calibrated"], data["seed"], data["seconds"],
                   data.get("draws", 0))

    def describe(self, run_k: int | None = None) -> str:
        """One phrase: "calibrated (plain 24 vs calibrated 31 of 50 pool examples right, 3.2 s)"; the
        leave-one-out's K is named unless it is `run_k` (it is smaller only for a tiny pool)."""
        if not self.n_examples:
            return f"{self.choice} ({self.reason})"
        tie = "; a tie keeps plain" if self.correct_plain == self.correct_calibrated else ""
        k = "" if self.k == run_k else f" with K={self.k}"
        return (f"{self.choice} (plain {self.correct_plain} vs calibrated {self.correct_calibrated} of "
                f"{self.n_examples} pool examples right{k}, {self.seconds:.1f} s{tie})")


def _choice_lists(labels: Sequence[str] | Sequence[Sequence[str]], n: int) -> list[list[str]]:
    """One list of choices per pool example: the label set for each, or each example's own."""
    if labels and isinstance(labels[0], str):
        return [list(labels)] * n  # type: ignore[list-item]
    if len(labels) != n:
        raise UserError(f"one list of choices per pool example is needed: {len(labels)} for {n} examples")
    return [list(choices) for choices in labels]


def choose_calibration(
    lm: LanguageModel,
    pool: Sequence[Demonstration],
    labels: Sequence[str] | Sequence[Sequence[str]],
    k: int,
    *,
    description: str = "",
    template: PromptTemplate | None = None,
    normalization: str = "sum",
    balanced: bool = False,
    seed: int = 0,
    max_examples: int = AUTO_MAX_EXAMPLES,
    draws: int = AUTO_DRAWS,
    content_free_inputs: Sequence[str] = DEFAULT_CONTENT_FREE_INPUTS,
    max_chars: int | None = None,
) -> CalibrationChoice:
    """Plain or calibrated scoring for this LM, prompt format and K, by leave-one-out on `pool`.

    `pool` holds the labelled examples demonstrations are drawn from, and only them: the documents to
    be scored are no input of this function, so they cannot sway the choice. `labels` is the label set
    (classification) or one list of choices per pool example (multiple choice). `k`, `balanced`,
    `normalization`, `description` and `template` are the run's; `max_chars` shortens texts as the
    classifier does. The cost is capped by `max_examples` (examples classified) and `draws` (prompt
    prefixes evaluated); `CalibrationChoice.seconds` reports it. See the module docstring for the rule
    and its tie rule.
    """
    started = time.perf_counter()
    check_normalization(normalization)
    if max_examples < 1:
        raise UserError(f"the leave-one-out needs at least 1 pool example, got max_examples={max_examples}")
    if draws < 1:
        raise UserError(f"the leave-one-out needs at least 1 draw of demonstrations, got draws={draws}")
    if not content_free_inputs:
        raise UserError("calibration needs at least one content-free input")
    if k < 0:
        raise UserError(f"the number of demonstrations must be 0 or more, got {k}")
    pool = [Demonstration(truncate_text(d.text, max_chars), d.answer) for d in pool]
    if len(pool) < 2:
        return CalibrationChoice.fallback(
            f"a pool of {len(pool)} labelled example{'s' if len(pool) != 1 else ''} leaves none to hold out "
            "and learn from, so plain scoring")
    choices = _choice_lists(labels, len(pool))
    for number, (example, options) in enumerate(zip(pool, choices, strict=True), start=1):
        if example.answer not in options:
            raise UserError(f"pool example {number}: its answer {example.answer!r} is not among its choices")
    k = min(k, len(pool) - 1)
    rng = random.Random(seed)
    held_out = rng.sample(range(len(pool)), min(max_examples, len(pool)))
    # Enough groups that each leaves K examples to draw from; K=0 has one prompt for all.
    n_groups = 1 if k == 0 else min(len(held_out), max(draws, -(-len(held_out) // (len(pool) - k))))
    correct_plain = correct_calibrated = 0
    for group in (held_out[g::n_groups] for g in range(n_groups)):
        excluded = set(group)
        rest = [example for j, example in enumerate(pool) if j not in excluded]
        demos = sample_demonstrations(rest, k, rng.randrange(2**32), balanced)
        scorer = LikelihoodScorer(PromptBuilder(lm, description, demos, template), content_free_inputs)
        for i in group:
            result = scorer.score(pool[i].text, choices[i])
            plain = result.choices[int(np.argmax(result.scores(normalization)))]
            calibrated = result.choices[int(np.argmax(result.scores(normalization, calibrate=True)))]
            correct_plain += plain == pool[i].answer
            correct_calibrated += calibrated == pool[i].answer
    if correct_calibrated > correct_plain:
        reason = "calibrated scoring got more held-out pool examples right"
    elif correct_plain > correct_calibrated:
        reason = "plain scoring got more held-out pool examples right"
    else:
        reason = "a tie keeps plain scoring"
    return CalibrationChoice(correct_calibrated > correct_plain, reason, k, len(held_out), correct_plain,
                             correct_calibrated, seed, time.perf_counter() - started, n_groups)
