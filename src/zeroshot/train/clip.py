"""Train CLIP on your own image-text pairs, or lock the text tower and train the image tower (LiT).

    result = train_clip("pairs.jsonl", "my-clip", TrainConfig(mode="lit"))   # or a folder of class folders
    model = load_clip("my-clip")                                            # every vision command takes it

Two modes, one objective (the symmetric InfoNCE loss of CLIP with a learnable temperature):
- `full`: both towers train (the text tower starts from the pretrained sentence encoder);
- `lit` (Zhai et al., 2022, "locked-image/text tuning", here with the *text* tower locked): the
  pretrained text tower and its (identity) projection stay frozen and in eval mode; the image tower
  learns to land where the sentence encoder puts the matching caption. Frozen weights are never
  handed to the optimiser, so they stay bit-identical.

The image tower is a small ViT (transformers' `CLIPVisionModel`), the text tower the bundled
all-MiniLM-L6-v2 (or any sentence-transformers/BERT folder); the result is a Hugging Face
`vision-text-dual-encoder` folder (see `zeroshot.models.dual_encoder`).

Input (read by `zeroshot.train.pairs`): a captions file (JSONL `{"image": ..., "caption": ...}` or CSV
with `image,caption` columns, image paths relative to the file), or a folder with one sub-folder of
images per class, whose captions are the class name in `templates` ("a photo of a {}.", one drawn per
image and step).

Like the other long-running commands: a progress bar with the loss; a checkpoint every
`checkpoint_every` steps and on Ctrl-C that `resume=True` continues from, exactly (the training
runtime, `zeroshot.train.checkpoint`); a dev split, with the best dev loss's weights kept and early
stopping after `patience` evaluations without improvement; a loss-curve PNG and `training.json` next to
the model.

Duplicate captions in a batch (every image of a class has the same caption) are encoded once and
are not each other's negatives (`zeroshot.train.losses.contrastive_loss`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from zeroshot.errors import UserError
from zeroshot.files import write_atomic
from zeroshot.numerics import batch_slices, batched
from zeroshot.train.checkpoint import Checkpoint, plot_losses, run_fingerprint
from zeroshot.train.losses import contrastive_loss
from zeroshot.train.pairs import Pairs, decode_images, read_pairs

# Re-exported: the data half moved to `zeroshot.train.pairs`, the loss to `zeroshot.train.losses`.
__all__ = ["MODES", "PROJECTIONS", "DEFAULT_TEMPLATES", "TrainConfig", "TrainResult", "Pairs", "read_pairs",
           "decode_images", "contrastive_loss", "resolve_text_model", "build_model", "make_image_processor",
           "check_widths", "trainable_names", "tower_sizes", "run_identity", "train_clip"]

MODES = ("lit", "full")
PROJECTIONS = ("linear", "none")
FINISHED_FILE = "config.json"  # what a finished run leaves beside its weights
DEFAULT_TEMPLATES = ("a photo of a {}.",)
_MAX_LOGIT_SCALE = math.log(100.0)  # CLIP clamps the temperature at 100
# Patches (+1 class token) per image a tower may see: ViT-L/14 at 336 px has 577; 64 x 64 patches is
# already far past what trains on a CPU, and past it one attention matrix alone is gigabytes per image.
MAX_TOKENS = 64 * 64 + 1
# The trainer's state as `_Trainer` saves it: the runtime refuses a checkpoint whose state.json differs.
STATE_TYPES = {"step": int, "best_step": int, "bad_evals": int, "history": list, "running": list,
               "seconds": (int, float), "stopped_early": bool, "best_dev_loss": (int, float, type(None))}


@dataclass
class TrainConfig:
    """Everything that determines a training run (all of it but `epochs`-free knobs is in its fingerprint)."""

    mode: str = "lit"
    text_model: str | None = None  # a sentence-transformers / BERT folder; None = bundled all-MiniLM-L6-v2
    templates: Sequence[str] = DEFAULT_TEMPLATES  # class-folder input only
    image_size: int = 28
    patch_size: int = 7
    image_width: int = 128
    image_layers: int = 4
    image_heads: int = 4
    projection: str = "linear"  # "none": no image projection, so the image width must equal the text width
    image_mean: float = 0.5
    image_std: float = 0.5
    epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    text_lr: float | None = None  # full mode: the pretrained text tower's peak rate (default lr / 100)
    weight_decay: float = 0.05
    warmup_steps: int = 50
    dev_fraction: float = 0.1
    eval_every: int = 0  # steps between dev evaluations; 0 = once per epoch
    patience: int = 3
    checkpoint_every: int = 50
    max_steps: int | None = None  # stop after this many steps (quick runs, tests)
    seed: int = 0

    def check(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"unknown mode {self.mode!r}: choose lit (frozen text tower) or full")
        if self.projection not in PROJECTIONS:
            raise UserError(f"unknown projection {self.projection!r}: choose linear or none")
        positive = dict(image_size=self.image_size, patch_size=self.patch_size, image_width=self.image_width,
                        image_layers=self.image_layers, image_heads=self.image_heads, epochs=self.epochs,
                        batch_size=self.batch_size, patience=self.patience,
                        checkpoint_every=self.checkpoint_every)
        for name, value in positive.items():
            if value < 1:
                raise UserError(f"{name.replace('_', '-')} must be at least 1, got {value}")
        if self.batch_size < 2:
            raise UserError("batch size must be at least 2: a contrastive loss needs negatives")
        if self.image_size % self.patch_size:
            raise UserError(f"image size {self.image_size} is not a multiple of patch size {self.patch_size}")
        if self.image_width % self.image_heads:
            raise UserError(f"image width {self.image_width} is not divisible by {self.image_heads} heads")
        if not 0 < self.dev_fraction < 1:
            raise UserError(f"dev fraction must be between 0 and 1, got {self.dev_fraction}")
        if self.lr <= 0 or self.image_std <= 0 or (self.text_lr is not None and self.text_lr <= 0):
            raise UserError("learning rates and image std must be positive")
        if not self.templates or any(template.count("{}") != 1 for template in self.templates):
            raise UserError("each caption template must contain {} exactly once, where the class name goes")
        for name in ("eval_every", "warmup_steps"):  # 0 means "once per epoch" / "no warm-up"
            if getattr(self, name) < 0:
                raise UserError(f"{name.replace('_', '-')} must be 0 or more, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise UserError(f"max-steps must be at least 1, got {self.max_steps}")
        if self.weight_decay < 0:
            raise UserError(f"weight decay must be 0 or more, got {self.weight_decay}")
        self.check_size()

    def step_bytes(self) -> dict[str, int]:
        """A lower bound on the memory one training step of the image tower takes, from the config alone.

        Per image: its pixels (float32, kept decoded for the whole run), and per layer the activations
        autograd keeps for the backward pass (about 12 floats per token per width unit: attention
        inputs and outputs, the 4x MLP, norms) plus one attention matrix per head (tokens^2). A
        lower bound on purpose: a refusal must never stop a run that would have fitted.
        """
        tokens = (self.image_size // self.patch_size) ** 2 + 1  # patches + the class token
        per_image = 4 * (3 * self.image_size ** 2
                         + self.image_layers * (12 * tokens * self.image_width
                                                + self.image_heads * tokens * tokens))
        return {"tokens_per_image": tokens, "total": per_image * self.batch_size}

    def check_size(self) -> None:
        """Refuse a tower whose one training step could not fit in memory, before any image is decoded
        (`--image-size 100000 --patch-size 1` took more than 3 GiB before failing)."""
        from zeroshot.models.memory import available_memory

        estimate = self.step_bytes()
        if estimate["tokens_per_image"] > MAX_TOKENS:
            raise UserError(f"--image-size {self.image_size} with --patch-size {self.patch_size} makes "
                            f"{estimate['tokens_per_image'] - 1} patches per image; at most {MAX_TOKENS - 1} "
                            "are supported: use a larger --patch-size or a smaller --image-size")
        have = available_memory()
        if estimate["total"] > have:
            gib = 1 << 30
            raise UserError(f"one training step needs at least {estimate['total'] / gib:.1f} GiB "
                            f"({estimate['tokens_per_image']} tokens per image, batch {self.batch_size}) "
                            f"but {have / gib:.1f} GiB is available: use a smaller --image-size or "
                            "--batch-size, or a larger --patch-size")


@dataclass
class TrainResult:
    """What a run produced: where, how long, how well (dev), and what was trained or frozen."""

    out: Path
    steps: int
    epochs_run: float
    best_dev_loss: float
    stopped_early: bool
    seconds: float
    record: dict = field(default_factory=dict)
    model: object = None  # the trained model, in memory, as an `ImageTextModel`

    def to_dict(self) -> dict:
        return {"out": str(self.out), "steps": self.steps, "epochs_run": self.epochs_run,
                "best_dev_loss": self.best_dev_loss, "stopped_early": self.stopped_early,
                "seconds": round(self.seconds, 1), **{k: v for k, v in self.record.items() if k != "history"}}


# ---------------------------------------------------------------------------------------------- model

def resolve_text_model(text_model: str | None) -> tuple[Path, str]:
    """The text tower's folder and the pooling its sentence-transformers config names (mean by default)."""
    from zeroshot.models.sentence import _BUNDLED, bundled_minilm_dir

    if text_model is None or (text_model.lower() in _BUNDLED and not Path(text_model).exists()):
        folder = bundled_minilm_dir()
    else:
        folder = Path(text_model).expanduser()
        if not (folder / "config.json").is_file():
            raise UserError(f"{folder}: not a sentence-transformers or BERT folder (no config.json); "
                            "hub ids cannot be downloaded here")
    pooling = "mean"
    for pooling_config in sorted(folder.glob("*_Pooling/config.json")):
        settings = json.loads(pooling_config.read_text(encoding="utf-8"))
        if settings.get("pooling_mode_cls_token"):
            pooling = "cls"
        elif not settings.get("pooling_mode_mean_tokens", True):
            raise UserError(f"{pooling_config}: only mean or [CLS] pooling text towers are supported")
    return folder, pooling


