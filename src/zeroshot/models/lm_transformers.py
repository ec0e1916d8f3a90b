"""Causal LMs through Hugging Face `transformers` (PyTorch), behind `LanguageModel`.

Loads hub ids, local Hugging Face folders and GGUF files (dequantised on load). Scoring keeps the
key/value cache of the last evaluated context, so a new context that shares a prefix with it (the task
description and demonstrations) only evaluates its new tokens, and all continuations are then scored
in one padded batch on top of that cache. `zeroshot.testing.save_random_lm` writes a tiny random model
in the real folder format for tests.
"""

from __future__ import annotations

import contextlib
import copy
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from zeroshot import _deprecated
from zeroshot.errors import UserError, first_line
from zeroshot.models.hub import hub_reachable
from zeroshot.models.lm import (
    MAX_TOP_LOGPROBS,
    GenerationConfig,
    LanguageModel,
    SequenceLogprobs,
    StopTrimmer,
    check_scoring_request,
    common_prefix_length,
    resolve_seed,
    top_of_rows,
    trim_at_stop,
)
from zeroshot.models.registry import register_backend
from zeroshot.numerics import batched


def _bytes_to_unicode() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet: each byte written as one printable character (char -> byte)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


_BYTE_OF_CHAR = _bytes_to_unicode()
SCORING_BATCH = 8  # continuations scored per forward pass on top of the shared context cache
EMBED_BATCH = 16

# Moved to zeroshot.testing (the library never imports it); the old names work until 0.3, with a warning.
__getattr__ = _deprecated.forward_names(__name__, {"save_random_lm": "zeroshot.testing",
                                                   "RANDOM_LM_ARCHS": "zeroshot.testing"})

