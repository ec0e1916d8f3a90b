"""GGUF models through llama.cpp (`llama-cpp-python`), behind `LanguageModel`.

The fast CPU backend: loads in well under a second and generates several times faster than PyTorch
on the default model. Scoring reuses llama.cpp's own key/value cache: the tokens already evaluated
(`input_ids[:n_tokens]`) stay in the cache, so a context that shares a prefix with them only evaluates
its new tokens, and each continuation is evaluated on top of the context by resetting `n_tokens` to
the context's end (llama.cpp drops cache entries past `n_tokens` before the next evaluation).

llama.cpp's CPU kernels give the same numbers for a token whatever batch of two or more tokens it is
evaluated in, but a batch of one token takes other kernels whose results differ by up to about a nat
on the default Q4_1 model (neither is closer to the float32 model). Scoring therefore never evaluates
a one-token batch (it re-evaluates the token before instead) and never trusts cache entries written
by generation, which decodes one token at a time; that makes reused and from-scratch scores identical.
llama.cpp has no beam search: asking for it is a `UserError`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence

import numpy as np

from zeroshot.errors import UserError
from zeroshot.models.lm import (
    GenerationConfig,
    LanguageModel,
    SequenceLogprobs,
    check_scoring_request,
    common_prefix_length,
    resolve_seed,
    top_of_rows,
)
from zeroshot.models.memory import check_memory
from zeroshot.models.registry import register_backend
from zeroshot.numerics import log_softmax

MAX_DEFAULT_CONTEXT = 8192  # opened at min(training context, this) unless n_ctx is given
N_BATCH = 512  # tokens per llama.cpp batch; the logits buffer holds this many rows
_OVERHEAD = 128 << 20  # compute buffers and the library itself, measured loosely


def estimate_memory(info, n_ctx: int, n_batch: int = N_BATCH) -> dict[str, int]:
    """Bytes a llama.cpp load of `info` (a `GGUFInfo`) will need at `n_ctx`, by part."""
    parts = {"weights": info.weights_bytes, "kv_cache": info.kv_cache_bytes(n_ctx),
             "logits": 2 * n_batch * info.n_vocab * 4, "overhead": _OVERHEAD}
    parts["total"] = sum(parts.values())
    return parts


@register_backend("llama.cpp")
class LlamaCppLM(LanguageModel):
    """A GGUF causal LM run by llama.cpp. Build it with `load_lm`."""

    @classmethod
    def load(cls, location: str, kind: str, **options) -> LlamaCppLM:
        """The GGUF file `location` (llama.cpp reads nothing else; the loader checks `kind`)."""
        return cls(location, **options)

    def __init__(self, path: str, n_ctx: int | None = None, n_threads: int | None = None) -> None:
        from llama_cpp import Llama

        from zeroshot.models.gguf_info import check_complete, read_gguf_info

        self.name = path
        self._path = path
        self._n_threads = n_threads
        # The header decides the context and the memory check before llama.cpp allocates anything.
        self.info = read_gguf_info(path)
        check_complete(self.info)
        n_ctx = n_ctx or min(self.info.context_length, MAX_DEFAULT_CONTEXT)
        check_memory(estimate_memory(self.info, n_ctx, N_BATCH), path)
        try:
            # No logits_all: scoring asks llama.cpp for the rows it needs (`_decode`), so the logits
            # buffer is n_batch rows, not n_ctx (8k x a 262k vocabulary would be 8 GiB).
            gen_threads, batch_threads = (n_threads, n_threads) if n_threads else default_threads()
            self._llm = Llama(model_path=path, n_ctx=n_ctx, n_batch=N_BATCH, n_ubatch=N_BATCH,
                              n_threads=gen_threads, n_threads_batch=batch_threads, logits_all=False,
                              verbose=False)
        except (ValueError, RuntimeError, MemoryError) as exc:
            raise UserError(f"llama.cpp cannot load {path}: {exc}") from exc
        self.context_length = self._llm.n_ctx()
        self.vocab_size = self._llm.n_vocab()
        self.n_params = self.info.n_params
        self.chat_template = self.info.chat_template
        self.bos_text = self.special_token_text(self.info.bos_token_id)
        self.eos_text = self.special_token_text(self.info.eos_token_id)
        self._lock = threading.RLock()
        self._scored_tokens = 0  # cache entries written by scoring, hence safe to reuse for scoring
        self._rows: dict[int, np.ndarray] = {}  # position -> logits row kept by the last decodes
        self._embedders: dict[str, object] = {}
        self._end_tokens = _end_of_generation_tokens(self._llm)
        self.end_token_ids = frozenset(self._end_tokens)

    # -- tokens -------------------------------------------------------------------------------------

    def tokenize(self, text: str, add_bos: bool = False, special: bool = False) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    def special_token_text(self, token_id: int | None) -> str:
        """The text of a special token (BOS, EOS), as a chat template writes it."""
        if token_id is None or token_id < 0:
            return ""
        return self._llm.detokenize([token_id], special=True).decode("utf-8", errors="replace")

    def detokenize(self, ids: Sequence[int]) -> str:
        return self._llm.detokenize(list(ids)).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        # llama.cpp's piece, raw: part of a UTF-8 character for byte tokens, b"" for control tokens
        return self._llm.detokenize([int(token_id)])

    # -- scoring ------------------------------------------------------------------------------------

    def continuation_logprobs(self, context: Sequence[int], continuations: Sequence[Sequence[int]],
                              reuse_cache: bool = True) -> list[np.ndarray]:
        context = [int(t) for t in context]
        conts = [[int(t) for t in c] for c in continuations]
        check_scoring_request(context, conts, self.context_length)
        with self._lock:
            if not reuse_cache or len(context) < 2:  # a one-token context would be a one-token batch
                return [self._score_from_scratch(context, c) for c in conts]
            self._evaluate_context(context)
            return [self._score_after_context(context, c) for c in conts]

    def continuation_distributions(self, context: Sequence[int],
                                   continuations: Sequence[Sequence[int]]) -> list[np.ndarray]:
        context = [int(t) for t in context]
        conts = [[int(t) for t in c] for c in continuations]
        check_scoring_request(context, conts, self.context_length)
        results = []
        with self._lock:
            for cont in conts:
                if not cont:
                    results.append(np.zeros((0, self._llm.n_vocab()), dtype=np.float32))
                    continue
                if len(context) < 2:  # a one-token context would be a one-token batch
                    self._decode(context + cont[:-1], start=0, keep_from=len(context) - 1)
                else:
                    self._evaluate_context(context)
                    self._llm.n_tokens = len(context)
                    if len(cont) > 1:
                        self._decode(context + cont[:-1], start=len(context), keep_from=len(context) - 1)
                rows = np.stack([self._rows[len(context) - 1 + i] for i in range(len(cont))])
                results.append(log_softmax(rows, dtype=np.float32))
        return results

    def _evaluate_context(self, context: list[int]) -> None:
        llm = self._llm
        cached = min(llm.n_tokens, self._scored_tokens)
        shared = common_prefix_length(llm.input_ids[:cached].tolist(), context)
        last = len(context) - 1
        if shared >= len(context) and last in self._rows:
            llm.n_tokens = len(context)  # its last logits row is still kept
            return
        self._decode(context, start=min(shared, last), keep_from=last)

    def _score_after_context(self, context: list[int], cont: list[int]) -> np.ndarray:
        if not cont:
            return np.zeros(0)
        n_context = len(context)
        self._llm.n_tokens = n_context
        if len(cont) > 1:
            self._decode(context + cont[:-1], start=n_context, keep_from=n_context - 1)
        return self._continuation_rows(n_context, cont)

    def _score_from_scratch(self, context: list[int], cont: list[int]) -> np.ndarray:
        if not cont:
            return np.zeros(0)
        self._decode(context + cont[:-1], start=0, keep_from=len(context) - 1)
        return self._continuation_rows(len(context), cont)

    def _continuation_rows(self, n_context: int, cont: list[int]) -> np.ndarray:
        rows = log_softmax(np.stack([self._rows[n_context - 1 + i] for i in range(len(cont))]))
        return rows[np.arange(len(cont)), cont]

    def sequence_logprobs(self, ids: Sequence[int], top: int = 0) -> SequenceLogprobs:
        ids = self.check_sequence(ids, top)
        with self._lock:
            llm = self._llm
            cached = min(llm.n_tokens, self._scored_tokens)
            shared = common_prefix_length(llm.input_ids[:cached].tolist(), ids)
            if shared >= len(ids) and all(p in self._rows for p in range(len(ids))):
                llm.n_tokens = len(ids)  # every row is still kept from the last call
            else:
                # Rows of a shared prefix are reused only when all of them are kept; else from scratch.
                start = min(shared, len(ids) - 1)
                if not all(p in self._rows for p in range(start)):
                    start = 0
                self._decode(ids, start=start, keep_from=0)
            rows = log_softmax(np.stack([self._rows[p] for p in range(len(ids))]))
        top_ids, top_values = top_of_rows(rows, top)
        chosen = rows[np.arange(len(ids) - 1), ids[1:]]
        return SequenceLogprobs(ids, np.concatenate([[np.nan], chosen]),
                                np.concatenate([np.zeros((1, top), dtype=np.int64), top_ids[:-1]]),
                                np.concatenate([np.full((1, top), np.nan), top_values[:-1]]),
                                top_ids[-1], top_values[-1])

    def format_chat(self, messages: Sequence[dict]) -> str:
        if not self.chat_template:
            raise UserError(f"{self.name} has no chat template in its GGUF metadata")
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        formatter = Jinja2ChatFormatter(self.chat_template, eos_token=self.eos_text, bos_token=self.bos_text,
                                        add_generation_prompt=True)
        return formatter(messages=[dict(m) for m in messages]).prompt

    def _decode(self, tokens: list[int], start: int, keep_from: int) -> None:
        """Evaluate `tokens[start:]` on top of the cached `tokens[:start]`, in batches of two or more,
        asking llama.cpp for the logits of positions >= `keep_from` only (kept in `self._rows`).

        `Llama.eval` would copy every position's logits (with `logits_all`) or none; scoring needs
        the last context position and the continuation's, so the batch marks exactly those.
        """
        llm = self._llm
        if len(tokens) - start == 1 and start > 0:
            start -= 1
        self._rows = {p: r for p, r in self._rows.items() if p < start}
        llm._ctx.kv_cache_seq_rm(-1, start, -1)
        batch, n_vocab = llm._batch, llm.n_vocab()
        step = min(llm.n_batch, llm.context_params.n_ubatch)
        pos = start
        for size in _batches(len(tokens) - start, step):
            chunk = tokens[pos: pos + size]
            batch.set_batch(chunk, n_past=pos, logits_all=False)
            for i in range(size):
                batch.batch.logits[i] = pos + i >= keep_from or i == size - 1
            llm.n_tokens = pos  # a failed decode leaves the cache consistent with n_tokens
            llm._ctx.decode(batch)
            for i in range(max(0, keep_from - pos), size):
                ptr = llm._ctx.get_logits_ith(i)
                self._rows[pos + i] = np.ctypeslib.as_array(ptr, shape=(n_vocab,)).copy()
            llm.input_ids[pos: pos + size] = chunk
            pos += size
        llm.n_tokens = pos
        self._scored_tokens = len(tokens)

    # -- generation ---------------------------------------------------------------------------------

    def _sampling(self, config: GenerationConfig) -> dict:
        """`Llama.generate`'s sampling options for `config` (greedy: top-1)."""
        config.check()
        if config.num_beams > 1:
            raise UserError("the llama.cpp backend has no beam search: use --backend transformers for "
                            "num_beams > 1, or greedy decoding (temperature 0)")
        kwargs = dict(repeat_penalty=config.repetition_penalty, min_p=0.0, typical_p=1.0,
                      top_k=config.top_k, top_p=config.top_p, temp=config.temperature)
        if config.greedy:
            kwargs.update(temp=0.0, top_k=1, top_p=1.0)
        else:
            self.last_seed = resolve_seed(config)
            self._llm.set_seed(self.last_seed)
        if config.ignore_eos:
            from llama_cpp import LogitsProcessorList

            banned = self._end_tokens

            def ban_end(input_ids, scores):
                scores[banned] = -np.inf
                return scores

            kwargs["logits_processor"] = LogitsProcessorList([ban_end])
        return kwargs

    def generate_ids(self, prompt_ids: Sequence[int], config: GenerationConfig) -> Iterator[int]:
        kwargs = self._sampling(config)
        with self._lock:
            # llama.cpp would reuse the cached prefix and re-evaluate the prompt's last token alone: a
            # one-token batch, whose other kernels can change the greedy path. From scratch, the same
            # prompt always gives the same text (evaluating a prompt in batches costs milliseconds).
            self._scored_tokens, self._rows = 0, {}
            self._llm.reset()
            tokens = self._llm.generate([int(t) for t in prompt_ids], reset=True, **kwargs)
            for count, token in enumerate(tokens, start=1):
                yield int(token)
                if count >= config.max_new_tokens or int(token) in self._end_tokens:
                    return

    # -- embeddings ---------------------------------------------------------------------------------

    def embed(self, texts: Sequence[str], pooling: str = "mean") -> np.ndarray:
        """Pooled last-layer embeddings from a second llama.cpp context opened in embedding mode."""
        import llama_cpp

        kinds = {"mean": llama_cpp.LLAMA_POOLING_TYPE_MEAN, "last": llama_cpp.LLAMA_POOLING_TYPE_LAST}
        if pooling not in kinds:
            raise UserError(f"unknown pooling {pooling!r}: choose mean or last")
        texts = list(texts)
        with self._lock:
            if pooling not in self._embedders:
                self._embedders[pooling] = llama_cpp.Llama(
                    model_path=self._path, embedding=True, pooling_type=kinds[pooling],
                    n_ctx=min(self.context_length, 2048), n_batch=2048, n_ubatch=2048,
                    n_threads=self._n_threads, verbose=False)
            embedder = self._embedders[pooling]
            if not texts:
                return np.zeros((0, embedder.n_embd()), dtype=np.float32)
            rows = [embedder.embed(t or " ", normalize=False, truncate=True) for t in texts]
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), -1)