def build_model(config: TrainConfig):
    """A fresh dual encoder: pretrained text tower, random image tower; (model, tokenizer, processor)."""
    from transformers import (
        AutoModel,
        AutoTokenizer,
        CLIPVisionConfig,
        CLIPVisionModel,
        VisionTextDualEncoderConfig,
    )

    from zeroshot.models.clip import _quiet_transformers
    from zeroshot.models.dual_encoder import PooledDualEncoder

    folder, pooling = resolve_text_model(config.text_model)
    check_widths(config)
    with _quiet_transformers():
        text_tower = AutoModel.from_pretrained(str(folder), dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    text_width = int(text_tower.config.hidden_size)
    vision_config = CLIPVisionConfig(hidden_size=config.image_width, intermediate_size=4 * config.image_width,
                                     num_hidden_layers=config.image_layers,
                                     num_attention_heads=config.image_heads, image_size=config.image_size,
                                     patch_size=config.patch_size, num_channels=3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        image_tower = CLIPVisionModel(vision_config)
        dual_config = VisionTextDualEncoderConfig.from_vision_text_configs(
            vision_config, text_tower.config, projection_dim=text_width)
        dual_config.text_pooling = pooling
        with _quiet_transformers():
            model = PooledDualEncoder(config=dual_config, vision_model=image_tower, text_model=text_tower)
        with torch.no_grad():
            # The text side keeps the sentence encoder's own space (an identity projection, frozen in
            # LiT); the image side learns a linear map into it, or none when the widths already match.
            model.text_projection.weight.copy_(torch.eye(text_width))
            if config.projection == "none":
                model.visual_projection.weight.copy_(torch.eye(text_width))
            model.logit_scale.fill_(math.log(1 / 0.07))
    return model, tokenizer, make_image_processor(config)


def make_image_processor(config: TrainConfig):
    """CLIP's preprocessing at the tower's size: shortest side to `image_size`, centre crop, normalise."""
    from transformers import CLIPImageProcessorPil

    side = config.image_size
    return CLIPImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                                 image_mean=[config.image_mean] * 3, image_std=[config.image_std] * 3)


def check_widths(config: TrainConfig) -> None:
    """Without a projection the image tower must be as wide as the text tower; say so before any work."""
    if config.projection != "none":
        return
    folder, _ = resolve_text_model(config.text_model)
    try:
        text_width = int(json.loads((folder / "config.json").read_text(encoding="utf-8"))["hidden_size"])
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{folder}/config.json does not give the text tower's width (hidden_size)") from exc
    if config.image_width != text_width:
        raise UserError(f"the image tower's width ({config.image_width}) does not fit the text tower's "
                        f"({text_width}) and --projection none adds no projection between them: use "
                        f"--projection linear or --image-width {text_width}")


def trainable_names(model, config: TrainConfig) -> list[str]:
    """Parameters the optimiser updates: everything in full mode; all but the text side in LiT."""
    names = []
    for name, _ in model.named_parameters():
        frozen_text = name.startswith(("text_model.", "text_projection."))
        if config.mode == "full" or not frozen_text:
            if config.projection == "none" and name.startswith("visual_projection."):
                continue  # "no projection" means an identity that never changes
            names.append(name)
    return names


def tower_sizes(model, trainable: Sequence[str]) -> dict:
    """Parameter counts of each tower and of what was trained."""
    counts = {"image_tower": 0, "text_tower": 0, "projections_and_scale": 0, "trained": 0, "frozen": 0}
    keep = set(trainable)
    for name, param in model.named_parameters():
        part = ("image_tower" if name.startswith("vision_model.") else
                "text_tower" if name.startswith("text_model.") else "projections_and_scale")
        counts[part] += param.numel()
        counts["trained" if name in keep else "frozen"] += param.numel()
    return counts


# ------------------------------------------------------------------------------------------- training

def run_identity(pairs: Pairs, config: TrainConfig) -> str:
    """The run's fingerprint: settings (less the knobs a resume may change), text tower, data."""
    settings = asdict(config)
    for knob in ("patience", "checkpoint_every", "eval_every"):  # may change between resumes
        settings.pop(knob)
    settings["templates"] = list(config.templates)
    folder, _ = resolve_text_model(config.text_model)
    tower = [f"{weights.name}:{weights.stat().st_size}" for weights in sorted(folder.glob("*.safetensors"))]
    data = hashlib.sha256()
    for path, text in zip(pairs.images, pairs.captions or pairs.labels or [], strict=True):
        data.update(f"{path}\0{text}\n".encode())
    return run_fingerprint(settings, tower, data.hexdigest())


class _Trainer:
    """One run: data, model, optimiser, schedule. `run()` trains and returns the result; its files are
    the runtime's (`self.checkpoint`)."""

    def __init__(self, pairs: Pairs, config: TrainConfig, progress: bool, checkpoint: Checkpoint) -> None:
        from zeroshot.models.clip import ImageSpec

        self.pairs, self.config, self.progress = pairs, config, progress
        self.checkpoint, self.out, self.fingerprint = checkpoint, checkpoint.out, checkpoint.fingerprint
        self.processor = make_image_processor(config)
        self.spec = ImageSpec.from_processor(self.processor)
        pixels, kept = decode_images(pairs, self.spec, progress)
        self.pixels = pixels
        self.captions = [pairs.captions[i] for i in kept] if pairs.captions is not None else None
        self.labels = [pairs.labels[i] for i in kept] if pairs.labels is not None else None
        self.templates = list(config.templates)
        rng = np.random.default_rng(config.seed)
        order = rng.permutation(len(pixels))
        n_dev = max(1, int(round(len(pixels) * config.dev_fraction)))
        if len(pixels) - n_dev < 2:
            raise UserError(f"only {len(pixels)} readable images: too few to train and keep a dev split")
        # The dev split keeps its shuffled order: dev batches mix captions as training batches do (sorted,
        # a batch would hold one class, and its loss would measure the batch's make-up, not the model).
        self.dev, self.train = order[:n_dev], order[n_dev:]
        self.steps_per_epoch = max(1, len(self.train) // min(config.batch_size, len(self.train)))
        self.total_steps = config.epochs * self.steps_per_epoch
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.eval_every = config.eval_every or self.steps_per_epoch
        self.model, self.tokenizer, _ = build_model(config)
        self.trainable = trainable_names(self.model, config)
        params = dict(self.model.named_parameters())
        for name, param in params.items():
            param.requires_grad_(name in self.trainable)
        # A pretrained text tower fine-tuned at the new image tower's rate would forget what it knows:
        # in full mode it gets its own, smaller rate.
        text_lr = config.text_lr if config.text_lr is not None else config.lr / 100
        groups = []
        for is_text in (False, True):
            for decays in (True, False):
                members = [params[n] for n in self.trainable
                           if n.startswith("text_model.") == is_text and (params[n].ndim >= 2) == decays]
                if members:
                    groups.append({"params": members, "base_lr": text_lr if is_text else config.lr,
                                   "weight_decay": config.weight_decay if decays else 0.0})
        self.optimizer = torch.optim.AdamW(groups, lr=config.lr)
        self.text_cache: dict[str, torch.Tensor] = {}  # LiT: a frozen caption's features never change
        self.state = {"step": 0, "best_dev_loss": None, "best_step": 0, "bad_evals": 0, "history": [],
                      "seconds": 0.0, "stopped_early": False, "running": []}
        self.best: dict[str, torch.Tensor] | None = None

    # -- captions
    def caption_of(self, index: int, draw: int) -> str:
        if self.captions is not None:
            return self.captions[index]
        template = self.templates[draw % len(self.templates)]
        return template.replace("{}", self.labels[index])

    def text_features(self, captions: list[str], grad: bool) -> torch.Tensor:
        if self.config.mode == "lit":
            missing = [c for c in captions if c not in self.text_cache]
            if missing:
                with torch.no_grad():
                    for caption, row in zip(missing, self._encode_texts(missing), strict=True):
                        self.text_cache[caption] = row
            return torch.stack([self.text_cache[c] for c in captions])
        with torch.set_grad_enabled(grad):
            return self._encode_texts(captions)

    def _encode_texts(self, captions: list[str]) -> torch.Tensor:
        # The same tokenisation as ImageTextModel.encode_texts, so training sees what inference sees.
        max_length = int(getattr(self.model.config.text_config, "max_position_embeddings", 512))
        tokens = self.tokenizer(captions, padding=True, truncation=True, max_length=max_length,
                                return_tensors="pt")
        return self.model.get_text_features(**tokens)

    def batch_loss(self, indices: np.ndarray, draws: np.ndarray, grad: bool) -> torch.Tensor:
        from zeroshot.vision.transforms import normalise_batch

        captions = [self.caption_of(int(i), int(d)) for i, d in zip(indices, draws, strict=True)]
        distinct = list(dict.fromkeys(captions))
        position = {c: k for k, c in enumerate(distinct)}
        caption_index = torch.tensor([position[c] for c in captions])
        pixels = normalise_batch(self.pixels[indices], self.spec)
        with torch.set_grad_enabled(grad):
            image_features = self.model.get_image_features(pixel_values=pixels)
            text_features = self.text_features(distinct, grad)
            return contrastive_loss(image_features, text_features, caption_index, self.model.logit_scale)

    def set_train_mode(self) -> None:
        self.model.train()
        if self.config.mode == "lit":
            self.model.text_model.eval()  # a locked tower runs as at inference: no dropout

    @torch.no_grad()
    def dev_metrics(self) -> tuple[float, float]:
        """Mean dev loss over fixed batches; dev top-1: each image's caption first among all dev captions."""
        self.model.eval()
        size = self.config.batch_size
        losses, weights = [], []
        draws = np.arange(len(self.dev))  # fixed templates: the dev loss is comparable across evaluations
        for part in batch_slices(len(self.dev), size):
            chunk = self.dev[part]
            if len(chunk) < 2:
                continue
            losses.append(float(self.batch_loss(chunk, draws[part], grad=False)))
            weights.append(len(chunk))
        loss = float(np.average(losses, weights=weights)) if losses else float("nan")
        from zeroshot.vision.transforms import normalise_batch

        captions = [self.caption_of(int(i), int(d)) for i, d in zip(self.dev, draws, strict=True)]
        distinct = list(dict.fromkeys(captions))
        texts = F.normalize(torch.cat([self.text_features(part, grad=False)
                                       for part in batched(distinct, 256)]), dim=-1)
        hits = 0
        for part in batch_slices(len(self.dev), 256):
            chunk = self.dev[part]
            images = F.normalize(self.model.get_image_features(
                pixel_values=normalise_batch(self.pixels[chunk], self.spec)), dim=-1)
            best = (images @ texts.t()).argmax(dim=1).tolist()
            hits += sum(distinct[b] == captions[part.start + k] for k, b in enumerate(best))
        self.set_train_mode()
        return loss, hits / len(self.dev)

    # -- schedule
    def lr_at(self, step: int) -> float:
        """The schedule's factor at `step` (times each group's peak rate): linear warm-up, cosine decay."""
        warmup = min(self.config.warmup_steps, max(1, self.total_steps // 10))
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, self.total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def batch_at(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The images and template draws of `step`: a function of (seed, step) alone, so resuming is exact."""
        epoch, within = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng((self.config.seed, epoch)).permutation(self.train)
        size = min(self.config.batch_size, len(self.train))
        indices = order[within * size:(within + 1) * size]
        draws = np.random.default_rng((self.config.seed, epoch, within, 1)).integers(0, 1 << 30, len(indices))
        return indices, draws

    # -- the loop
    def run(self, saved: dict | None) -> TrainResult:
        """Train from the start, or from the `saved` state `check_start` returned; write the model."""
        from tqdm.auto import tqdm

        if saved is not None:
            self._restore(saved)  # restores torch's random state too
        else:
            torch.manual_seed(self.config.seed)  # dropout (full mode) draws from torch's global generator
        started = time.perf_counter() - self.state["seconds"]
        self.set_train_mode()
        running: list[float] = self.state.setdefault("running", [])  # losses since the last evaluation
        bar = tqdm(total=self.total_steps, initial=self.state["step"], unit="step",
                   desc=f"train-clip ({self.config.mode})", disable=not self.progress, dynamic_ncols=True)
        step_rng = None  # torch's random state where the unfinished step began (None: between steps)
        try:
            while self.state["step"] < self.total_steps and not self.state["stopped_early"]:
                step = self.state["step"]
                step_rng = torch.get_rng_state()
                for group in self.optimizer.param_groups:
                    group["lr"] = group["base_lr"] * self.lr_at(step)
                indices, draws = self.batch_at(step)
                loss = self.batch_loss(indices, draws, grad=True)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                with torch.no_grad():
                    self.model.logit_scale.clamp_(0, _MAX_LOGIT_SCALE)
                running.append(loss.item())
                self.state["step"] = step + 1
                step_rng = None
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(running[-20:]):.3f}")
                if self.state["step"] % self.eval_every == 0 or self.state["step"] == self.total_steps:
                    self._evaluate(running, bar)
                    running.clear()
                    self.state["seconds"] = time.perf_counter() - started
                    self._save()
                elif self.state["step"] % self.config.checkpoint_every == 0:
                    self.state["seconds"] = time.perf_counter() - started
                    self._save()
        except KeyboardInterrupt:
            self.state["seconds"] = time.perf_counter() - started
            # An unfinished step is redone on resume: record the random state it began with, so its
            # dropout masks (full mode) are drawn again the same.
            self._save(torch_rng=step_rng)
            bar.close()
            print(f"interrupted at step {self.state['step']}: the checkpoint is in "
                  f"{self.checkpoint.path}; run the same command with --resume to continue",
                  file=sys.stderr)
            raise
        bar.close()
        self.state["seconds"] = time.perf_counter() - started
        return self._finish()

    def _evaluate(self, running: list[float], bar) -> None:
        dev_loss, dev_top1 = self.dev_metrics()
        history = self.state["history"]
        history.append({"step": self.state["step"],
                        "epoch": round(self.state["step"] / self.steps_per_epoch, 3),
                        "train_loss": float(np.mean(running)) if running else None, "dev_loss": dev_loss,
                        "dev_top1": dev_top1, "logit_scale": self.model.logit_scale.detach().exp().item()})
        best = self.state["best_dev_loss"]
        if best is None or dev_loss < best:
            self.state.update(best_dev_loss=dev_loss, best_step=self.state["step"], bad_evals=0)
            self.best = self._trainable_state()
        else:
            self.state["bad_evals"] += 1
            if self.state["bad_evals"] >= self.config.patience:
                self.state["stopped_early"] = True
        bar.write(f"step {self.state['step']}: dev loss {dev_loss:.4f}, dev top-1 {100 * dev_top1:.1f}%"
                  + (" (best)" if self.state["best_step"] == self.state["step"] else ""))

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        params = dict(self.model.named_parameters())
        return {name: params[name].detach().clone().contiguous() for name in self.trainable}

    def _finish(self) -> TrainResult:
        if self.best is not None:
            with torch.no_grad():
                params = dict(self.model.named_parameters())
                for name, value in self.best.items():
                    params[name].copy_(value)
        self.model.eval()
        from zeroshot.models.clip import _quiet_transformers

        self.out.mkdir(parents=True, exist_ok=True)
        with _quiet_transformers():
            self.model.save_pretrained(self.out)
        self.tokenizer.save_pretrained(self.out)
        self.processor.save_pretrained(self.out)
        record = self._record()
        write_atomic(self.out / "training.json", json.dumps(record, indent=1))
        self._plot(record)
        self.checkpoint.remove()
        from zeroshot.models.clip import ImageTextModel

        in_memory = ImageTextModel(self.model, self.tokenizer, self.processor, str(self.out), "cpu",
                                   torch.float32)
        return TrainResult(self.out, self.state["step"], round(self.state["step"] / self.steps_per_epoch, 3),
                           float(self.state["best_dev_loss"] or float("nan")), self.state["stopped_early"],
                           self.state["seconds"], record, in_memory)

    def _record(self) -> dict:
        config = asdict(self.config)
        config["templates"] = list(self.config.templates)
        folder, pooling = resolve_text_model(self.config.text_model)
        frozen = ("text tower and text projection (identity)" if self.config.mode == "lit" else "nothing")
        return {"mode": self.config.mode, "config": config, "data": self.pairs.source,
                "images_read": int(len(self.pixels)), "train_images": int(len(self.train)),
                "dev_images": int(len(self.dev)), "steps_per_epoch": self.steps_per_epoch,
                "text_model": str(folder), "text_pooling": pooling, "frozen": frozen,
                "parameters": tower_sizes(self.model, self.trainable), "steps": self.state["step"],
                "best_step": self.state["best_step"], "best_dev_loss": self.state["best_dev_loss"],
                "stopped_early": self.state["stopped_early"], "seconds": round(self.state["seconds"], 1),
                "torch_threads": torch.get_num_threads(), "fingerprint": self.fingerprint,
                "history": self.state["history"]}

    def _plot(self, record: dict) -> None:
        history = record["history"]
        steps = [h["step"] for h in history]
        plot_losses(self.out / "loss_curve.png",
                    {"train loss (mean since last eval)": (steps, [h["train_loss"] for h in history]),
                     "dev loss": (steps, [h["dev_loss"] for h in history])},
                    "step", "contrastive loss",
                    title=f"train-clip ({record['mode']}): {record['train_images']} train / "
                          f"{record['dev_images']} dev images, {record['seconds']:.0f} s",
                    kept_at=record.get("best_step"),
                    second=("dev top-1 (%)", steps, [100 * h["dev_top1"] for h in history]))

    # -- the run's files are the runtime's: the trainable weights, the best ones, optimiser and RNG
    def _save(self, torch_rng: torch.Tensor | None = None) -> None:
        tensors = {"weights": self._trainable_state()}
        if self.best is not None:
            tensors["best"] = self.best
        self.checkpoint.save(self.state, tensors, optimizer=self.optimizer, torch_rng=torch_rng)

    def _restore(self, state: dict) -> None:
        saved = self.checkpoint.restore(optimizer=self.optimizer)
        params = dict(self.model.named_parameters())
        live = {name: params[name] for name in self.trainable}
        self.checkpoint.load_into(live, saved.get("weights", {}))
        self.best = saved.get("best")
        if self.best is not None:  # copied into the model at the end: checked now, like the weights
            self.checkpoint.check_group(live, self.best, "best")
        self.state = state


def train_clip(data: str | os.PathLike | Pairs, out: str | os.PathLike, config: TrainConfig | None = None,
               resume: bool = False, overwrite: bool = False, progress: bool = True) -> TrainResult:
    """Train (full) or adapt (LiT) a dual encoder on `data`; write a `load_clip`-ready folder to `out`.

    `data`: a captions .jsonl/.csv file, a folder of class folders, or `Pairs`. With `resume`, continues
    the checkpoint in `out` (it must come from the same data and settings). Raises `UserError` on bad input.
    """
    config = config or TrainConfig()
    config.check()
    pairs = data if isinstance(data, Pairs) else read_pairs(data)
    check_widths(config)
    checkpoint = Checkpoint(out, run_identity(pairs, config), product="model", state_types=STATE_TYPES)
    # the resume rule, before minutes of decoding and model building
    saved = checkpoint.check_start(resume, finished=FINISHED_FILE, overwrite=overwrite)
    return _Trainer(pairs, config, progress, checkpoint).run(saved)