_DTYPES = {"auto": None, "fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
           "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


@register_backend("transformers")
class TransformersLM(LanguageModel):
    """A frozen causal LM run by PyTorch. Build it with `load_lm` (or `TransformersLM.load`)."""


    def __init__(self, model, tokenizer, name: str) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.context_length = _context_length(model.config, tokenizer)
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self.device = next(model.parameters()).device
        self._pad_id = _pad_token_id(tokenizer, model.config)
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        eos = tokenizer.eos_token_id if eos is None else eos
        self.end_token_ids = frozenset(eos if isinstance(eos, list) else [] if eos is None else [eos])
        self.n_params = sum(p.numel() for p in model.parameters())
        self.chat_template = getattr(tokenizer, "chat_template", None) or None
        self.bos_text = tokenizer.bos_token or ""
        self.eos_text = tokenizer.eos_token or ""
        self._lock = threading.RLock()
        # The context evaluated last: its ids, its key/value cache and log p(next token | it).
        self._prefix_ids: list[int] = []
        self._prefix_cache = None
        self._prefix_next_logp: torch.Tensor | None = None
        # What `sequence_logprobs` measured at the first positions of that context (a cache cannot give
        # back logits of positions it skips): per position, log p(token) and the best alternatives.
        self._prefix_rows = (np.zeros(0), np.zeros((0, MAX_TOP_LOGPROBS), dtype=np.int64),
                             np.zeros((0, MAX_TOP_LOGPROBS)))

    @classmethod
    def load(cls, location: str, kind: str, dtype: str = "fp32", device: str | None = None) -> TransformersLM:
        """Load a hub id or folder (`kind` "hub"/"folder") or a GGUF file (`kind` "gguf")."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if dtype not in _DTYPES:
            raise UserError(f"unknown dtype {dtype!r}: choose one of {', '.join(_DTYPES)}")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        _check_memory(location, kind, dtype)
        source, extra = location, {}
        if kind == "gguf":
            source, extra = str(Path(location).parent), {"gguf_file": Path(location).name}
        if kind == "hub" and not hub_reachable():
            extra["local_files_only"] = True  # a cached copy, or the sentence below at once, not retries
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **extra)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=_DTYPES[dtype], **extra)
        except OSError as exc:
            if kind == "hub":
                raise UserError(
                    f"the model {location!r} is not on this machine and could not be downloaded (offline, "
                    f"or no such model on the Hugging Face hub): on a machine with internet run "
                    f"`huggingface-cli download {location} --local-dir DIR`, copy DIR here and pass "
                    f"`--model DIR` (or pass a local .gguf file, or a name `zeroshot models` lists)") from exc
            raise UserError(f"cannot load the model in {location}: {first_line(exc)}") from exc
        except ValueError as exc:  # e.g. a GGUF architecture transformers cannot dequantise
            raise UserError(f"transformers cannot load {location}: {first_line(exc)}") from exc
        return cls(model.to(device), tokenizer, location)

    # -- tokens -------------------------------------------------------------------------------------

    def tokenize(self, text: str, add_bos: bool = False, special: bool = False) -> list[int]:
        # Hugging Face tokenizers split added special tokens out of the text either way.
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        bos = self.tokenizer.bos_token_id
        return ([bos] if add_bos and bos is not None else []) + list(ids)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def bos_ids(self) -> list[int]:
        return list(self.tokenizer("")["input_ids"])  # what the tokenizer's own post-processor adds

    def generation_ids(self, prompt: str) -> list[int]:
        if not prompt:
            raise UserError("the prompt is empty: give some text to continue")
        return list(self.tokenizer(prompt)["input_ids"])

    def token_bytes(self, token_id: int) -> bytes:
        token_id = int(token_id)
        if token_id in self.tokenizer.all_special_ids:
            return b""
        piece = self.tokenizer.convert_ids_to_tokens(token_id)
        if isinstance(piece, str):
            byte = re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", piece)  # SentencePiece's byte fallback
            if byte:
                return bytes([int(byte.group(1), 16)])
            if piece and all(c in _BYTE_OF_CHAR for c in piece):  # byte-level BPE (GPT-2, Llama 3)
                return bytes(_BYTE_OF_CHAR[c] for c in piece)
        return self.tokenizer.decode([token_id]).encode("utf-8")

    # -- scoring ------------------------------------------------------------------------------------

    @torch.inference_mode()
    def continuation_logprobs(self, context: Sequence[int], continuations: Sequence[Sequence[int]],
                              reuse_cache: bool = True) -> list[np.ndarray]:
        context = [int(t) for t in context]
        conts = [[int(t) for t in c] for c in continuations]
        check_scoring_request(context, conts, self.context_length)
        with self._lock:
            if not reuse_cache:
                return [self._score_from_scratch(context, c) for c in conts]
            cache, next_logp = self._extend_prefix(context)
            return self._score_on_cache(cache, len(context), next_logp, conts)

    @torch.inference_mode()
    def continuation_distributions(self, context: Sequence[int],
                                   continuations: Sequence[Sequence[int]]) -> list[np.ndarray]:
        context = [int(t) for t in context]
        conts = [[int(t) for t in c] for c in continuations]
        check_scoring_request(context, conts, self.context_length)
        results = []
        with self._lock:
            cache, next_logp = self._extend_prefix(context)
            for cont in conts:
                rows = [next_logp[None]] if cont else []
                if len(cont) > 1:  # one at a time: a batch would hold batch x length x vocabulary floats
                    n = len(context)
                    out = self._forward(torch.tensor([cont[:-1]]), cache=_cropped_copy(cache, n),
                                        position_ids=torch.arange(n, n + len(cont) - 1)[None])
                    rows.append(torch.log_softmax(out.logits[0].float(), dim=-1))
                results.append(torch.cat(rows).cpu().numpy() if rows
                               else np.zeros((0, self.vocab_size), dtype=np.float32))
        return results

    def _forward(self, ids: torch.Tensor, cache=None, attention_mask=None, position_ids=None):
        return self.model(input_ids=ids.to(self.device), past_key_values=cache, use_cache=cache is not None,
                          attention_mask=None if attention_mask is None else attention_mask.to(self.device),
                          position_ids=None if position_ids is None else position_ids.to(self.device))

    def _score_from_scratch(self, context: list[int], cont: list[int]) -> np.ndarray:
        if not cont:
            return np.zeros(0)
        ids = torch.tensor([context + cont[:-1]])
        logits = self.model(input_ids=ids.to(self.device), use_cache=False).logits[0, len(context) - 1:]
        logp = torch.log_softmax(logits.float(), dim=-1)
        return logp[torch.arange(len(cont)), torch.tensor(cont)].double().cpu().numpy()

    def _extend_prefix(self, context: list[int]):
        """Key/value cache and next-token log-probabilities of `context`, reusing the previous prefix."""
        shared = common_prefix_length(self._prefix_ids, context)
        if shared == len(context) == len(self._prefix_ids):
            return self._prefix_cache, self._prefix_next_logp
        # At least one token is re-evaluated so that its logits give log p(first continuation token).
        reuse = min(shared, len(context) - 1)
        cache = _cropped_copy(self._prefix_cache, reuse) if reuse > 0 else _new_cache(self.model)
        out = self._forward(torch.tensor([context[reuse:]]), cache=cache,
                            position_ids=torch.arange(reuse, len(context))[None])
        self._prefix_ids = list(context)
        self._prefix_cache = out.past_key_values
        self._prefix_next_logp = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        self._prefix_rows = tuple(part[:reuse] for part in self._prefix_rows)
        return self._prefix_cache, self._prefix_next_logp

    @torch.inference_mode()
    def sequence_logprobs(self, ids: Sequence[int], top: int = 0) -> SequenceLogprobs:
        ids = self.check_sequence(ids, top)
        with self._lock:
            chosen, known_ids, known_values = self._prefix_rows
            # Rows 0..reuse-1 are known from before: row j is p(. | ids[:j + 1]), and its chosen entry
            # is the probability of ids[j + 1], so both must lie in the shared prefix.
            shared = common_prefix_length(self._prefix_ids, ids)
            reuse = max(0, min(shared - 1, len(chosen), len(ids) - 1))
            cache = _cropped_copy(self._prefix_cache, reuse) if reuse > 0 else _new_cache(self.model)
            out = self._forward(torch.tensor([ids[reuse:]]), cache=cache,
                                position_ids=torch.arange(reuse, len(ids))[None])
            logp = torch.log_softmax(out.logits[0].float(), dim=-1).double().cpu().numpy()
            new_ids, new_values = top_of_rows(logp, MAX_TOP_LOGPROBS)
            new_chosen = logp[np.arange(len(ids) - 1 - reuse), ids[reuse + 1:]]
            self._prefix_ids = list(ids)
            self._prefix_cache = out.past_key_values
            self._prefix_next_logp = torch.from_numpy(logp[-1]).float()
            self._prefix_rows = (np.concatenate([chosen[:reuse], new_chosen]),
                                 np.concatenate([known_ids[:reuse], new_ids[:-1]]),
                                 np.concatenate([known_values[:reuse], new_values[:-1]]))
            chosen, known_ids, known_values = self._prefix_rows
        nan_row = np.full((1, top), np.nan)
        return SequenceLogprobs(ids, np.concatenate([[np.nan], chosen]),
                                np.concatenate([np.zeros((1, top), dtype=np.int64), known_ids[:, :top]]),
                                np.concatenate([nan_row, known_values[:, :top]]),
                                new_ids[-1, :top], new_values[-1, :top])

    def format_chat(self, messages: Sequence[dict]) -> str:
        if not self.chat_template:
            raise UserError(f"{self.name} has no chat template")
        return self.tokenizer.apply_chat_template([dict(m) for m in messages], add_generation_prompt=True,
                                                  tokenize=False)

    def _score_on_cache(self, cache, n_context: int, next_logp: torch.Tensor,
                        conts: list[list[int]]) -> list[np.ndarray]:
        results: list[np.ndarray] = []
        for c in conts:
            results.append(np.array([next_logp[c[0]].item()]) if c else np.zeros(0))
        longer = [i for i, c in enumerate(conts) if len(c) > 1]
        for batch in batched(longer, SCORING_BATCH):
            # The last token of a continuation is only predicted, never fed.
            feeds = [conts[i][:-1] for i in batch]
            width = max(len(f) for f in feeds)
            ids = torch.full((len(batch), width), self._pad_id, dtype=torch.long)
            mask = torch.ones((len(batch), n_context + width), dtype=torch.long)
            for row, feed in enumerate(feeds):
                ids[row, :len(feed)] = torch.tensor(feed)
                mask[row, n_context + len(feed):] = 0  # right padding: never attended by real tokens
            batch_cache = _cropped_copy(cache, n_context)
            batch_cache.batch_repeat_interleave(len(batch))
            positions = torch.arange(n_context, n_context + width).expand(len(batch), width)
            logits = self._forward(ids, cache=batch_cache, attention_mask=mask, position_ids=positions).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
            for row, i in enumerate(batch):
                targets = torch.tensor(conts[i][1:])
                rest = logp[row, torch.arange(len(targets)), targets].double().cpu().numpy()
                results[i] = np.concatenate([results[i], rest])
        return results

    # -- generation ---------------------------------------------------------------------------------

    def _prompt_ids(self, prompt: str, config: GenerationConfig) -> torch.Tensor:
        if config.chat:
            if not getattr(self.tokenizer, "chat_template", None):
                raise UserError(f"{self.name} has no chat template: generate without --chat (raw completion)")
            prompt = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                                        add_generation_prompt=True, tokenize=False)
            ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        else:
            ids = self.tokenizer(prompt)["input_ids"]
        if not ids:
            if self.tokenizer.bos_token_id is None:
                raise UserError("the prompt is empty and this model has no begin-of-sequence token")
            ids = [self.tokenizer.bos_token_id]
        self.check_fits(len(ids), config.max_new_tokens)
        return torch.tensor([ids])

    def _hf_config(self, config: GenerationConfig):
        from transformers import GenerationConfig as HFGenerationConfig

        config.check()
        options = dict(max_new_tokens=config.max_new_tokens, num_beams=config.num_beams,
                       repetition_penalty=config.repetition_penalty, do_sample=not config.greedy,
                       pad_token_id=self._pad_id, eos_token_id=self.model.generation_config.eos_token_id,
                       temperature=None, top_k=None, top_p=None)
        if not config.greedy:
            options.update(temperature=config.temperature, top_k=config.top_k or None, top_p=config.top_p)
        if config.ignore_eos:
            options.update(min_new_tokens=config.max_new_tokens, eos_token_id=None)
        if config.stop:
            options.update(stop_strings=list(config.stop))
        return HFGenerationConfig(**options)

    @contextlib.contextmanager
    def _seeded(self, config: GenerationConfig):
        if config.greedy:
            yield
            return
        self.last_seed = resolve_seed(config)
        # A private RNG state: seeding generation must not reseed the caller's torch randomness.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.last_seed)
            yield

    def generate_ids(self, prompt_ids: Sequence[int], config: GenerationConfig) -> Iterator[int]:
        hf_config = self._hf_config(config)
        ids = torch.tensor([[int(t) for t in prompt_ids]])
        with torch.inference_mode(), self._seeded(config):
            out = self.model.generate(input_ids=ids.to(self.device), attention_mask=torch.ones_like(ids).to(
                self.device), generation_config=hf_config, tokenizer=self.tokenizer)
        yield from (int(t) for t in out[0, ids.shape[1]:].tolist())

    @torch.inference_mode()
    def generate(self, prompt: str, config: GenerationConfig | None = None) -> str:
        config = config or GenerationConfig()
        hf_config = self._hf_config(config)
        ids = self._prompt_ids(prompt, config)
        with self._seeded(config):
            out = self.model.generate(input_ids=ids.to(self.device), attention_mask=torch.ones_like(ids).to(
                self.device), generation_config=hf_config, tokenizer=self.tokenizer)
        self.last_num_tokens = int(out.shape[1] - ids.shape[1])
        text = self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        return trim_at_stop(text, config.stop)

    def stream(self, prompt: str, config: GenerationConfig | None = None) -> Iterator[str]:
        """Pieces of the completion as they are decoded. Beam search cannot stream: its text comes whole."""
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        config = config or GenerationConfig()
        if config.num_beams > 1:
            yield self.generate(prompt, config)
            return
        hf_config = self._hf_config(config)
        ids = self._prompt_ids(prompt, config)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        cancelled = threading.Event()

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs) -> torch.Tensor:
                return torch.full((input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool,
                                  device=input_ids.device)

        failure: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode(), self._seeded(config):
                    self.model.generate(input_ids=ids.to(self.device), attention_mask=torch.ones_like(ids).to(
                        self.device), generation_config=hf_config, tokenizer=self.tokenizer,
                        streamer=streamer, stopping_criteria=StoppingCriteriaList([_Cancelled()]))
            except BaseException as exc:  # re-raised in the consumer's thread; never leave it waiting
                failure.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        trimmer = StopTrimmer(config.stop)
        drained = False
        try:
            for piece in streamer:
                text = trimmer.push(piece)
                if text:
                    yield text
                if trimmer.stopped:
                    break
            else:
                drained = True
            tail = trimmer.flush()
            if tail:
                yield tail
        finally:
            if not drained:  # stopped early: let the generating thread finish now, and empty its queue
                cancelled.set()
                for _ in streamer:
                    pass
            worker.join()
        if failure:
            raise failure[0]

    # -- embeddings ---------------------------------------------------------------------------------

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], pooling: str = "mean") -> np.ndarray:
        """Last-hidden-state embeddings: the mean over real tokens, or the last token's state."""
        if pooling not in ("mean", "last"):
            raise UserError(f"unknown pooling {pooling!r}: choose mean or last")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
        encoder = self.model.get_decoder() if hasattr(self.model, "get_decoder") else self.model.base_model
        rows = []
        for batch in batched(texts, EMBED_BATCH):
            encoded = [self.tokenize(t, add_bos=True)[: self.context_length] or [self._pad_id] for t in batch]
            width = max(len(e) for e in encoded)
            ids = torch.full((len(encoded), width), self._pad_id, dtype=torch.long)
            mask = torch.zeros((len(encoded), width), dtype=torch.long)
            for row, e in enumerate(encoded):
                ids[row, :len(e)] = torch.tensor(e)
                mask[row, :len(e)] = 1
            hidden = encoder(input_ids=ids.to(self.device),
                             attention_mask=mask.to(self.device)).last_hidden_state
            hidden, mask = hidden.float().cpu(), mask.float()
            if pooling == "mean":
                pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            else:
                pooled = hidden[torch.arange(len(encoded)), mask.sum(1).long() - 1]
            rows.append(pooled.numpy())
        return np.concatenate(rows).astype(np.float32)


def _new_cache(model):
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


def _cropped_copy(cache, length: int):
    """A cache holding the first `length` positions of `cache`, leaving `cache` itself untouched.

    A forward pass grows a `DynamicLayer` by concatenation (new tensors) but rebinds them on the same
    layer object, so copying the layer objects is enough; other layer kinds are copied deeply.
    """
    from transformers.cache_utils import DynamicLayer

    clone = copy.copy(cache)
    if all(type(layer) is DynamicLayer for layer in cache.layers):
        clone.layers = [copy.copy(layer) for layer in cache.layers]
    else:
        clone = copy.deepcopy(cache)
    excess = clone.get_seq_length() - length
    if excess > 0:
        clone.crop(-excess)
    return clone


def _context_length(config, tokenizer) -> int:
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 1_000_000 else 2048


def _pad_token_id(tokenizer, config) -> int:
    # Padding is always masked or sliced away; any valid id works when the model defines none.
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, getattr(config, "eos_token_id", None)):
        if isinstance(candidate, list):
            candidate = candidate[0] if candidate else None
        if candidate is not None:
            return int(candidate)
    return 0


def _check_memory(location: str, kind: str, dtype: str) -> None:
    """Refuse, before loading, a model whose weights at `dtype` exceed the memory available.

    The parameter count comes from the GGUF header or the safetensors headers (a few KB each), so
    nothing is loaded to find it; hub ids and pickle-only folders are not checked.
    """
    from zeroshot.models.memory import check_memory

    if kind == "gguf":
        from zeroshot.models.gguf_info import read_gguf_info

        n_params = read_gguf_info(location).n_params
    elif kind == "folder":
        n_params = _safetensors_params(Path(location))
    else:
        return
    if n_params:
        width = 2 if dtype in ("bf16", "bfloat16", "fp16", "float16") else 4
        weights = n_params * width
        check_memory({"weights": weights, "overhead": 256 << 20, "total": weights + (256 << 20)}, location)


def _safetensors_params(folder: Path) -> int:
    """Elements of every tensor in the folder's safetensors files, read from their JSON headers."""
    import json
    import struct

    total = 0
    for path in folder.glob("*.safetensors"):
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, entry in header.items():
            if name != "__metadata__":
                count = 1
                for d in entry["shape"]:
                    count *= d
                total += count
    return total
