"""The captioner's edges: its frozen encoders, its training files, and one-call training and captioning.

Encoders (`kind`): `clip-image` (images -> a CLIP image embedding), `clip-text` (texts -> a CLIP text
embedding), `sentence` (texts -> a sentence-transformers vector; all-MiniLM-L6-v2 by default).
Training files: a captions .jsonl/.csv naming images (`{"image": ..., "caption": ...}`, paths relative
to the file) for `clip-image`, or a .jsonl of `{"text": ..., "caption": ...}` for the text encoders.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from zeroshot.caption.captioner import (
    CONFIG_FILE,
    CaptionerConfig,
    PrefixCaptioner,
    load_caption_lm,
    load_captioner,
    read_captioner_record,
)
from zeroshot.errors import UserError
from zeroshot.models.lm import GenerationConfig
from zeroshot.train.checkpoint import Checkpoint, plot_losses, run_fingerprint
from zeroshot.validation import read_jsonl

ENCODER_KINDS = ("clip-image", "clip-text", "sentence")


class CaptionEncoder:
    """A frozen encoder for a captioner: `encode(inputs)` -> (n, d) float32, and `describe()` for the file."""

    def __init__(self, kind: str, name: str, model) -> None:
        self.kind, self.name, self.model = kind, name, model

    @property
    def embedding_dim(self) -> int:
        return int(self.model.embedding_dim)

    def describe(self) -> dict:
        fingerprint = self.model.fingerprint
        fingerprint = fingerprint() if callable(fingerprint) else fingerprint
        return {
            "kind": self.kind,
            "name": self.name,
            "embedding_dim": self.embedding_dim,
            "fingerprint": str(fingerprint),
        }

    def encode(self, inputs: Sequence, batch_size: int = 32) -> np.ndarray:
        """Embeddings of image paths (clip-image) or texts (clip-text, sentence)."""
        if self.kind == "sentence":
            return self.model.encode(list(inputs), batch_size=batch_size)
        if self.kind == "clip-text":
            rows = [
                self.model.encode_texts(list(inputs[b : b + batch_size]))
                for b in range(0, len(inputs), batch_size)
            ]
            return np.concatenate(rows) if rows else np.zeros((0, self.embedding_dim), np.float32)
        from zeroshot.vision.images import load_image
        from zeroshot.vision.transforms import preprocess

        rows = []
        for begin in range(0, len(inputs), batch_size):
            images = []
            for source in inputs[begin : begin + batch_size]:
                try:
                    images.append(load_image(source))
                except UserError:
                    raise
                except Exception as exc:  # ImageError and decoder failures: name the file, one line
                    raise UserError(f"cannot read the image {source}: {str(exc).splitlines()[0]}") from None
            rows.append(self.model.encode_images(preprocess(images, self.model.image_spec)))
        return np.concatenate(rows) if rows else np.zeros((0, self.embedding_dim), np.float32)


def load_caption_encoder(kind: str, name: str | None = None, device: str | None = None,
                         match_fingerprint: str | None = None) -> CaptionEncoder:
    """`kind`: clip-image, clip-text or sentence; `name`: a model folder or hub id (default MiniLM).

    `match_fingerprint` (what a saved captioner recorded) loads the encoder in the dtype it was trained
    with, rather than the one `auto` would pick here."""
    if kind not in ENCODER_KINDS:
        raise UserError(f"unknown encoder {kind!r}: choose one of {', '.join(ENCODER_KINDS)}")
    if kind == "sentence":
        from zeroshot.models.sentence import load_sentence_encoder

        model = load_sentence_encoder(name, device=device or "cpu", match_fingerprint=match_fingerprint)
        return CaptionEncoder(kind, model.name, model)
    from zeroshot.models.clip import DEFAULT_CLIP, load_clip

    model = load_clip(name or DEFAULT_CLIP, device=device, match_fingerprint=match_fingerprint)
    return CaptionEncoder(kind, model.name, model)


def check_encoder(encoder: CaptionEncoder, record: dict) -> None:
    """Refuse an encoder that is not the one a saved captioner was trained on (one line)."""
    saved = record["encoder"]
    if saved.get("kind") not in (None, "embeddings") and encoder.kind != saved["kind"]:
        raise UserError(f"the captioner was trained on {saved['kind']} embeddings, not {encoder.kind}")
    if encoder.embedding_dim != int(saved["embedding_dim"]):
        raise UserError(
            f"{encoder.name} gives {encoder.embedding_dim}-dimensional embeddings but the captioner "
            f"was trained on {saved['embedding_dim']}-dimensional ones ({saved.get('name')})"
        )
    if saved.get("fingerprint") and not encoder.model.matches(saved["fingerprint"]):
        raise UserError(
            f"{encoder.name} is not the encoder the captioner was trained with "
            f"({saved.get('name')}): pass that model"
        )


# ------------------------------------------------------------------------------------------ training files


def read_caption_pairs(path: str | os.PathLike, kind: str) -> tuple[list, list[str]]:
    """(inputs, captions) from a training file: image paths for clip-image, texts otherwise."""
    path = Path(path).expanduser()
    if kind == "clip-image":
        if path.is_dir():
            raise UserError(f"{path} is a folder: give a captions .jsonl or .csv that names its images")
        from zeroshot.train.pairs import read_pairs

        pairs = read_pairs(path)
        return [str(p) for p in pairs.images], list(pairs.captions or [])
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    rows = []
    try:
        if path.suffix.lower() == ".csv":
            with open(path, encoding="utf-8", newline="") as handle:
                reader = csv.DictReader(handle)
                if not reader.fieldnames or not {"text", "caption"} <= set(reader.fieldnames):
                    raise UserError(f"{path.name} needs a header with `text` and `caption` columns")
                rows = [(n, r["text"] or "", r["caption"] or "") for n, r in enumerate(reader, start=2)]
        else:
            rows = [(n, row["text"], row["caption"])
                    for n, row in read_jsonl(path, {"text": str, "caption": str})]
    except UnicodeDecodeError as exc:
        raise UserError(f"{path.name} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    if not rows:
        raise UserError(f"{path.name} has no text-caption pairs")
    for number, text, caption in rows:
        if not caption.strip():
            raise UserError(f"{path.name} line {number}: empty caption")
        if not text.strip():
            raise UserError(f"{path.name} line {number}: empty text")
    return [r[1] for r in rows], [r[2].strip() for r in rows]


# ------------------------------------------------------------------------------------------ one-call tasks


@dataclass
class CaptionerTraining:
    """The options of `train_captioner` beyond the mapper's shape."""

    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0


