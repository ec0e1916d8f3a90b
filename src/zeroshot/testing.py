"""Helpers for testing code that uses zeroshot: random-weight models in real formats, and more.

Public, as `transformers.testing_utils` and `sklearn.utils._testing` are; the library itself never
imports this module (`lint-imports` checks it). Nothing here downloads anything.

    from zeroshot.models.clip import load_clip
    from zeroshot.testing import save_random_clip, save_random_images

    clip = load_clip(save_random_clip(tmp_path / "clip"), device="cpu")   # the path a real CLIP takes
    photos = save_random_images(tmp_path / "photos", 8)

- models: `save_random_clip` (CLIP or SigLIP) and `save_random_lm` (Llama or GPT-2) write random
  weights in the exact Hugging Face folder format, so `load_clip` / `load_lm` load them as they load a
  real checkpoint; `FakeLM` is a language model with no weights at all, whose every score can be
  computed by hand;
- data: `save_random_images`, `save_class_folders` (a folder per class, as `train-clip` and
  `audit denigration` read), `write_jsonl`, `save_sentiment_task` (a task `load_task` reads).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from zeroshot.errors import UserError
from zeroshot.models.lm import GenerationConfig, LanguageModel, SequenceLogprobs, top_of_rows
from zeroshot.numerics import log_softmax

__all__ = [
    "RANDOM_CLIP_SIZES", "RANDOM_LM_ARCHS", "FakeLM", "save_class_folders", "save_random_clip",
    "save_random_images", "save_random_lm", "save_sentiment_task", "write_jsonl",
]


# --- random-weight models in the Hugging Face format -------------------------------------------------------


# Sizes of the random models we build for tests ("tiny") and for speed benchmarks ("vit-b-32").
RANDOM_CLIP_SIZES = {
    "tiny": dict(vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                             image_size=224, patch_size=32),
                 text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
                 projection_dim=16),
    "vit-b-32": dict(vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                 num_attention_heads=12, image_size=224, patch_size=32),
                     text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                               num_attention_heads=8),
                     projection_dim=512),
}


def save_random_clip(folder: str | os.PathLike, size: str = "tiny", seed: int = 0,
                     family: str = "clip") -> Path:
    """Write a random-weight CLIP (or SigLIP) in the exact Hugging Face folder format; return the folder.

    The tokenizer is a real byte-level BPE trained on a small built-in corpus (so no CLIP vocabulary
    has to be downloaded), saved as `CLIPTokenizerFast` files, so `load_clip` takes the same path as
    for a real checkpoint. `size` is "tiny" (a few hundred kB, for tests) or "vit-b-32" (ViT-B/32's
    shapes, for speed measurements); the same `seed` writes the same weights. `family="siglip"` writes
    a `SiglipModel` with SigLIP's square resize and sigmoid scoring, to exercise that path.
    """
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, SiglipConfig, SiglipModel
    from transformers.models.siglip import SiglipImageProcessorPil

    from zeroshot.models.clip import _quiet_transformers

    if size not in RANDOM_CLIP_SIZES:
        raise UserError(f"unknown random CLIP size {size!r}: choose one of {', '.join(RANDOM_CLIP_SIZES)}")
    if family not in ("clip", "siglip"):
        raise UserError(f"unknown model family {family!r}: choose clip or siglip")
    spec = RANDOM_CLIP_SIZES[size]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_clip_tokenizer()
    side = spec["vision"]["image_size"]
    tokens = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):  # seeded without disturbing the caller's random state
        torch.manual_seed(seed)
        if family == "clip":
            config = CLIPConfig(text_config=dict(spec["text"], max_position_embeddings=77, **tokens),
                                vision_config=spec["vision"], projection_dim=spec["projection_dim"])
            model = CLIPModel(config)
            processor = CLIPImageProcessorPil(size={"shortest_edge": side},
                                              crop_size={"height": side, "width": side})
        else:
            config = SiglipConfig(text_config=dict(spec["text"], max_position_embeddings=64, **tokens),
                                  vision_config=spec["vision"])
            model = SiglipModel(config)
            processor = SiglipImageProcessorPil(size={"height": side, "width": side})
    with _quiet_transformers():
        model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@lru_cache(maxsize=1)
def _train_clip_tokenizer():  # the same tokenizer for every model of one process
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import CLIPTokenizerFast

    from zeroshot.models.clip import PROBE_WORDS

    special = ["<|startoftext|>", "<|endoftext|>"]
    bpe = Tokenizer(models.BPE(unk_token="<|endoftext|>", end_of_word_suffix="</w>"))
    bpe.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    bpe.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=special, end_of_word_suffix="</w>",
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    corpus = [f"a photo of a {w}." for w in PROBE_WORDS] + [f"a bad photo of the {w}" for w in PROBE_WORDS]
    bpe.train_from_iterator(corpus, trainer)
    bpe.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[(t, bpe.token_to_id(t)) for t in special])
    return CLIPTokenizerFast(tokenizer_object=bpe, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                             unk_token="<|endoftext|>", pad_token="<|endoftext|>", model_max_length=77)


RANDOM_LM_ARCHS = ("llama", "gpt2")

_CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
           "{{ message['content'] }}<|im_end|>\n"
           "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def save_random_lm(folder: str | os.PathLike, arch: str = "llama", seed: int = 0) -> Path:
    """Write a tiny random-weight causal LM (Llama or GPT-2 architecture) in the Hugging Face folder format.

    Its tokenizer is a byte-level BPE trained on a small built-in corpus, so any text round-trips, with
    a ChatML chat template. `load_lm(folder, backend="transformers")` loads it as it loads a real model;
    the code paths do not depend on the weights' values. The same `seed` writes the same weights.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    if arch not in RANDOM_LM_ARCHS:
        raise UserError(f"unknown random LM architecture {arch!r}: "
                        f"choose one of {', '.join(RANDOM_LM_ARCHS)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_lm_tokenizer()
    special = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                   eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    if arch == "llama":
        config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                             initializer_range=0.2, tie_word_embeddings=False, **special)
        model = LlamaForCausalLM(config)
    else:
        config = GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=512, initializer_range=0.2, **special)
        model = GPT2LMHeadModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _train_lm_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(_LM_CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|endoftext|>",
                                   chat_template=_CHATML, model_max_length=512)


