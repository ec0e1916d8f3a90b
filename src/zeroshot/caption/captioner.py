"""A prefix captioner (ClipCap, Mokady et al. 2021): a frozen encoder's embedding -> frozen causal LM text.

Only a small mapping network trains. It turns one embedding (a CLIP image or text embedding, or a
sentence-transformers vector) into `prefix_length` vectors in the LM's input-embedding space; the LM
reads them in place of a prompt and continues with the caption. Training is teacher forcing: the LM's
cross-entropy on the caption's tokens after the prefix, with gradients flowing *through* the frozen LM
into the mapper. Two mappers, as in the paper: an MLP (ClipCap's default with a fine-tuned GPT-2) and
a transformer over the projected embedding plus learned constants (its frozen-LM variant).

A captioner is two files in a folder: `captioner.json` (settings, and the encoder and LM it was trained
with) and `mapper.safetensors`. `load_captioner` refuses an LM or embedding that does not fit. Training
checkpoints (after every epoch) are the training runtime's, `zeroshot.train.checkpoint`.

    >>> captioner = PrefixCaptioner(CaptionerConfig(embedding_dim=384, prefix_length=10), lm)
    >>> captioner.fit(embeddings, captions, epochs=3)
    >>> captioner.generate(embeddings[:2])
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from zeroshot.errors import UserError
from zeroshot.files import write_atomic
from zeroshot.models.lm import GenerationConfig
from zeroshot.train.checkpoint import Checkpoint, run_fingerprint
from zeroshot.validation import check_tensors

MAPPERS = ("mlp", "transformer")
CONFIG_FILE, WEIGHTS_FILE = "captioner.json", "mapper.safetensors"
FORMAT_VERSION = 1


@dataclass
class CaptionerConfig:
    """The mapping network's shape. `mlp_hidden` None: ClipCap's (prefix_length * lm width) / 2."""

    embedding_dim: int
    prefix_length: int = 10
    mapper: str = "mlp"
    mlp_hidden: int | None = None
    layers: int = 2  # transformer mapper (the paper uses 8; 2 keeps CPU training in minutes)
    max_caption_tokens: int = 32

    def check(self) -> None:
        """Raise `UserError` for settings no captioner can have."""
        if self.mapper not in MAPPERS:
            raise UserError(f"unknown mapper {self.mapper!r}: choose mlp or transformer")
        for name in ("embedding_dim", "prefix_length", "layers", "max_caption_tokens"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"{name.replace('_', ' ')} must be at least 1, got {getattr(self, name)}")
        if self.mlp_hidden is not None and self.mlp_hidden < 1:
            raise UserError(f"mlp hidden size must be at least 1, got {self.mlp_hidden}")


class MLPMapper(nn.Module):
    """embedding -> Linear -> tanh -> Linear -> prefix_length x width (ClipCap's MLP)."""

    def __init__(self, embedding_dim: int, width: int, prefix_length: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or max(1, width * prefix_length // 2)
        self.prefix_length, self.width = prefix_length, width
        self.net = nn.Sequential(
            nn.Linear(embedding_dim, hidden), nn.Tanh(), nn.Linear(hidden, width * prefix_length)
        )

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.net(embeddings).view(-1, self.prefix_length, self.width)


class TransformerMapper(nn.Module):
    """ClipCap's frozen-LM mapper: the embedding projected to `prefix_length` tokens, followed by as many
    learned constants; a transformer encoder reads all of them and the constants' outputs are the prefix."""

    def __init__(self, embedding_dim: int, width: int, prefix_length: int, layers: int = 2) -> None:
        super().__init__()
        self.prefix_length, self.width = prefix_length, width
        heads = next(h for h in (8, 4, 2, 1) if width % h == 0)
        self.project = nn.Linear(embedding_dim, prefix_length * width)
        self.constants = nn.Parameter(torch.randn(prefix_length, width))
        block = nn.TransformerEncoderLayer(
            width, heads, dim_feedforward=2 * width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        projected = self.project(embeddings).view(-1, self.prefix_length, self.width)
        constants = self.constants.unsqueeze(0).expand(projected.shape[0], -1, -1)
        return self.encoder(torch.cat([projected, constants], dim=1))[:, self.prefix_length :]


def build_mapper(config: CaptionerConfig, width: int) -> nn.Module:
    """The mapping network `config` describes, for an LM whose input embeddings are `width` wide."""
    if config.mapper == "mlp":
        return MLPMapper(config.embedding_dim, width, config.prefix_length, config.mlp_hidden)
    return TransformerMapper(config.embedding_dim, width, config.prefix_length, config.layers)


def lm_identity(lm) -> dict:
    """What a saved captioner records of its LM: name, widths, and a fingerprint of config and weights.

    The fingerprint hashes the config and a strided sample of the input embeddings, so the same weights
    match wherever their folder lives, and a different LM of the same width does not.
    """
    model = lm.model
    config = model.config.to_dict()
    for key in ("_name_or_path", "transformers_version", "torch_dtype", "dtype"):
        config.pop(key, None)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    weights = model.get_input_embeddings().weight.detach().reshape(-1)
    digest.update(weights[:: max(1, weights.numel() // 8192)].float().cpu().numpy().tobytes())
    return {
        "name": str(lm.name),
        "hidden_size": int(model.get_input_embeddings().weight.shape[1]),
        "vocab_size": int(model.get_input_embeddings().weight.shape[0]),
        "fingerprint": digest.hexdigest()[:16],
    }


@dataclass
class TrainHistory:
    """Per-epoch mean training loss, the steps run, and the seconds spent (summed over resumes)."""

    epoch_losses: list[float] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    seed: int = 0


class PrefixCaptioner:
    """A trainable mapping network in front of a frozen causal LM (a `TransformersLM`).

    `encoder` is a dict describing the frozen encoder whose embeddings it reads (kind, name,
    embedding_dim, fingerprint); it is saved with the captioner and checked when captioning.
    """

    def __init__(self, config: CaptionerConfig, lm, encoder: dict | None = None, seed: int = 0) -> None:
        config.check()
        self.config = config
        self.lm = lm
        self.encoder = dict(
            encoder or {"kind": "embeddings", "name": None, "embedding_dim": config.embedding_dim}
        )
        if int(self.encoder.get("embedding_dim", config.embedding_dim)) != config.embedding_dim:
            raise UserError(
                f"the encoder gives {self.encoder['embedding_dim']}-dimensional embeddings but the "
                f"captioner expects {config.embedding_dim}"
            )
        _freeze(lm.model)
        torch.manual_seed(seed)
        width = lm.model.get_input_embeddings().weight.shape[1]
        self.mapper = build_mapper(config, width).to(lm.device)
        self.history = TrainHistory(seed=seed)

    # -- sizes ----------------------------------------------------------------------------------------

    def parameter_counts(self) -> dict:
        """Trained (mapper) and frozen (LM) parameters, and the trained share."""
        trained = sum(p.numel() for p in self.mapper.parameters())
        frozen = sum(p.numel() for p in self.lm.model.parameters())
        return {"trained": trained, "frozen_lm": frozen, "trained_share": trained / (trained + frozen)}

    # -- training -------------------------------------------------------------------------------------

    def caption_ids(self, captions: Sequence[str]) -> list[list[int]]:
        """Token ids of each caption plus end-of-sequence, cut to `max_caption_tokens`."""
        eos = self.lm.model.generation_config.eos_token_id
        eos = eos[0] if isinstance(eos, list) else eos
        if eos is None:
            eos = self.lm.tokenizer.eos_token_id
        rows = []
        for number, caption in enumerate(captions, start=1):
            if not isinstance(caption, str) or not caption.strip():
                raise UserError(f"caption {number} is empty: every training example needs a caption")
            ids = self.lm.tokenizer(" " + caption.strip(), add_special_tokens=False)["input_ids"]
            rows.append(list(ids)[: self.config.max_caption_tokens - 1] + [int(eos)])
        return rows

    def loss(self, embeddings: torch.Tensor, ids: list[list[int]]) -> torch.Tensor:
        """Mean cross-entropy of the caption tokens given the prefix (teacher forcing)."""
        prefix = self.mapper(embeddings)
        n, p = prefix.shape[0], self.config.prefix_length
        length = max(len(row) for row in ids)
        tokens = torch.zeros((n, length), dtype=torch.long)
        mask = torch.zeros((n, length), dtype=torch.long)
        for i, row in enumerate(ids):
            tokens[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        tokens, mask = tokens.to(prefix.device), mask.to(prefix.device)
        token_embeddings = self.lm.model.get_input_embeddings()(tokens)
        inputs = torch.cat([prefix.to(token_embeddings.dtype), token_embeddings], dim=1)
        attention = torch.cat([torch.ones((n, p), dtype=torch.long, device=mask.device), mask], dim=1)
        labels = torch.cat(
            [torch.full((n, p), -100, device=tokens.device), tokens.masked_fill(mask == 0, -100)], dim=1
        )
        return self.lm.model(inputs_embeds=inputs, attention_mask=attention, labels=labels).loss

    def fit(
        self,
        embeddings: np.ndarray,
        captions: Sequence[str],
        epochs: int = 5,
        batch_size: int = 32,
        lr: float = 1e-3,
        seed: int = 0,
        checkpoint: str | os.PathLike | Checkpoint | None = None,
        resume: bool = False,
        progress: bool = False,
        on_epoch: Callable[[PrefixCaptioner, int], None] | None = None,
    ) -> PrefixCaptioner:
        """Train the mapper on (embedding, caption) pairs; return self.

        With `checkpoint` (a folder, or the runtime's `Checkpoint` of a caller that checked the resume
        rule itself), the mapper, the optimiser, the schedule and the history are written there after
        every epoch, atomically; `resume` continues from the last finished epoch written there, if it
        was written by the same settings, LM and data (`UserError` otherwise). `epochs` may grow
        between resumes.
        """
        embeddings = self._check_embeddings(embeddings)
        if len(embeddings) != len(captions):
            raise UserError(f"{len(embeddings)} embeddings but {len(captions)} captions")
        if len(captions) == 0:
            raise UserError("no training examples")
        if epochs < 1 or batch_size < 1 or not lr > 0:
            raise UserError("epochs and batch size must be at least 1 and the learning rate positive")
        if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
            folder = Path(checkpoint).expanduser()
            identity = self.run_identity(embeddings, captions, batch_size, lr, seed)
            checkpoint = Checkpoint(folder.parent, identity, what="captioner settings, LM or data",
                                    name=folder.name)
        saved = checkpoint.check_start(resume) if checkpoint is not None else None
        if resume and saved is None:
            raise UserError("nothing to resume: no checkpoint folder was given")
        ids = self.caption_ids(captions)
        optimizer = torch.optim.AdamW(self.mapper.parameters(), lr=lr, weight_decay=0.0)
        steps_per_epoch = math.ceil(len(ids) / batch_size)
        total = steps_per_epoch * epochs
        warmup = max(1, total // 20)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)),
        )
        start = 0
        if saved is not None:
            tensors = checkpoint.restore(optimizer, schedule)
            checkpoint.load_into(self.mapper.state_dict(), tensors.get("mapper", {}))
            self.history = TrainHistory(**saved["history"])
            start = int(saved["epochs_done"])
        self.history.seed = seed
        data = torch.as_tensor(embeddings)
        from tqdm.auto import tqdm

        for epoch in range(start, epochs):
            began = time.perf_counter()
            order = np.random.default_rng([seed, epoch]).permutation(len(ids))
            self.mapper.train()
            losses = []
            bar = tqdm(
                range(0, len(ids), batch_size),
                desc=f"epoch {epoch + 1}/{epochs}",
                unit="batch",
                disable=not progress,
                leave=False,
            )
            for begin in bar:
                batch = order[begin : begin + batch_size]
                loss = self.loss(data[batch].to(self.lm.device), [ids[i] for i in batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                losses.append(float(loss.item()))
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
            self.mapper.eval()
            self.history.step_losses.extend(losses)
            self.history.epoch_losses.append(float(np.mean(losses)))
            self.history.seconds += time.perf_counter() - began
            if checkpoint is not None:
                checkpoint.save(
                    {"epochs_done": epoch + 1, "history": asdict(self.history)},
                    {"mapper": _state(self.mapper)},
                    optimizer,
                    schedule,
                )
            if on_epoch is not None:
                on_epoch(self, epoch + 1)
        return self

    def run_identity(self, embeddings: np.ndarray, captions: Sequence[str], batch_size: int, lr: float,
                     seed: int) -> str:
        """The fingerprint of a `fit` run (its checkpoint must match it to resume): the mapper's
        settings, the LM, the data and the optimiser's settings; not `epochs`, which may grow."""
        data = hashlib.sha256(np.ascontiguousarray(embeddings, dtype=np.float32).tobytes())
        for caption in captions:
            data.update(str(caption).encode("utf-8", "surrogatepass") + b"\0")
        return run_fingerprint(asdict(self.config), lm_identity(self.lm)["fingerprint"], batch_size, lr,
                               seed, data.hexdigest())

    # -- decoding -------------------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(
        self, embeddings: np.ndarray, config: GenerationConfig | None = None, batch_size: int = 32
    ) -> list[str]:
        """One caption per embedding: greedy, beam search or sampling, as `config` says."""
        config = config or GenerationConfig(max_new_tokens=24)
        hf_config = self.lm._hf_config(config)
        embeddings = self._check_embeddings(embeddings)
        self.mapper.eval()
        captions: list[str] = []
        for begin in range(0, len(embeddings), batch_size):
            batch = torch.as_tensor(embeddings[begin : begin + batch_size]).to(self.lm.device)
            prefix = self.mapper(batch).to(self.lm.model.dtype)
            attention = torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device)
            with self.lm._seeded(config):
                out = self.lm.model.generate(
                    inputs_embeds=prefix,
                    attention_mask=attention,
                    generation_config=hf_config,
                    tokenizer=self.lm.tokenizer,
                )
            for row in out:
                text = self.lm.tokenizer.decode(row, skip_special_tokens=True).strip()
                for stop in config.stop:
                    text = text.split(stop)[0]
                captions.append(text.strip())
        return captions

    def _check_embeddings(self, embeddings) -> np.ndarray:
        array = np.asarray(embeddings, dtype=np.float32)
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2 or array.shape[1] != self.config.embedding_dim:
            got = array.shape[-1] if array.ndim else 0
            raise UserError(
                f"the captioner was trained on {self.config.embedding_dim}-dimensional embeddings "
                f"({self.encoder.get('name') or 'its encoder'}), got {got}-dimensional ones"
            )
        if not np.isfinite(array).all():
            raise UserError("the embeddings hold NaN or infinite values")
        return array

    # -- files ----------------------------------------------------------------------------------------

    def save(self, folder: str | os.PathLike) -> Path:
        """Write `captioner.json` and `mapper.safetensors` into `folder` (atomically); return it."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        record = {
            "format": "zeroshot-prefix-captioner",
            "version": FORMAT_VERSION,
            "config": asdict(self.config),
            "encoder": self.encoder,
            "lm": lm_identity(self.lm),
            "parameters": self.parameter_counts(),
            "history": asdict(self.history),
        }
        write_atomic(folder / WEIGHTS_FILE, lambda path: save_file(_state(self.mapper), str(path)))
        write_atomic(folder / CONFIG_FILE, json.dumps(record, indent=1))
        return folder


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}


def _freeze(model: nn.Module) -> None:
    # The LM is only read: no gradients accumulate in it, and eval mode turns off its dropout.
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)


def read_captioner_record(folder: str | os.PathLike) -> dict:
    """The `captioner.json` of a saved captioner (raises `UserError` if the folder holds none)."""
    path = Path(folder) / CONFIG_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{folder} holds no captioner ({CONFIG_FILE} is missing)") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if not isinstance(record, dict) or record.get("format") != "zeroshot-prefix-captioner":
        raise UserError(f"{path} is not a zeroshot captioner file")
    _check_record(path, record)
    return record


# Bounds on a saved captioner's sizes: a tampered record must not make `load_captioner` build a mapper of
# many gigabytes before its weights are even compared (the largest trained here are far below these).
_RECORD_LIMITS = {"embedding_dim": 1 << 16, "prefix_length": 1024, "mlp_hidden": 1 << 20, "layers": 64,
                  "max_caption_tokens": 1 << 16}


def _check_record(path: Path, record: dict) -> None:
    """The parts of `captioner.json` that loading reads, checked before any model loads."""
    def bad(what: str) -> UserError:
        return UserError(f"{path} is damaged ({what}); train the captioner again")

    lm, config, encoder = record.get("lm"), record.get("config"), record.get("encoder")
    if (not isinstance(lm, dict) or not isinstance(lm.get("name"), str)
            or not isinstance(lm.get("fingerprint"), str) or not _whole(lm.get("hidden_size"), 1 << 20)):
        raise bad(f"lm = {lm!r}")
    if not isinstance(config, dict) or not set(config) <= set(CaptionerConfig.__dataclass_fields__):
        raise bad(f"config = {config!r}")
    for key, value in config.items():
        if key == "mapper":
            if value not in MAPPERS:
                raise bad(f"mapper = {value!r}")
        elif not (value is None and key == "mlp_hidden") and not _whole(value, _RECORD_LIMITS[key]):
            raise bad(f"{key} = {value!r}")
    if "embedding_dim" not in config:
        raise bad("config has no embedding_dim")
    if encoder is not None and (not isinstance(encoder, dict)
                                or encoder.get("embedding_dim", config["embedding_dim"])
                                != config["embedding_dim"]):
        raise bad(f"encoder = {encoder!r}")
    history = record.get("history", {})
    if not isinstance(history, dict) or not set(history) <= set(TrainHistory.__dataclass_fields__):
        raise bad("history")


def _whole(value: object, limit: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= limit


def load_captioner(folder: str | os.PathLike, lm=None) -> PrefixCaptioner:
    """A saved captioner, on `lm` (default: the LM it records). Refuses an LM that does not match."""
    from safetensors.torch import load_file

    record = read_captioner_record(folder)
    saved = record["lm"]
    if lm is None:
        lm = load_caption_lm(None if saved["name"] == "default" else saved["name"])
    found = lm_identity(lm)
    if found["hidden_size"] != saved["hidden_size"]:
        raise UserError(
            f"the captioner feeds {saved['hidden_size']}-wide input embeddings but {lm.name} has "
            f"hidden size {found['hidden_size']}: use the LM it was trained with ({saved['name']})"
        )
    if found["fingerprint"] != saved["fingerprint"]:
        raise UserError(
            f"{lm.name} is not the LM this captioner was trained with ({saved['name']}, "
            f"fingerprint {saved['fingerprint']}): use that LM"
        )
    captioner = PrefixCaptioner(CaptionerConfig(**record["config"]), lm, encoder=record.get("encoder"))
    try:
        weights = load_file(str(Path(folder) / WEIGHTS_FILE))
    except Exception as exc:  # safetensors' own error type for a truncated, empty or foreign file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot read the mapper weights in {folder}: {first}") from None
    # names, shapes, dtypes and finite values against the mapper the record describes, then copied
    check_tensors(weights, captioner.mapper.state_dict(), f"{Path(folder) / WEIGHTS_FILE}",
                  "train the captioner again")
    captioner.mapper.load_state_dict(weights)
    captioner.history = TrainHistory(**record.get("history", {}))
    return captioner


def load_caption_lm(model: str | os.PathLike | None = None, device: str | None = None):
    """The frozen LM for a captioner, on the transformers backend (training needs gradients through it).

    A GGUF (and the default, None) is de-quantised once into a cached float32 Hugging Face folder
    (`zeroshot.models.dequantise.gguf_to_hf_folder`); a folder or hub id loads as it is.
    """
    from zeroshot.models.clip import _quiet_transformers  # one place that hushes loading bars
    from zeroshot.models.dequantise import gguf_to_hf_folder
    from zeroshot.models.lm_transformers import TransformersLM

    name = None if model is None else str(model)
    with _quiet_transformers():  # progress bars on stderr would bury a one-line error after them
        if name is None or name.lower().endswith(".gguf"):
            lm = TransformersLM.load(str(gguf_to_hf_folder(name)), "folder", device=device)
            lm.name = name or "default"
            return lm
        local = Path(name).expanduser()
        if local.exists():
            return TransformersLM.load(str(local), "folder", device=device)
        return TransformersLM.load(name, "hub", device=device)
