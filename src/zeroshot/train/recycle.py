"""Recycling an English LM for another language (de Vries & Nissim 2021, "As good as new").

1. Train a byte-level BPE (`tokenizers`) of the base model's vocabulary size on the target-language text;
   the base model's special tokens keep their strings and come first.
2. Give each new token an embedding: the mean of the base model's embeddings of the pieces the *base*
   tokenizer cuts the token's bytes into (both are byte-level BPEs over the same byte alphabet, so
   every new token has such pieces), or random ones (`init="random"`) for comparison.
3. Train only the input embeddings and the (tied) output embeddings; every Transformer block, norm and
   position embedding stays frozen, bit for bit. `mode="full"` trains everything (the upper reference).
4. Write a Hugging Face folder (`config.json`, safetensors, tokenizer, `recycle.json`, `loss.png`) that
   `load_lm` and every command accept. The checkpoint (every `save_every` steps: the trained tensors,
   optimizer, schedule and random states) is the training runtime's, `zeroshot.train.checkpoint`.

Bits per byte (`bits_per_byte`) compare models with different tokenizers: the total negative
log-likelihood of held-out text in bits, divided by its UTF-8 bytes. A fixed 10% of the corpus's
paragraphs (seeded shuffle) is held out (`split_corpus`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from zeroshot.errors import UserError
from zeroshot.files import write_atomic
from zeroshot.train.checkpoint import Checkpoint, plot_losses, run_fingerprint

HELD_OUT_FRACTION = 0.1
SPLIT_SEED = 0  # fixed forever: the held-out paragraphs must not move between runs
META_FILE = "recycle.json"
INITS = ("mean", "random")
MODES = ("embeddings", "full")
TEXT_SUFFIXES = (".txt", ".text", ".md")


# ---------------------------------------------------------------------------------------------------
# Corpus


def read_corpus(folder: str | os.PathLike) -> list[str]:
    """The paragraphs (blank-line separated) of every text file under `folder`, in a fixed order.

    `UserError` if the folder holds no text, or a file is not UTF-8 (named, with the byte offset).
    """
    root = Path(folder)
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    else:
        raise UserError(f"corpus folder not found: {root}")
    paragraphs: list[str] = []
    for path in files:
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(
                f"{path} is not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}): "
                "convert it, e.g. `iconv -f latin1 -t utf-8`"
            ) from None
        for block in text.replace("\r\n", "\n").split("\n\n"):
            block = block.strip()
            if block:
                paragraphs.append(block)
    if not paragraphs:
        raise UserError(f"the corpus in {root} is empty: give a folder of UTF-8 .txt files")
    return paragraphs


def split_corpus(
    paragraphs: Sequence[str], fraction: float = HELD_OUT_FRACTION
) -> tuple[list[str], list[str]]:
    """(train, held-out): a fixed `fraction` of the paragraphs, by a seeded shuffle."""
    order = list(range(len(paragraphs)))
    random.Random(SPLIT_SEED).shuffle(order)
    n_held = max(1, int(round(len(order) * fraction))) if len(order) > 1 else 0
    held = set(order[:n_held])
    train = [p for i, p in enumerate(paragraphs) if i not in held]
    return train, [p for i, p in enumerate(paragraphs) if i in held]


# ---------------------------------------------------------------------------------------------------
# Tokenizer and embedding initialisation


def _special_tokens(base_tokenizer) -> list[str]:
    """The base tokenizer's added special tokens, in id order."""
    added = (
        base_tokenizer.backend_tokenizer.get_added_tokens_decoder()
        if hasattr(base_tokenizer, "backend_tokenizer")
        else {}
    )
    return [token.content for _, token in sorted(added.items()) if token.special]