@dataclass
class TrainCaptionerResult:
    """Where the captioner went, how long it took, its losses and how many parameters trained."""

    output_dir: Path
    epochs: int
    resumed_from_epoch: int
    seconds: float
    epoch_losses: list[float]
    parameters: dict
    loss_png: Path | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["output_dir"], data["loss_png"] = (
            str(self.output_dir),
            str(self.loss_png) if self.loss_png else None,
        )
        return data


def train_captioner(
    data: str | os.PathLike,
    output_dir: str | os.PathLike,
    encoder_kind: str = "sentence",
    encoder_name: str | None = None,
    model: str | None = None,
    config: CaptionerConfig | None = None,
    training: CaptionerTraining | None = None,
    resume: bool = False,
    progress: bool = True,
    device: str | None = None,
) -> TrainCaptionerResult:
    """Read `data`, embed it with the frozen encoder (cached in `output_dir`), train, save, plot.

    Checkpoints after every epoch into `output_dir/checkpoint`; `resume` continues from the last one
    (same data, encoder, LM and settings; `training.epochs` may grow).
    """
    training = training or CaptionerTraining()
    out = Path(output_dir).expanduser()
    inputs, captions = read_caption_pairs(data, encoder_kind)
    checkpoint = Checkpoint(out, _run_identity(inputs, captions, encoder_kind, encoder_name, model, config,
                                               training),
                            what="data, encoder, LM or settings", product="captioner")
    # the resume rule, before the encoder and the LM load
    saved = checkpoint.check_start(resume, finished=CONFIG_FILE, overwrite=False, overwrite_option=None)
    encoder = load_caption_encoder(encoder_kind, encoder_name, device=device)
    lm = load_caption_lm(model, device=device)
    config = config or CaptionerConfig(embedding_dim=encoder.embedding_dim)
    config.embedding_dim = encoder.embedding_dim
    captioner = PrefixCaptioner(config, lm, encoder=encoder.describe(), seed=training.seed)
    captioner.caption_ids(captions)  # an empty caption fails here, before any embedding work
    out.mkdir(parents=True, exist_ok=True)
    embeddings = _cached_embeddings(out, encoder, inputs, progress)
    resumed_from = 0
    if saved is not None:
        resumed_from = int(saved["epochs_done"])
        if progress:
            print(f"resuming after epoch {resumed_from} of {training.epochs}")

    def after_epoch(trained: PrefixCaptioner, epoch: int) -> None:
        trained.save(out)  # the latest finished epoch is always a usable captioner
        _plot(trained, out / "loss.png")

    captioner.fit(
        embeddings,
        captions,
        epochs=training.epochs,
        batch_size=training.batch_size,
        lr=training.lr,
        seed=training.seed,
        checkpoint=checkpoint,
        resume=saved is not None,
        progress=progress,
        on_epoch=after_epoch,
    )
    captioner.save(out)
    png = _plot(captioner, out / "loss.png")
    checkpoint.remove()
    return TrainCaptionerResult(
        out,
        training.epochs,
        resumed_from,
        captioner.history.seconds,
        captioner.history.epoch_losses,
        captioner.parameter_counts(),
        png,
    )


