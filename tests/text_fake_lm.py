"""A deterministic toy `LanguageModel` for the text tests: bytes as tokens, a seeded bigram table.

log p(t | history) = log_softmax(W[previous token])[t], so every score can be computed by hand from
`W`. It counts the tokens it "evaluates", emulating a key/value cache of the last context, so tests can
see whether successive prompts literally share their prefix ids.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from zeroshot.models.lm import GenerationConfig, LanguageModel
from zeroshot.numerics import log_softmax

BOS = 256


class FakeLM(LanguageModel):
    name = "fake-bigram"
    backend = "fake"

    def __init__(self, context_length: int = 4096, seed: int = 0) -> None:
        self.context_length = context_length
        self.table = log_softmax(np.random.default_rng(seed).normal(0, 2, size=(257, 257)))
        self.evaluated_tokens = 0
        self._cached: list[int] = []

    def tokenize(self, text: str, add_bos: bool = False) -> list[int]:
        return ([BOS] if add_bos else []) + list(text.encode("utf-8"))

    def detokenize(self, ids: Sequence[int]) -> str:
        return bytes(i for i in ids if i != BOS).decode("utf-8", errors="replace")

    def logprob(self, previous: int, token: int) -> float:
        return float(self.table[previous, token])

    def continuation_logprobs(self, context, continuations, reuse_cache=True):
        context = list(context)
        if reuse_cache:
            shared = 0
            while shared < min(len(context), len(self._cached)) and context[shared] == self._cached[shared]:
                shared += 1
            self.evaluated_tokens += len(context) - shared + sum(len(c) for c in continuations)
            self._cached = context
        else:
            self.evaluated_tokens += sum(len(context) + len(c) for c in continuations)
        out = []
        for cont in continuations:
            seq = context + list(cont)
            out.append(np.array([self.logprob(seq[len(context) + i - 1], t) for i, t in enumerate(cont)]))
        return out

    def generate(self, prompt: str, config: GenerationConfig | None = None) -> str:
        config = config or GenerationConfig()
        ids = self.tokenize(prompt, add_bos=True)
        out: list[int] = []
        for _ in range(config.max_new_tokens):
            out.append(int(np.argmax(self.table[(ids + out)[-1], :256])))
        text = bytes(out).decode("utf-8", errors="replace")
        for stop in config.stop:
            text = text.split(stop)[0]
        return text

    def stream(self, prompt: str, config: GenerationConfig | None = None) -> Iterator[str]:
        yield self.generate(prompt, config)
