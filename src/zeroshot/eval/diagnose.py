"""Why free-form answers came out empty, and what to do about it.

A model that ends its answer at once scores 0 % on a free-form task; this module says why. An
answer is empty for one of three reasons, told apart per document:

- ``end_of_sequence``: the model's first token ended the generation (end-of-sequence, or the chat
  template's end of turn): it took the prompt as finished. Instruct models often do this on a bare
  prompt.
- ``stop_at_start``: a stop sequence matched at the very start: with the default stop "\\n", the
  model began its answer on a new line.
- ``extracted_empty``: the model wrote something, but the task's filters (`zeroshot.eval.extract`)
  kept nothing of it (white space only, a first line that is blank, a regex that matched nothing).

The backends do not report the first two alike (llama.cpp does not count the end token in
`last_num_tokens`, transformers does, and both count the token that held the stop sequence), so an
empty generation under a stop sequence is generated once more, greedily and without the stop, for a
few tokens (`explain_empty`): an empty text means the model ended at once; a text that starts with a
stop sequence means the stop cut it. That costs one short generation per empty answer and nothing
for the others.

`EmptyTally` counts one (K, seed) run (kept in its checkpoint record); `EmptyAnswers` adds the runs
up per K and, where more than `WARN_RATE` of the answers at some K are empty, says so with the likely
cause and its fix: in the report's JSON (`to_dict`) and as two printed lines (`lines`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from zeroshot.eval.extract import AnswerExtractor
from zeroshot.models.lm import GenerationConfig, LanguageModel

CAUSES = ("end_of_sequence", "stop_at_start", "extracted_empty")
WARN_RATE = 0.2  # more than a fifth of the answers at one K empty: say why
PROBE_TOKENS = 16  # enough to show what the model meant to write after the stop (in the sample log)


@dataclass(frozen=True)
class EmptyAnswer:
    """Why one answer is empty, and what the model wrote without the stop (where it was asked)."""

    cause: str
    unstopped: str | None = None

    def fields(self) -> dict:
        """The sample log's fields for this answer."""
        extra = {} if self.unstopped is None else {"unstopped": self.unstopped}
        return {"empty_cause": self.cause, **extra}


def explain_empty(lm: LanguageModel, prompt: str, config: GenerationConfig, generation: str,
                  answer: str) -> EmptyAnswer | None:
    """Why `answer` (extracted from `generation`, made from `prompt` with `config`) is empty; None if not.

    Greedy decoding makes the same first tokens again, so the probe without the stop sees the token
    the stop sequence cut (or the end-of-sequence, which no backend writes as text).
    """
    if answer:
        return None
    if generation:
        return EmptyAnswer("extracted_empty")
    if not config.stop:  # nothing can cut an answer but the end of the sequence
        return EmptyAnswer("end_of_sequence")
    probe = replace(config, stop=[], max_new_tokens=min(config.max_new_tokens, PROBE_TOKENS))
    unstopped = lm.generate(prompt, probe)
    if any(unstopped.startswith(stop) for stop in config.stop):
        return EmptyAnswer("stop_at_start", unstopped)
    # Empty: the end of the sequence came first. (Text that starts otherwise would have survived the
    # stop too; a backend whose greedy path changed between the calls is the only way to get here.)
    return EmptyAnswer("end_of_sequence", unstopped)


@dataclass
class EmptyTally:
    """The empty answers of one (K, seed) run, or of every run at one K: how many of each cause, and
    the first example of each."""

    answers: int = 0
    causes: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)  # cause -> a text that shows it

    @property
    def empty(self) -> int:
        return sum(self.causes.values())

    def add(self, why: EmptyAnswer | None, generation: str) -> None:
        """Count one answer (`why` is None when it is not empty)."""
        self.answers += 1
        if why is None:
            return
        self.causes[why.cause] = self.causes.get(why.cause, 0) + 1
        example = generation if why.cause == "extracted_empty" else why.unstopped
        if example:
            self.examples.setdefault(why.cause, example)

    def merge(self, record: Mapping) -> None:
        """Add a run's `to_record` to this tally."""
        self.answers += record["answers"]
        for cause, n in record["causes"].items():
            self.causes[cause] = self.causes.get(cause, 0) + n
        for cause, text in record.get("examples", {}).items():
            self.examples.setdefault(cause, text)

    def to_record(self) -> dict:
        """JSON for the run's checkpoint record, which `EmptyAnswers.from_runs` reads back."""
        return {"answers": self.answers, "causes": dict(self.causes), "examples": dict(self.examples)}


