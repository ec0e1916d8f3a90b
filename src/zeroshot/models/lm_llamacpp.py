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

import threading
from collections.abc import Iterator, Sequence

import numpy as np

from zeroshot.errors import UserError
from zeroshot.models.lm import (
    MAX_TOP_LOGPROBS,
    GenerationConfig,
    LanguageModel,
    SequenceLogprobs,
    check_scoring_request,
    check_top,
    common_prefix_length,
    log_softmax,
    logit_rows,
    resolve_seed,
)

MAX_DEFAULT_CONTEXT = 8192  # the logits buffer holds n_ctx x vocabulary floats (virtual until written)


class LlamaCppLM(LanguageModel):
    """A GGUF causal LM run by llama.cpp. Build it with `load_lm`."""

    backend = "llama.cpp"

    def __init__(self, path: str, n_ctx: int | None = None, n_threads: int | None = None) -> None:
        from llama_cpp import Llama

        self.name = path
        self._path = path
        self._n_threads = n_threads
        try:
            # logits_all keeps every position's logits, which scoring continuations needs.
            # `n_threads` sets prompt (batch) evaluation too: llama.cpp would otherwise use every core there.
            self._llm = Llama(model_path=path, n_ctx=n_ctx or 0, n_threads=n_threads,
                              n_threads_batch=n_threads, logits_all=True, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise UserError(f"llama.cpp cannot load {path}: {exc}") from exc
        if not n_ctx and self._llm.n_ctx() > MAX_DEFAULT_CONTEXT:
            self._llm = Llama(model_path=path, n_ctx=MAX_DEFAULT_CONTEXT, n_threads=n_threads,
                              n_threads_batch=n_threads, logits_all=True, verbose=False)
        self.context_length = self._llm.n_ctx()
        self.vocab_size = self._llm.n_vocab()
        self._lock = threading.RLock()
        self._scored_tokens = 0  # cache entries written by scoring, hence safe to reuse for scoring
        self._embedders: dict[str, object] = {}
        # Per-position results of the last `sequence_logprobs` (ids, log p(token), best alternatives).
        self._rows = ([], np.zeros(0), np.zeros((0, MAX_TOP_LOGPROBS), dtype=np.int64),
                      np.zeros((0, MAX_TOP_LOGPROBS)))
        self._end_tokens = _end_of_generation_tokens(self._llm)
        self.end_token_ids = frozenset(self._end_tokens)

    # -- tokens -------------------------------------------------------------------------------------

    def tokenize(self, text: str, add_bos: bool = False) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=False)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self._llm.detokenize(list(ids)).decode("utf-8", errors="replace")

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

    def _evaluate_context(self, context: list[int]) -> None:
        llm = self._llm
        cached = min(llm.n_tokens, self._scored_tokens)
        shared = common_prefix_length(llm.input_ids[:cached].tolist(), context)
        if shared >= len(context):
            llm.n_tokens = len(context)  # its logits row is still in `scores`
            return
        self._evaluate(context, start=min(shared, len(context) - 1))

    def _score_after_context(self, context: list[int], cont: list[int]) -> np.ndarray:
        if not cont:
            return np.zeros(0)
        n_context = len(context)
        self._llm.n_tokens = n_context
        if len(cont) > 1:
            self._evaluate(context + cont[:-1], start=n_context)
        return self._continuation_rows(n_context, cont)

    def _score_from_scratch(self, context: list[int], cont: list[int]) -> np.ndarray:
        if not cont:
            return np.zeros(0)
        self._evaluate(context + cont[:-1], start=0)
        return self._continuation_rows(len(context), cont)

    def _continuation_rows(self, n_context: int, cont: list[int]) -> np.ndarray:
        rows = log_softmax(self._llm.scores[n_context - 1: n_context - 1 + len(cont)])
        return rows[np.arange(len(cont)), cont]

    def sequence_logprobs(self, ids: Sequence[int], top: int = 0) -> SequenceLogprobs:
        ids = [int(t) for t in ids]
        check_top(top)
        if not ids:
            raise UserError("cannot score an empty sequence: give at least one token")
        if len(ids) > self.context_length:
            raise UserError(f"the sequence has {len(ids)} tokens, more than the model's context of "
                            f"{self.context_length}")
        with self._lock:
            if len(ids) == 1:  # a one-token batch would use other kernels: evaluate it from scratch
                self._llm.reset()
                self._llm.eval(ids)
                self._scored_tokens = 0
            else:
                self._evaluate_context(ids)  # reuses the cached prefix, as continuation scoring does
            # Rows already normalised for a sequence sharing this prefix are kept (a full-vocabulary
            # log-softmax per position is most of the cost); row j needs ids[:j + 2] unchanged.
            old_ids, old_chosen, old_top_ids, old_top_values = self._rows
            keep = max(0, min(common_prefix_length(old_ids, ids) - 1, len(old_chosen), len(ids) - 1))
            new_chosen, new_top_ids, new_top_values = logit_rows(self._llm.scores[keep: len(ids)],
                                                                 ids[keep + 1:], MAX_TOP_LOGPROBS)
            self._rows = (ids, np.concatenate([old_chosen[:keep], new_chosen]),
                          np.concatenate([old_top_ids[:keep], new_top_ids[:-1]]),
                          np.concatenate([old_top_values[:keep], new_top_values[:-1]]))
            _, chosen, top_ids, top_values = self._rows
        return SequenceLogprobs(ids, np.concatenate([[np.nan], chosen]),
                                np.concatenate([np.zeros((1, top), dtype=np.int64), top_ids[:, :top]]),
                                np.concatenate([np.full((1, top), np.nan), top_values[:, :top]]),
                                new_top_ids[-1, :top], new_top_values[-1, :top])

    def chat_template(self) -> str | None:
        """The chat template stored in the GGUF metadata, if any."""
        return self._llm.metadata.get("tokenizer.chat_template")

    def format_chat(self, messages: Sequence[dict]) -> str:
        template = self.chat_template()
        if not template:
            raise UserError(f"{self.name} has no chat template in its GGUF metadata")
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        vocab_text = self.detokenize
        formatter = Jinja2ChatFormatter(template, eos_token=vocab_text([self._llm.token_eos()]),
                                        bos_token=vocab_text([self._llm.token_bos()]),
                                        add_generation_prompt=True)
        return formatter(messages=[dict(m) for m in messages]).prompt

    def _evaluate(self, tokens: list[int], start: int) -> None:
        """Evaluate `tokens[start:]` on top of the cached `tokens[:start]`, in batches of two or more."""
        llm = self._llm
        if len(tokens) - start == 1 and start > 0:
            start -= 1
        step = min(llm.n_batch, llm.context_params.n_ubatch)
        llm.n_tokens = start
        for chunk in _batches(len(tokens) - start, step):
            llm.eval(tokens[llm.n_tokens: llm.n_tokens + chunk])
        self._scored_tokens = len(tokens)

    # -- generation ---------------------------------------------------------------------------------

    def _completion_kwargs(self, prompt: str, config: GenerationConfig) -> dict:
        config.validate()
        if config.num_beams > 1:
            raise UserError("the llama.cpp backend has no beam search: use --backend transformers for "
                            "--beams, "
                            "or greedy decoding (temperature 0)")
        n_prompt = len(self.tokenize(prompt, add_bos=True))
        if n_prompt + config.max_new_tokens > self.context_length:
            raise UserError(f"the prompt ({n_prompt} tokens) plus {config.max_new_tokens} new tokens "
                            "exceeds the "
                            f"model's context length of {self.context_length} tokens")
        kwargs = dict(max_tokens=config.max_new_tokens, repeat_penalty=config.repetition_penalty,
                      stop=list(config.stop) or None, min_p=0.0, top_k=config.top_k, top_p=config.top_p,
                      temperature=config.temperature)
        if config.greedy:
            kwargs.update(temperature=0.0, top_k=1, top_p=1.0)
        else:
            self.last_seed = resolve_seed(config)
            kwargs["seed"] = self.last_seed
        if config.ignore_eos:
            from llama_cpp import LogitsProcessorList

            banned = self._end_tokens

            def ban_end(input_ids, scores):
                scores[banned] = -np.inf
                return scores

            kwargs["logits_processor"] = LogitsProcessorList([ban_end])
        return kwargs

    def _run(self, prompt: str, config: GenerationConfig, stream: bool):
        kwargs = self._completion_kwargs(prompt, config)
        # llama.cpp would reuse the cached prefix and re-evaluate the prompt's last token alone: a
        # one-token batch, whose other kernels can change the greedy path. From scratch, the same prompt
        # always gives the same text (evaluating a prompt in batches costs milliseconds).
        self._llm.reset()
        if config.chat:
            kwargs.pop("max_tokens")
            return self._llm.create_chat_completion([{"role": "user", "content": prompt}], stream=stream,
                                                    max_tokens=config.max_new_tokens, **kwargs), True
        return self._llm.create_completion(prompt, stream=stream, **kwargs), False

    def generate(self, prompt: str, config: GenerationConfig | None = None) -> str:
        config = config or GenerationConfig()
        with self._lock:
            self._scored_tokens = 0
            result, chat = self._run(prompt, config, stream=False)
        self.last_num_tokens = int(result["usage"]["completion_tokens"])
        return result["choices"][0]["message"]["content"] if chat else result["choices"][0]["text"]

    def stream(self, prompt: str, config: GenerationConfig | None = None) -> Iterator[str]:
        config = config or GenerationConfig()
        with self._lock:
            self._scored_tokens = 0
            chunks, chat = self._run(prompt, config, stream=True)
            for chunk in chunks:
                choice = chunk["choices"][0]
                piece = choice.get("delta", {}).get("content") if chat else choice["text"]
                if piece:
                    yield piece

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

