"""The language-model interface that every task uses, and the loader that picks a backend.

A backend is one file (`lm_transformers.py`, `lm_llamacpp.py`) implementing `LanguageModel`.
Tasks see only this interface: tokens in, log-probabilities or text out.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class GenerationConfig:
    """Decoding options shared by both backends (a backend says plainly which it cannot honour)."""

    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 means greedy
    top_k: int = 0  # 0 disables
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    num_beams: int = 1
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


class LanguageModel(abc.ABC):
    """A frozen causal LM: tokenize, score continuations, generate."""

    name: str  # model id, folder or file it was loaded from
    backend: str  # "transformers" or "llama.cpp"
    context_length: int

    @abc.abstractmethod
    def tokenize(self, text: str, add_bos: bool = False) -> list[int]:
        """Token ids of `text`; `add_bos` prepends the model's begin-of-sequence token if it has one."""

    @abc.abstractmethod
    def detokenize(self, ids: Sequence[int]) -> str:
        """Text of token ids."""

    @abc.abstractmethod
    def continuation_logprobs(
        self,
        context: Sequence[int],
        continuations: Sequence[Sequence[int]],
        reuse_cache: bool = True,
    ) -> list[np.ndarray]:
        """Per-token log p(c[t] | context + c[:t]) for each continuation c.

        With `reuse_cache`, the key/value cache of the longest previously evaluated prefix of `context`
        is reused, and `context` is evaluated once for all continuations. Without it every
        `context + c` is evaluated from scratch (the naive baseline). Both give the same numbers.
        """

    @abc.abstractmethod
    def generate(self, prompt: str, config: GenerationConfig | None = None) -> str:
        """Completion of `prompt` (without the prompt)."""

    @abc.abstractmethod
    def stream(self, prompt: str, config: GenerationConfig | None = None) -> Iterator[str]:
        """The completion of `prompt`, piece by piece as it is decoded."""

    def embed(self, texts: Sequence[str], pooling: str = "mean") -> np.ndarray:
        """Hidden-state embeddings (`pooling` is "mean" or "last"), one row per text."""
        raise NotImplementedError(f"the {self.backend} backend cannot embed texts")