@dataclass(frozen=True)
class EmptyAnswers:
    """Empty answers per K and cause over a whole evaluation, and what to do when there are many.

    `chat`, `stop`, `filters` and `pool` are the evaluation's settings, which the fix depends on: a
    chat template needs no stop; demonstrations need a pool to draw from.
    """

    by_k: dict[int, EmptyTally]
    chat: bool
    stop: tuple[str, ...]
    filters: list
    pool: int

    @classmethod
    def from_runs(cls, runs: Mapping[str, Mapping], shots: Sequence[int], *, chat: bool,
                  stop: Sequence[str], extractor: AnswerExtractor, pool: int) -> EmptyAnswers:
        """Add up the "empty" record of every "K:seed" run (one checkpointed before runs kept it has
        none, and is left out)."""
        by_k = {k: EmptyTally() for k in shots}
        for key, record in runs.items():
            k = int(key.split(":")[0])
            if k in by_k and record.get("empty"):
                by_k[k].merge(record["empty"])
        return cls(by_k, chat, tuple(stop), extractor.to_json()["filters"], pool)

    @property
    def flagged(self) -> list[int]:
        """The K at which more than `WARN_RATE` of the answers are empty."""
        return [k for k, t in self.by_k.items() if t.answers and t.empty > WARN_RATE * t.answers]

    def _causes(self, ks: Sequence[int]) -> dict[str, int]:
        return {c: sum(self.by_k[k].causes.get(c, 0) for k in ks) for c in CAUSES}

    def _example(self, cause: str, ks: Sequence[int]) -> str:
        return next((self.by_k[k].examples[cause] for k in ks if cause in self.by_k[k].examples), "")

    @property
    def cause(self) -> str | None:
        """The commonest cause at the flagged K; None when no K is flagged."""
        causes = self._causes(self.flagged)
        return max(CAUSES, key=lambda c: causes[c]) if self.flagged else None

    def fix(self, cause: str) -> str:
        """What to change when `cause` empties the answers, given this evaluation's settings."""
        ks = self.flagged or list(self.by_k)
        # Demonstrations help where the flagged runs had none, and only if the task has a pool to draw from.
        demos = f"demonstrations (--shots {min(2, self.pool)})" if self.pool and 0 in ks else None
        options: list[str | None]
        if cause == "end_of_sequence":
            options = ["--no-chat-template" if self.chat
                       else "--chat-template (an instruct model answers in its own turn)",
                       demos and f"{demos}, which show that an answer follows"]
        elif cause == "stop_at_start":
            options = [None if self.chat
                       else "--chat-template (its end of turn ends the answer: no stop needed)",
                       demos and f"{demos}, which put the answer on the same line",
                       f"another stop than {json.dumps(list(self.stop))} in the task's config line, e.g. "
                       '"stop": ["\\n\\n"] with "filters": ["strip", "first_line"]']
        else:
            example = self._example(cause, ks)
            blank_first_line = bool(example.strip()) and not example.split("\n")[0].strip()
            hint = ('put "strip" before "first_line"' if blank_first_line and "first_line" in self.filters
                    else "compare them with the raw generations (--log-samples writes each beside its "
                    "answer)")
            options = [f'the task\'s "filters" {json.dumps(self.filters)}: {hint}']
        return "; or ".join(o for o in options if o)

    def _describe(self, cause: str, n: int, ks: Sequence[int]) -> str:
        example = self._example(cause, ks)
        shown = f", e.g. {json.dumps(example[:40])}" if example else ""
        if cause == "end_of_sequence":
            return f"the model's first token was end-of-sequence in {n}"
        if cause == "stop_at_start":
            return f"the stop {json.dumps(list(self.stop))} matched at the very start in {n}{shown}"
        return f"the filters left nothing of the model's answer in {n}{shown}"

    def message(self) -> str | None:
        """One line: how many answers are empty at each flagged K, and why; None when none is flagged."""
        flagged = self.flagged
        if not flagged:
            return None
        counts = ", ".join(f"K={k}: {t.empty} of {t.answers} ({t.empty / t.answers:.0%})"
                           for k in flagged for t in [self.by_k[k]])
        reasons = [self._describe(cause, n, flagged) for cause, n in self._causes(flagged).items() if n]
        return f"many answers are empty ({counts}): {'; '.join(reasons)}"

    def lines(self) -> list[str]:
        """What the CLI prints: nothing, or the warning and the fix for its commonest cause."""
        message = self.message()
        if message is None:
            return []
        return [f"warning: {message}", f"  fix: {self.fix(self.cause)}"]

    def to_dict(self) -> dict:
        causes = self._causes(list(self.by_k))
        answers = sum(t.answers for t in self.by_k.values())
        return {
            "threshold": WARN_RATE,
            "answers": answers,
            "empty": sum(causes.values()),
            "rate": sum(causes.values()) / answers if answers else None,
            "causes": causes,
            "by_k": [{"k": k, "answers": t.answers, "empty": t.empty,
                      "rate": t.empty / t.answers if t.answers else None,
                      "causes": {c: t.causes.get(c, 0) for c in CAUSES}, "examples": dict(t.examples)}
                     for k, t in self.by_k.items()],
            "flagged_k": self.flagged,
            "warning": self.message(),
            "cause": self.cause,
            "fixes": {c: self.fix(c) for c, n in self._causes(self.flagged).items() if n},
        }