_LM_CORPUS = [
    "Classify the topic of each news article as business, entertainment, politics, sport or tech.",
    "Article: Shares rose sharply after the bank reported record profits. Topic: business",
    "Article: The striker scored twice as the club won the cup final. Topic: sport",
    "Article: The minister announced a new election date in parliament. Topic: politics",
    "Article: The film won three awards at the festival last night. Topic: entertainment",
    "Article: A new phone chip makes mobile games run faster. Topic: tech",
    "Once upon a time there was a little language model that answered questions about the world.",
    "The quick brown fox jumps over the lazy dog. 0123456789 !?.,;:'\"()[]{}",
]


# --- a language model without weights ----------------------------------------------------------------------


class FakeLM(LanguageModel):
    """A deterministic toy `LanguageModel`: bytes as tokens (plus `BOS`), and a seeded bigram table.

    log p(t | history) = log_softmax(table[previous token])[t], so every score a classifier or an
    evaluation computes can be checked by hand (`logprob(previous, token)`). It counts the tokens it
    "evaluates" (`evaluated_tokens`), emulating a key/value cache of the last context, so a test can
    see whether successive prompts really share their prefix. Greedy generation only.

    `reply` sets what it writes instead: called with the prompt, it returns the text up to the end of
    the sequence ("" ends at once); its bytes are the generated tokens, followed by the end token
    (`BOS`), cut at `max_new_tokens` tokens and at the first stop sequence, as a real backend does (a
    character split by the budget comes out as U+FFFD).
    """

    name = "fake-bigram"
    backend = "fake"
    BOS = 256  # the beginning-of-sequence token, after the 256 byte values; also its end token
    vocab_size = 257
    end_token_ids = frozenset({BOS})

    def __init__(self, context_length: int = 4096, seed: int = 0,
                 reply: Callable[[str], str] | None = None) -> None:
        self.context_length = context_length
        self.table = log_softmax(np.random.default_rng(seed).normal(0, 2, size=(257, 257)))
        self.evaluated_tokens = 0
        self._cached: list[int] = []
        self.reply = reply

    def tokenize(self, text: str, add_bos: bool = False, special: bool = False) -> list[int]:
        return ([self.BOS] if add_bos else []) + list(text.encode("utf-8"))

    def detokenize(self, ids: Sequence[int]) -> str:
        return bytes(i for i in ids if i != self.BOS).decode("utf-8", errors="replace")

    def logprob(self, previous: int, token: int) -> float:
        """log p(`token` | the token before it was `previous`)."""
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

    def token_bytes(self, token_id: int) -> bytes:
        return b"" if token_id == self.BOS else bytes([token_id])

    def continuation_distributions(self, context, continuations):
        self.continuation_logprobs(context, continuations)  # the token accounting
        out = []
        for cont in continuations:
            seq = list(context) + list(cont)
            out.append(np.stack([self.table[seq[len(context) + i - 1]] for i in range(len(cont))])
                       .astype(np.float32) if cont else np.zeros((0, 257), dtype=np.float32))
        return out

    def generate_ids(self, prompt_ids: Sequence[int], config: GenerationConfig) -> Iterator[int]:
        """`reply`'s bytes then the end token (`BOS`, as GPT-2's one token begins and ends text); or,
        without `reply`, the greedy path through the table's bytes (it never ends by itself)."""
        if self.reply is not None:
            reply = [*self.reply(self.detokenize(prompt_ids)).encode("utf-8"), self.BOS]
            yield from reply[: config.max_new_tokens]
            return
        ids = list(prompt_ids)
        for _ in range(config.max_new_tokens):
            ids.append(int(np.argmax(self.table[ids[-1], :256])))
            yield ids[-1]

    def sequence_logprobs(self, ids: Sequence[int], top: int = 0) -> SequenceLogprobs:
        ids = self.check_sequence(ids, top)
        rows = self.table[ids]  # row t: the distribution after ids[t]
        top_ids, top_values = top_of_rows(rows, top)
        chosen = rows[np.arange(len(ids) - 1), ids[1:]]
        return SequenceLogprobs(ids, np.concatenate([[np.nan], chosen]),
                                np.concatenate([np.zeros((1, top), dtype=np.int64), top_ids[:-1]]),
                                np.concatenate([np.full((1, top), np.nan), top_values[:-1]]),
                                top_ids[-1], top_values[-1])