def default_threads() -> tuple[int, int]:
    """(generation, prompt-processing) threads when none are given: llama-cpp-python's defaults (half
    the cores, all of them), but never more than the cores other processes leave idle right now.

    On a quiet 2-core machine all-core prompt processing scores 512 tokens at 241-245 tok/s against
    101-125 on one core. On a busy one its threads wait for each other at every barrier: at load
    average 10 on 2 cores the 135M model scored BBC News at 0.1-0.2 documents/s on 2 threads and at
    2.8/s on one, so the load average at loading time caps both.
    """
    cores = os.cpu_count() or 1
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    idle = max(1, round(cores - busy))
    return max(1, min(cores // 2, idle)), min(cores, idle)


def _batches(n: int, step: int) -> list[int]:
    """Sizes of batches of at most `step` covering `n` tokens, none of one token when n > 1."""
    sizes = [step] * (n // step) + ([n % step] if n % step else [])
    if len(sizes) > 1 and sizes[-1] == 1:
        sizes[-2:] = [sizes[-2] - 1, 2]
    return sizes


def _end_of_generation_tokens(llm) -> list[int]:
    """Every token that ends generation (EOS, end-of-turn...): banned when timings need all tokens."""
    import llama_cpp

    try:
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        return [t for t in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)]
    except AttributeError:  # older bindings
        return [llm.token_eos()]