def train_tokenizer(texts: Sequence[str], vocab_size: int, base_tokenizer):
    """A byte-level BPE of exactly `vocab_size` tokens trained on `texts`, with the base's special tokens.

    `UserError` for a vocabulary size below the byte alphabet, or a corpus too small to learn that many.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = _special_tokens(base_tokenizer)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    smallest = len(alphabet) + len(specials)
    if vocab_size < smallest:
        raise UserError(
            f"a vocabulary size of {vocab_size} is too small: a byte-level BPE needs at least "
            f"{smallest} tokens (256 bytes + {len(specials)} special tokens)"
        )
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False, initial_alphabet=alphabet
    )
    bpe.train_from_iterator(texts, trainer)
    learned = bpe.get_vocab_size()
    if learned < vocab_size:
        raise UserError(
            f"the corpus is too small for a vocabulary of {vocab_size:,} tokens: BPE found only "
            f"{learned:,} (give more text, or a smaller --vocab-size)"
        )
    names = {}
    for attr in ("bos_token", "eos_token", "unk_token", "pad_token"):
        value = getattr(base_tokenizer, attr, None)
        if value is not None:
            names[attr] = str(value)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, chat_template=getattr(base_tokenizer, "chat_template", None), **names
    )


def token_pieces(new_tokenizer, base_tokenizer) -> list[list[int]]:
    """For every new token id, the base token ids its bytes are cut into by the base BPE.

    Special tokens map to the base's token of the same string; both BPEs are byte-level over the same
    alphabet, so a new token's string is a valid input to the base BPE model itself.
    """
    base_model = base_tokenizer.backend_tokenizer.model
    base_vocab = base_tokenizer.get_vocab()
    pieces: list[list[int]] = []
    for token_id in range(len(new_tokenizer)):
        token = new_tokenizer.convert_ids_to_tokens(token_id)
        if token in base_vocab:
            pieces.append([base_vocab[token]])
            continue
        ids = [piece.id for piece in base_model.tokenize(token)]
        pieces.append(ids)
    return pieces


def init_embeddings(
    base_weight: torch.Tensor, pieces: Sequence[Sequence[int]], init: str, seed: int = 0
) -> torch.Tensor:
    """New embedding rows: the mean of each token's base pieces, or random with the base's mean and std."""
    if init not in INITS:
        raise UserError(f"unknown init {init!r}: choose mean or random")
    base = base_weight.detach().float()
    if init == "random":
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn((len(pieces), base.shape[1]), generator=generator)
        return base.mean(0) + noise * base.std(0)
    rows = torch.empty((len(pieces), base.shape[1]))
    for i, ids in enumerate(pieces):
        rows[i] = base[list(ids)].mean(0) if ids else base.mean(0)
    return rows


# ---------------------------------------------------------------------------------------------------
# Measuring


@dataclass
class HeldOutScore:
    """Held-out likelihood of a model: comparable across tokenizers as bits per byte."""

    bits_per_byte: float
    tokens_per_byte: float
    n_bytes: int
    n_tokens: int

    def to_dict(self) -> dict:
        return asdict(self)


def _blocks(ids: list[int], seq_len: int, bos: int | None) -> list[list[int]]:
    """Windows of at most `seq_len` tokens; each starts with `bos` (when there is one), not scored."""
    body = seq_len - (1 if bos is not None else 0)
    return [([bos] if bos is not None else []) + ids[i : i + body] for i in range(0, len(ids), body)]


@torch.inference_mode()
def bits_per_byte(
    model, tokenizer, texts: Sequence[str], seq_len: int = 256, batch_size: int = 8, progress: bool = False
) -> HeldOutScore:
    """Negative log-likelihood of `texts` in bits per UTF-8 byte (each text on its own, cut in windows).

    The first token of each window is predicted from the begin-of-sequence token, so every byte is
    paid for; tokenizers without one leave each window's first token unscored (said in tokens_per_byte).
    """
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    bos = tokenizer.bos_token_id
    windows: list[list[int]] = []
    n_bytes = n_tokens = 0
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        n_bytes += len(text.encode("utf-8"))
        n_tokens += len(ids)
        windows.extend(_blocks(ids, seq_len, bos))
    windows.sort(key=len)
    total = 0.0
    model.eval()
    for start in tqdm(range(0, len(windows), batch_size), desc="held-out", disable=not progress):
        batch = windows[start : start + batch_size]
        width = max(len(w) for w in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, w in enumerate(batch):
            ids[row, : len(w)] = torch.tensor(w)
            mask[row, : len(w)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        targets = ids[:, 1:].to(device)
        picked = logp.gather(-1, targets[..., None])[..., 0] * mask[:, 1:].to(device)
        total -= float(picked.sum())
    return HeldOutScore(total / math.log(2) / max(n_bytes, 1), n_tokens / max(n_bytes, 1), n_bytes, n_tokens)


# ---------------------------------------------------------------------------------------------------
# Training


@dataclass
class RecycleConfig:
    """How the embeddings are relearned."""

    vocab_size: int | None = None  # None: the base model's
    init: str = "mean"
    mode: str = "embeddings"  # "embeddings" (body frozen) or "full"
    steps: int = 1000
    seq_len: int = 128
    batch_size: int = 16
    learning_rate: float = 2e-3
    warmup: int = 50
    save_every: int = 100  # steps between checkpoints (resume after a kill)
    seed: int = 0

    def check(self) -> None:
        """Every rule on the settings, before any model or tokenizer loads."""
        if self.vocab_size is not None and self.vocab_size < 1:
            raise UserError(f"the vocabulary size must be at least 1, got {self.vocab_size}")
        if self.init not in INITS:
            raise UserError(f"unknown init {self.init!r}: choose mean or random")
        if self.mode not in MODES:
            raise UserError(f"unknown mode {self.mode!r}: choose embeddings or full")
        for name in ("steps", "seq_len", "batch_size", "save_every"):
            if getattr(self, name) < 1:
                raise UserError(f"{name.replace('_', ' ')} must be at least 1, got {getattr(self, name)}")
        if self.seq_len < 2:
            raise UserError("the sequence length must be at least 2 tokens")
        if not self.learning_rate > 0:
            raise UserError(f"the learning rate must be > 0, got {self.learning_rate}")


@dataclass
class RecycleResult:
    """What a recycling run produced."""

    output_dir: str
    base_model: str
    vocab_size: int
    init: str
    mode: str
    steps: int
    trainable_params: int
    total_params: int
    train_loss: list[float] = field(default_factory=list)  # mean loss per logged interval
    seconds: float = 0.0
    tokenizer_seconds: float = 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "trained_share": self.trainable_params / self.total_params}


def _run_key(base: str, config: RecycleConfig, texts: Sequence[str]) -> str:
    """The run's fingerprint: base model, settings and corpus (a `--resume` must match it)."""
    corpus = hashlib.sha256()
    for text in texts:
        corpus.update(text.encode("utf-8") + b"\0")
    return run_fingerprint(base, asdict(config), corpus.hexdigest())