def _cached_embeddings(out: Path, encoder: CaptionEncoder, inputs: list, progress: bool) -> np.ndarray:
    # Kept beside the checkpoint so that a resumed run does not embed everything again.
    digest = hashlib.sha256(json.dumps([encoder.describe(), [str(i) for i in inputs]]).encode()).hexdigest()[
        :16
    ]
    path = out / f"embeddings-{digest}.npy"
    if path.is_file():
        return np.load(path)
    began = time.perf_counter()
    embeddings = encoder.encode(inputs)
    np.save(path, embeddings)
    if progress:
        print(f"embedded {len(inputs)} inputs with {encoder.name} in {time.perf_counter() - began:.1f} s")
    return embeddings


def _run_identity(inputs: list, captions: list[str], encoder_kind: str, encoder_name: str | None,
                  model: str | None, config: CaptionerConfig | None, training: CaptionerTraining) -> str:
    # Known before any model loads; the embedding width follows from the encoder, and epochs may grow.
    shape = None if config is None else {k: v for k, v in asdict(config).items() if k != "embedding_dim"}
    schedule = {k: v for k, v in asdict(training).items() if k != "epochs"}
    data = hashlib.sha256()
    for item, caption in zip(inputs, captions, strict=True):
        data.update(f"{item}\0{caption}\n".encode("utf-8", "surrogatepass"))
    return run_fingerprint(encoder_kind, encoder_name, model, shape, schedule, data.hexdigest())


def _plot(captioner: PrefixCaptioner, path: Path) -> Path:
    """Training loss per step and per epoch (mean)."""
    steps, epochs = captioner.history.step_losses, captioner.history.epoch_losses
    per_epoch = len(steps) / len(epochs) if epochs else 1
    return plot_losses(
        path,
        {"step": (range(1, len(steps) + 1), steps),
         "epoch mean": ([per_epoch * (i + 1) for i in range(len(epochs))], epochs)},
        "step",
        "caption cross-entropy",
        title="prefix captioner training loss",
    )


@dataclass
class Caption:
    """One input and its generated caption."""

    input: str
    caption: str

    def to_dict(self) -> dict:
        return {"input": self.input, "caption": self.caption}


class CaptionService:
    """A loaded captioner with its encoder, for captioning many requests (the CLI and the server)."""

    def __init__(
        self,
        folder: str | os.PathLike,
        model: str | None = None,
        encoder_name: str | None = None,
        device: str | None = None,
    ) -> None:
        record = read_captioner_record(folder)
        saved = record["encoder"]
        lm = load_caption_lm(model, device=device) if model else None
        self.captioner = load_captioner(folder, lm)
        self.kind = saved.get("kind")
        self.encoder = None
        if self.kind in ENCODER_KINDS:
            self.encoder = load_caption_encoder(self.kind, encoder_name or saved.get("name"), device=device,
                                                match_fingerprint=saved.get("fingerprint"))
            check_encoder(self.encoder, record)

    def caption(self, inputs: Sequence, config: GenerationConfig | None = None) -> list[Caption]:
        """Captions of image paths / texts (through the encoder), or of raw embeddings (an array)."""
        if isinstance(inputs, np.ndarray):
            embeddings, names = inputs, [f"row {i}" for i in range(len(inputs))]
        else:
            if self.encoder is None:
                raise UserError("this captioner was trained on raw embeddings: pass embeddings (.npy)")
            if not inputs:
                raise UserError("nothing to caption")
            embeddings, names = self.encoder.encode(list(inputs)), [str(i) for i in inputs]
        texts = self.captioner.generate(embeddings, config)
        return [Caption(n, t) for n, t in zip(names, texts, strict=True)]