# --- small data sets ----------------------------------------------------------------------------------------


def save_random_images(folder: str | os.PathLike, count: int, size: int = 16, seed: int = 0, start: int = 0,
                       suffix: str = ".png") -> list[Path]:
    """Write `count` seeded noise images of `size` x `size` pixels into `folder`; return their paths.

    Named `img0000.png`, `img0001.png`, ... from number `start` (so a second call can add more without
    clashing); distinct images, not photos: enough for indexing, deduplication and I/O tests, not for
    anything that needs a picture of something. `suffix` is any format Pillow writes (".jpg", ".webp").
    """
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(start, start + count):
        path = folder / f"img{i:04d}{suffix}"
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


_CLASS_COLOURS = ((220, 40, 40), (40, 180, 60), (50, 80, 220), (230, 200, 40), (150, 60, 200), (40, 200, 210))


def save_class_folders(root: str | os.PathLike, classes: Sequence[str] = ("red", "green", "blue"),
                       per_class: int = 4, size: int = 32, seed: int = 0) -> Path:
    """A tiny labelled image set in the folder-per-class layout: `root/<class>/<n>.png`; returns `root`.

    Each class has its own base colour (classes beyond six reuse them, shifted), and every image has
    seeded noise on top, so the images of a class differ while the classes stay apart by colour. This
    is the layout `zeroshot train-clip DIR` and `zeroshot audit denigration DIR` read.
    """
    from PIL import Image

    if not classes or per_class < 1:
        raise UserError("save_class_folders needs at least one class and one image per class")
    root = Path(root)
    rng = np.random.default_rng(seed)
    for number, name in enumerate(classes):
        base = np.array(_CLASS_COLOURS[number % len(_CLASS_COLOURS)]) - 30 * (number // len(_CLASS_COLOURS))
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            pixels = base + rng.normal(0, 20, (size, size, 3))
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / name / f"{k}.png")
    return root


def write_jsonl(path: str | os.PathLike, rows: Iterable[object]) -> Path:
    """Write `rows` as JSON Lines (one JSON value a line) to `path`; return the path."""
    path = Path(path)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def save_sentiment_task(path: str | os.PathLike, pool_per_label: int = 3, docs: int = 6) -> Path:
    """A tiny two-label classification task in zeroshot's JSONL task format; returns the path.

    A config line (description "Sentiment.", prompt "Review: {text}\nSentiment:", choices negative and
    positive), `pool_per_label` demonstrations per label ("good i" positive, "bad i" negative, split
    "train") and `docs` documents to classify ("review i", negative and positive in turn): what
    `zeroshot.eval.tasks.load_task` and `zeroshot eval` read.
    """
    config = {"config": {"description": "Sentiment.", "doc_to_text": "Review: {text}\nSentiment:",
                         "doc_to_target": "{label}", "doc_to_choice": ["negative", "positive"]}}
    pool = range(pool_per_label)
    rows: list[dict] = [{"text": f"good {i}", "label": "positive", "split": "train"} for i in pool]
    rows += [{"text": f"bad {i}", "label": "negative", "split": "train"} for i in pool]
    rows += [{"text": f"review {i}", "label": ["negative", "positive"][i % 2]} for i in range(docs)]
    return write_jsonl(path, [config, *rows])
