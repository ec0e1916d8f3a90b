"""Prompts the GPT-3 way: a task description, K demonstrations, then the query.

A prompt is built from token ids, not from one string, so that every query of a task literally shares
the token ids of its prefix (description + demonstrations) and the language model can reuse the
prefix's key/value cache. Each piece (description, each demonstration, the query) is tokenized on its
own and the ids are concatenated; naive and cached scoring see exactly the same ids.

Layout (with the default template)::

    {description}\\n\\n
    Text: {demo text}\\nAnswer: {demo answer}\\n\\n     (one block per demonstration)
    Text: {query text}\\nAnswer:                        (the context; each candidate follows as " {answer}")
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from zeroshot.errors import UserError
from zeroshot.models.lm import LanguageModel


@dataclass(frozen=True)
class PromptTemplate:
    """How a task description, demonstrations and a query become text.

    `query` formats one input (`{text}`); `answer` formats one answer (`{answer}`) and is what each
    candidate continuation looks like, so its leading space belongs to the answer, as in
    lm-evaluation-harness's `target_delimiter`. `example_separator` ends every demonstration and the
    description.
    """

    query: str = "Text: {text}\nAnswer:"
    answer: str = " {answer}"
    example_separator: str = "\n\n"
    head: str | None = None  # replaces "description + separator" (a chat template's opening turn)
    special: bool = False  # parse special tokens such as <|im_start|> in the template's own text

    def __post_init__(self) -> None:
        if "{text}" not in self.query:
            raise UserError(f"the query template must contain {{text}} where the input goes: {self.query!r}")
        if "{answer}" not in self.answer:
            raise UserError(f"the answer template must contain {{answer}} where each label goes: "
                            f"{self.answer!r}")

    def format_query(self, text: str) -> str:
        return self.query.replace("{text}", text)

    def format_answer(self, answer: str) -> str:
        return self.answer.replace("{answer}", answer)

    def format_demonstration(self, text: str, answer: str) -> str:
        return self.format_query(text) + self.format_answer(answer) + self.example_separator


@dataclass(frozen=True)
class Demonstration:
    """One solved example shown to the model before the query."""

    text: str
    answer: str


def truncate_text(text: str, max_chars: int | None) -> str:
    """`text` cut to at most `max_chars` characters at a word boundary, with "..." marking the cut.

    Long inputs (BBC articles run to thousands of characters) are shortened *before* prompting, by a
    limit the user sets, so that a prompt never has to cut the query itself.
    """
    text = " ".join(text.split())  # newlines inside an article would look like the end of the query
    if max_chars is None or len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    if space > max_chars // 2:
        cut = cut[:space]
    return cut.rstrip() + " ..."


def sample_demonstrations(
    pool: Sequence[Demonstration], k: int, seed: int, balanced: bool = False
) -> list[Demonstration]:
    """K demonstrations drawn without replacement from `pool`, reproducibly for a given `seed`.

    `balanced` draws round-robin over the answers (each answer in a seeded random order), so that no
    answer appears twice before every answer has appeared once; the drawn set is then shuffled.
    """
    if k < 0:
        raise UserError(f"the number of demonstrations must be 0 or more, got {k}")
    if k > len(pool):
        raise UserError(f"cannot draw {k} demonstrations from a pool of {len(pool)} examples")
    rng = random.Random(seed)
    if not balanced:
        return rng.sample(list(pool), k)
    by_answer: dict[str, list[Demonstration]] = defaultdict(list)
    for demo in pool:
        by_answer[demo.answer].append(demo)
    answers = sorted(by_answer)
    rng.shuffle(answers)
    for answer in answers:
        rng.shuffle(by_answer[answer])
    drawn: list[Demonstration] = []
    round_index = 0
    while len(drawn) < k:
        for answer in answers:
            if round_index < len(by_answer[answer]) and len(drawn) < k:
                drawn.append(by_answer[answer][round_index])
        round_index += 1
    rng.shuffle(drawn)
    return drawn


@dataclass(frozen=True)
class PromptIds:
    """Token ids of one query's context: `prefix` (description + demonstrations) then `query`."""

    prefix: list[int]
    query: list[int]
    n_demonstrations: int  # how many demonstrations the prefix holds after any were dropped

    @property
    def context(self) -> list[int]:
        return self.prefix + self.query


class PromptBuilder:
    """Tokenizes a task's description and demonstrations once, then builds each query's context.

    If description + demonstrations + query + the longest answer would not fit `lm.context_length`,
    the last demonstrations are dropped for that query (and `PromptIds.n_demonstrations` says how many
    remain); the query itself is never cut. A query too long even with no demonstrations is a
    `UserError` that names the limit to lower.
    """

    def __init__(
        self,
        lm: LanguageModel,
        description: str = "",
        demonstrations: Sequence[Demonstration] = (),
        template: PromptTemplate | None = None,
    ) -> None:
        self.lm = lm
        self.template = template or PromptTemplate()
        self.description = description
        self.demonstrations = list(demonstrations)
        # The begin-of-sequence token goes on the first piece only.
        self._head_ids = self._tokenize(self.head_text(), add_bos=True)
        self._demo_ids = [
            self._tokenize(self.template.format_demonstration(d.text, d.answer)) for d in self.demonstrations
        ]
        self._full_prefix = self.prefix_ids(len(self.demonstrations))

    def _tokenize(self, text: str, add_bos: bool = False) -> list[int]:
        if self.template.special:
            return self.lm.tokenize(text, add_bos=add_bos, special=True)
        return self.lm.tokenize(text, add_bos=add_bos)

    def head_text(self) -> str:
        """What comes before the demonstrations: the description block, or the chat template's opening."""
        if self.template.head is not None:
            return self.template.head
        return self.description + self.template.example_separator if self.description else ""

    def prefix_ids(self, n_demonstrations: int) -> list[int]:
        """Token ids of the description and the first `n_demonstrations` demonstrations."""
        ids = list(self._head_ids)
        for demo in self._demo_ids[:n_demonstrations]:
            ids.extend(demo)
        return ids

    def prefix_text(self, n_demonstrations: int | None = None) -> str:
        """The prefix as text (for showing a user what the model reads)."""
        n = len(self.demonstrations) if n_demonstrations is None else n_demonstrations
        head = self.head_text()
        demos = self.demonstrations[:n]
        return head + "".join(self.template.format_demonstration(d.text, d.answer) for d in demos)

    def build(self, text: str, longest_answer_tokens: int = 0) -> PromptIds:
        """The context ids for the query `text`, leaving room for `longest_answer_tokens` more."""
        query = self._tokenize(self.template.format_query(text))
        budget = self.lm.context_length - len(query) - longest_answer_tokens
        n = len(self.demonstrations)
        prefix = self._full_prefix
        if len(prefix) > budget:
            length = len(self._head_ids)
            n = 0
            for demo in self._demo_ids:
                if length + len(demo) > budget:
                    break
                length += len(demo)
                n += 1
            if length > budget:
                raise UserError(
                    f"a query of {len(query)} tokens does not fit the model's context of "
                    f"{self.lm.context_length} tokens even without demonstrations: shorten the input "
                    "(for example with a lower --max-chars)"
                )
            prefix = self.prefix_ids(n)
        return PromptIds(prefix=prefix, query=query, n_demonstrations=n)