def _batches(ids: np.ndarray, seq_len: int, batch_size: int, seed: int):
    """Endless random windows of `seq_len` tokens from the concatenated training stream."""
    rng = np.random.default_rng(seed)
    last = len(ids) - seq_len
    if last < 1:
        raise UserError(
            f"the training text is {len(ids)} tokens, shorter than one window of {seq_len}: "
            "give more text or a smaller --seq-len"
        )
    while True:
        starts = rng.integers(0, last, size=batch_size)
        yield torch.from_numpy(np.stack([ids[s : s + seq_len] for s in starts]).astype(np.int64))


def recycle_lm(
    base_model: str | os.PathLike | None,
    train_texts: Sequence[str],
    output_dir: str | os.PathLike,
    config: RecycleConfig | None = None,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
    tokenizer=None,
    on_log: Callable[[int, float], None] | None = None,
) -> RecycleResult:
    """Recycle the Hugging Face model `base_model` for the language of `train_texts` into `output_dir`.

    `base_model` is a Hugging Face folder or hub id, or a GGUF (de-quantised once, after the checks
    that need no model). `tokenizer` reuses an already trained target tokenizer (e.g. to compare inits
    on one vocabulary).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zeroshot.train.soft_prompt import trainable_model

    config = config or RecycleConfig()
    config.check()
    out = Path(output_dir)
    Checkpoint(out, None).check_start(resume, finished=META_FILE)  # before a GGUF is de-quantised
    base_model = trainable_model(base_model)
    run_key = _run_key(base_model, config, train_texts)
    checkpoint = Checkpoint(out, run_key, what="base model, corpus or settings")
    state = checkpoint.check_start(resume, finished=META_FILE)  # before the tokenizer and model load
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    from transformers import AutoConfig

    base_tokenizer = AutoTokenizer.from_pretrained(base_model)
    # The tokenizer first: a corpus too small for the vocabulary fails before the model loads.
    vocab_size = config.vocab_size or AutoConfig.from_pretrained(base_model).vocab_size
    started = time.perf_counter()
    if tokenizer is None:
        tokenizer = train_tokenizer(train_texts, vocab_size, base_tokenizer)
    tokenizer_seconds = time.perf_counter() - started
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    base_in = model.get_input_embeddings().weight.detach().clone()
    base_out = None if tied else model.get_output_embeddings().weight.detach().clone()
    pieces = token_pieces(tokenizer, base_tokenizer)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        model.get_input_embeddings().weight.copy_(init_embeddings(base_in, pieces, config.init, config.seed))
        if not tied:
            model.get_output_embeddings().weight.copy_(
                init_embeddings(base_out, pieces, config.init, config.seed)
            )
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(tokenizer, attr)
        setattr(model.config, attr, value)
        if getattr(model, "generation_config", None) is not None:
            setattr(model.generation_config, attr, value)

    trained = _trainable(model, config.mode)
    trainable = int(sum(p.numel() for p in trained))
    total = int(sum(p.numel() for p in model.parameters()))
    model.to(device)
    optimizer = torch.optim.AdamW(trained, lr=config.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(config.warmup, config.steps))

    stream = []
    eos = tokenizer.eos_token_id
    for text in train_texts:
        stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if eos is not None:
            stream.append(eos)
    batches = _batches(np.array(stream, dtype=np.int64), config.seq_len, config.batch_size, config.seed)

    step, seconds, history = 0, 0.0, []
    if state is not None:
        # The saved parameter groups come back too, so the first step after a resume runs at the
        # schedule's rate for that step (a fresh optimizer would hold the rate of step 0).
        saved = checkpoint.restore(optimizer, schedule)
        checkpoint.load_into(_state_tensors(model, config.mode), saved.get("model", {}))
        step, seconds, history = state["step"], state["seconds"], state["history"]
        for _ in range(step):  # the batches a resumed run already used
            next(batches)
    out.mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm

    bar = tqdm(
        total=config.steps, initial=step, desc=f"recycle ({config.mode})", unit="step", disable=not progress
    )
    model.train() if config.mode == "full" else model.eval()
    window: list[float] = []
    tick = time.perf_counter()
    try:
        while step < config.steps:
            ids = next(batches).to(device)
            loss = model(input_ids=ids, labels=ids).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            window.append(loss.item())
            bar.update(1)
            bar.set_postfix_str(f"loss {window[-1]:.3f}")
            if step % config.save_every == 0 or step == config.steps:
                history.append([step, float(np.mean(window))])
                window = []
                now = time.perf_counter()
                seconds += now - tick
                tick = now
                checkpoint.save(
                    {"step": step, "seconds": seconds, "history": history},
                    {"model": _state_tensors(model, config.mode)},
                    optimizer,
                    schedule,
                )
                if on_log is not None:  # after the save: what it reports survives a kill in it
                    on_log(step, history[-1][1])
    finally:
        bar.close()

    model.eval()
    _write_folder(model, tokenizer, out)
    result = RecycleResult(
        str(out),
        base_model,
        len(tokenizer),
        config.init,
        config.mode,
        step,
        trainable,
        total,
        [h[1] for h in history],
        seconds,
        tokenizer_seconds,
    )
    meta = {
        "base_model": base_model,
        "config": asdict(config),
        "run_key": run_key,
        "history": history,
        "result": result.to_dict(),
    }
    write_atomic(out / META_FILE, json.dumps(meta, indent=2) + "\n")
    plot_losses(
        out / "loss.png",
        {"training loss": ([h[0] for h in history], [h[1] for h in history])},
        "step",
        "training loss (nats/token)",
        title=f"recycling, {config.mode}",
    )
    checkpoint.remove()
    return result


def _trainable(model, mode: str) -> list[torch.nn.Parameter]:
    """Freeze the body; the embeddings (input, and output when untied) stay trainable, or all in "full"."""
    if mode == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return [p for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    keep = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings()
    if out is not None and out.weight is not keep[0]:
        keep.append(out.weight)
    for p in keep:
        p.requires_grad_(True)
    return keep


def _warmup_cosine(warmup: int, steps: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def _state_tensors(model, mode: str) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint keeps: the trained embeddings, or the whole state in "full"."""
    if mode == "full":
        return {k: v for k, v in model.state_dict().items()}
    tensors = {"embed_in": model.get_input_embeddings().weight}
    out = model.get_output_embeddings()
    if out is not None and out.weight is not model.get_input_embeddings().weight:
        tensors["embed_out"] = out.weight
    return tensors


def _write_folder(model, tokenizer, out: Path) -> None:
    """Save model + tokenizer through a scratch folder, so a kill never leaves half a model behind."""
    scratch = out / ".writing"
    shutil.rmtree(scratch, ignore_errors=True)
    model.save_pretrained(scratch, safe_serialization=True)
    tokenizer.save_pretrained(scratch)
    for item in scratch.iterdir():
        os.replace(item, out / item.name)
    scratch.rmdir()
