"""Behind CLIP's neurons: dataset examples, feature visualisations, words and the multimodal test.

After Goh et al. (2021, "Multimodal neurons in artificial neural networks") and the tools behind it
(OpenAI Microscope, Lucid and its PyTorch port lucent). For units of a CLIP image tower this module
finds:

- **dataset examples**: the k images of a folder that activate the unit most and least. One forward pass
  over the folder, with hooks on every requested layer, gives the whole activation matrix (images x
  units), so many units cost one pass;
- **a feature visualisation**: an image optimised to activate the unit, parametrised as Lucid does
  (a Fourier spectrum scaled by 1/f, colours decorrelated, a sigmoid to [0, 1]) and made robust to
  small jitter, padding, scaling and rotation, all torch operations, seeded;
- **words**: from a vocabulary (the class names, plus an optional word list), the ones whose text
  embedding is closest in cosine to the unit's direction in the joint image-text space;
- **the multimodal test**: does the unit fire both on images of a concept and on the concept's name
  rendered as text?

Layers are named the same way for every image tower `load_clip` gives (CLIP, SigLIP, the dual encoder
`train-clip` writes): `layerN` is the residual stream after transformer block N (0-based; negative
counts from the end), `layerN.mlp` the MLP's hidden units of block N after the activation function
(the tower's "neurons", one per MLP channel), `pooled` the pooled image feature the projection takes
(CLIP and the dual encoder only).

One activation per image and unit: the **mean over all tokens** (class token and patches) by default,
`tokens="cls"` for the class token alone. The mean is the ViT analogue of the spatial mean that Lucid's
and Microscope's channel objective takes over a convolutional feature map: it asks whether the unit is
active anywhere in the image, not only where the class token looks. The same reduction is used for the
dataset examples and as the visualisation's objective, so both describe one quantity.
"""

from __future__ import annotations

import hashlib
import io
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from zeroshot.audit.featurevis import (
    Visualisation,
    visualise_units,
)
from zeroshot.audit.neuron_layers import (
    LAYER_FORMS,
    TOKEN_REDUCTIONS,
    Activations,
    LayerName,
    Tower,
    collect_activations,
)
from zeroshot.audit.report import AuditInterrupted, Report, esc, fmt, table
from zeroshot.audit.typographic import font_path
from zeroshot.errors import UserError
from zeroshot.models.clip import ImageTextModel
from zeroshot.validation import check_labels
from zeroshot.vision.images import ImageError, expand_paths, load_image

# A unit "shares one concept" when the majority label of its top-k images covers at least this share of
# them: 7 of 9 for the default k = 9.
CONCEPT_SHARE = 7 / 9
# A unit is multimodal for a concept when both its mean activation on the concept's images and its mean
# activation on the concept's rendered name reach this quantile of its activations over the folder.
MULTIMODAL_QUANTILE = 0.9
CHANCE_SHUFFLES = 200


# ---------------------------------------------------------------------------------------------------
# The config


@dataclass(frozen=True)
class NeuronsConfig:
    """What the neuron explorer looks at; every rule in `check`, run when it is built (before any model
    loads). `folder` holds the images (class subfolders, if any, give each image its label: the label
    of `a/shirt/1.png` is "shirt", "_" read as a space as `train-clip` does). `layers` are layer names
    (default: the last block's MLP); `units` the units to show in each layer, or else the `top_units`
    of highest variance over the folder; `k` images per unit, most and least active. `words` the
    vocabulary of the text side besides the class names; `templates` turn a word into a text."""

    folder: str
    layers: tuple[str, ...] = ("layer-1.mlp",)
    units: tuple[int, ...] | None = None
    top_units: int = 16
    k: int = 9
    tokens: str = "mean"
    words: tuple[str, ...] = ()
    templates: tuple[str, ...] | str | None = "photo"
    words_per_unit: int = 5
    visualize: bool = True
    steps: int = 256
    lr: float = 0.05
    seed: int = 0
    limit: int | None = None
    batch_size: int = 32
    workers: int = 2
    render_names: bool = True
    colour: str = "auto"  # of the visualisations: rgb, grey, or auto (grey when the folder's images are)
    direction: str = "auto"  # how a unit's joint-space direction is found, see `word_directions`

    def __post_init__(self) -> None:
        from zeroshot.vision.templates import get_templates

        object.__setattr__(self, "folder", str(self.folder))
        object.__setattr__(self, "layers", tuple(str(layer).strip() for layer in self.layers))
        if self.units is not None:
            object.__setattr__(self, "units", tuple(int(unit) for unit in self.units))
        object.__setattr__(self, "words", tuple(self.words))
        object.__setattr__(self, "templates", tuple(get_templates(self.templates)))
        self.check()

    def check(self) -> None:
        """Every rule that needs no model. (That each layer and unit exists is checked against the loaded
        model by `run_neurons`, before any image is embedded.)"""
        folder = Path(self.folder).expanduser()
        if not folder.is_dir():
            raise UserError(f"{self.folder}: no such folder of images")
        if not self.layers:
            raise UserError(f"give at least one layer: {LAYER_FORMS}")
        for layer in self.layers:
            LayerName.parse(layer)
        if len(set(self.layers)) != len(self.layers):
            raise UserError("a layer is named twice")
        if self.k < 1:
            raise UserError(f"-k/--top-k (images per unit) must be at least 1, got {self.k}")
        if self.units is not None:
            if not self.units:
                raise UserError("--units is empty: give unit numbers, or leave it out for the --top-units")
            if min(self.units) < 0:
                raise UserError(f"unit numbers start at 0, got {min(self.units)}")
            if len(set(self.units)) != len(self.units):
                raise UserError("a unit is named twice in --units")
        elif self.top_units < 1:
            raise UserError(f"--top-units must be at least 1, got {self.top_units}")
        if self.direction not in DIRECTIONS:
            raise UserError(f"--direction must be one of {', '.join(DIRECTIONS)}, got {self.direction!r}")
        if self.direction == "projection" and any(LayerName.parse(x).kind != "pooled" for x in self.layers):
            raise UserError("--direction projection is exact for the layer 'pooled' only: use auto, "
                            "covariance or top with other layers")
        if self.colour not in ("auto", "rgb", "grey"):
            raise UserError(f"colour must be auto, rgb or grey, got {self.colour!r}")
        if self.tokens not in TOKEN_REDUCTIONS:
            raise UserError(f"--tokens must be one of {', '.join(TOKEN_REDUCTIONS)}, got {self.tokens!r}")
        if self.words:
            check_labels(self.words, minimum=1, what="words")
        if self.words_per_unit < 1:
            raise UserError(f"words per unit must be at least 1, got {self.words_per_unit}")
        if self.visualize and self.steps < 1:
            raise UserError(f"--vis-steps must be at least 1, got {self.steps}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserError(f"--lr must be a positive number, got {self.lr}")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit must be at least 1, got {self.limit}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {self.batch_size}")
        images = self.images
        if not images:
            raise UserError(f"{self.folder}: no image files in this folder (or its subfolders)")
        if self.k > len(images):
            raise UserError(f"-k/--top-k {self.k} is more than the {len(images)} images in {self.folder}")

    @property
    def images(self) -> list[Path]:
        """The image files of the folder, sorted (the first `limit` of them)."""
        found = expand_paths([self.folder])
        return found[:self.limit] if self.limit else found

    def label_of(self, path: Path) -> str | None:
        """The class of an image: the name of its top-level subfolder ("_" read as a space), if any."""
        relative = Path(path).relative_to(Path(self.folder).expanduser())
        return relative.parts[0].replace("_", " ") if len(relative.parts) > 1 else None


def check_model_folder(model: str | Path | None, config: NeuronsConfig) -> None:
    """Check `config`'s layers and units against a local model folder's config.json, before the weights
    load (a hub id, or a folder whose config does not say, is checked by `run_neurons` after loading)."""
    import json

    if model is None or not (Path(model).expanduser() / "config.json").is_file():
        return
    try:
        data = json.loads((Path(model).expanduser() / "config.json").read_text(encoding="utf-8"))
        vision = data.get("vision_config") or {}
        depth, hidden = int(vision["num_hidden_layers"]), int(vision["hidden_size"])
        wide = int(vision["intermediate_size"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return  # the loader says what is wrong with the folder
    names = (f"layer0..layer{depth - 1} (residual stream, {hidden} units), layer0.mlp..layer{depth - 1}.mlp "
             f"(MLP units, {wide})")
    for name in config.layers:
        parsed = LayerName.parse(name)
        if parsed.kind == "pooled":
            continue
        block = parsed.block if parsed.block >= 0 else depth + parsed.block
        if not 0 <= block < depth:
            raise UserError(f"layer {name!r} does not exist: the image tower has {depth} blocks; its "
                            f"layers: {names}")
        width = wide if parsed.kind == "mlp" else hidden
        if config.units is not None and max(config.units) >= width:
            raise UserError(f"unit {max(config.units)} does not exist in {name}: its units are "
                            f"0..{width - 1}")


def read_words(path: str | Path) -> list[str]:
    """Words from a file, one per line (`#` comments; or a JSON list)."""
    from zeroshot.vision.results import read_string_list

    return check_labels(read_string_list(Path(path).expanduser(), "words"), minimum=1, what="words")


# ---------------------------------------------------------------------------------------------------
# Text side and the multimodal test


DIRECTIONS = ("auto", "projection", "covariance", "top")
_DIRECTION_WORDS = {
    "auto": "the image projection's column for pooled, the covariance of the unit's activations with the "
            "joint image embeddings for other layers",
    "projection": "the image projection's column",
    "covariance": "the covariance of the unit's activations with the joint image embeddings",
    "top": "the mean joint embedding of the unit's top k images minus the mean of all"}


def word_directions(acts: Activations, layer: str, units: Sequence[int], tower: Tower,
                    method: str = "auto", k: int = 9) -> tuple[np.ndarray, str]:
    """Each unit's direction in the joint image-text space, (units, d), and how it was found.

    - `projection` (`auto` for `pooled`): exact for the pooled feature: the image embedding is the
      projection W of the pooled feature, so unit u adds `pooled_u * W[:, u]` to it; its direction is
      column u of W, the unit's *contribution* to the joint embedding.
    - `covariance` (`auto` for every other layer): the sum over the folder's images of the unit's
      centred activation times the image's centred joint embedding, i.e. the activation-weighted mean
      embedding, or least squares of the unit on the embeddings without whitening. It uses every image.
      (Whitened least squares, i.e. ridge regression with a small penalty, was tried and named no unit
      of the Fashion-MNIST CLIP by its class: it chases low-variance embedding directions that no text
      points along.)
    - `top`: the mean joint embedding of the unit's top `k` images minus the mean of all images.
    """
    if method == "auto":
        method = "projection" if layer == "pooled" and tower.projection is not None else "covariance"
    if method == "projection":
        if layer != "pooled" or tower.projection is None:
            raise UserError(f"direction 'projection' is exact for the layer 'pooled' only, not {layer}: use "
                            "covariance or top")
        weight = tower.projection.weight.detach().float().cpu().numpy()  # (d, hidden)
        return weight[:, list(units)].T.copy(), "projection: column u of the image projection (exact)"
    embeddings = acts.embeddings.astype(np.float64)
    centred = embeddings - embeddings.mean(axis=0)
    values = acts.values[layer][:, list(units)].astype(np.float64)
    if method == "top":
        mean = embeddings.mean(axis=0)
        rows = [embeddings[np.argsort(-values[:, i], kind="stable")[:k]].mean(axis=0) - mean
                for i in range(values.shape[1])]
        return (np.asarray(rows, dtype=np.float32).reshape(len(units), -1),
                f"top: mean joint embedding of the top {k} images minus the mean of all")
    if method == "covariance":
        weights = centred.T @ (values - values.mean(axis=0)) / max(1, len(values))
        return (weights.T.astype(np.float32),
                "covariance: activation-weighted mean of the centred joint image embeddings")
    raise UserError(f"unknown direction {method!r}: choose one of {', '.join(DIRECTIONS)}")


def embed_words(model: ImageTextModel, words: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """(len(words), d) unit text embeddings, each the renormalised mean over the templates."""
    rows = []
    for word in words:
        texts = [t.replace("{label}", word).replace("{}", word) for t in templates]
        mean = model.encode_texts(texts).mean(axis=0)
        rows.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
    return np.asarray(rows, dtype=np.float32)


def render_name(text: str, side: int, dark_on_light: bool, fill: float = 0.9) -> Image.Image:
    """`text` centred on a plain square of `side` pixels, as large as fits `fill` of the side (at most
    40 % of it tall), in DejaVu Sans Bold (Pillow's default font when it is missing)."""
    path = font_path()
    background, ink = ((255, 255, 255), (0, 0, 0)) if dark_on_light else ((0, 0, 0), (255, 255, 255))
    image = Image.new("RGB", (side, side), background)
    draw = ImageDraw.Draw(image)
    size = max(4, int(0.4 * side))
    while True:
        font = ImageFont.truetype(path, size) if path else ImageFont.load_default(size=size)
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
        if (x1 - x0 <= fill * side and y1 - y0 <= fill * side) or size <= 4:
            break
        size -= 1
    draw.text(((side - (x1 - x0)) / 2 - x0, (side - (y1 - y0)) / 2 - y0), text, font=font, fill=ink)
    return image


def name_renderings(concept: str, side: int) -> list[Image.Image]:
    """Four renderings of a name: dark on light and light on dark, at full and at 60 % size."""
    return [render_name(concept, side, dark, fill) for dark in (True, False) for fill in (0.9, 0.55)]


# ---------------------------------------------------------------------------------------------------
# The result


@dataclass
class NeuronsResult:
    """Every unit's examples, words, visualisation and tests; `to_dict()` is the JSON report."""

    model: str
    folder: str
    tokens: str
    layers: list[str]
    units: dict[str, list[dict]]  # layer -> one record per unit
    images: int
    labels: list[str]
    vocabulary: list[str]
    templates: list[str]
    k: int
    seed: int
    font: str
    skipped: list[dict]
    rules: dict
    chance_share_one_concept: float | None
    visualisations: dict[str, Visualisation] = field(default_factory=dict)
    activations: Activations | None = None  # the whole matrix of every layer (not in the JSON)
    timing: dict = field(default_factory=dict)
    complete: bool = True

    def summary(self) -> dict:
        records = [unit for layer in self.layers for unit in self.units[layer]]
        judged = [r for r in records if r["concept"] is not None]
        tested = [r for r in records if r["multimodal"] is not None]
        return {
            "units": len(records),
            "share_one_concept": (sum(r["concept"]["one_concept"] for r in judged) / len(judged)
                                  if judged else None),
            "chance_share_one_concept": self.chance_share_one_concept,
            "units_judged_by_labels": len(judged),
            "multimodal_units": sum(bool(r["multimodal"]["concepts"]) for r in tested) if tested else None,
            "units_tested_multimodal": len(tested),
        }

    def to_dict(self) -> dict:
        return {"audit": "neurons", "model": self.model, "folder": self.folder, "complete": self.complete,
                "seed": self.seed, "tokens": self.tokens, "layers": self.layers, "k": self.k,
                "images": self.images, "labels": self.labels, "vocabulary": self.vocabulary,
                "templates": self.templates, "font": self.font, "rules": self.rules,
                "note": "Dataset examples show correlation, not cause; a feature visualisation depends on "
                        "its parametrisation and regularisers; the multimodal test can only find what the "
                        "image tower was trained to see. A random-weight model tests the mechanics only.",
                "summary": self.summary(), "units": self.units, "skipped": self.skipped}


def concept_of(labels: Sequence[str | None], top: np.ndarray, k: int) -> dict | None:
    """The majority label of the images `top` (indices into `labels`), its count, and whether it covers
    at least `CONCEPT_SHARE` of `k`; None when an image has no label."""
    names = [labels[i] for i in top]
    if any(name is None for name in names):
        return None
    values, counts = np.unique(names, return_counts=True)
    best = int(np.argmax(counts))  # np.unique sorts: ties go to the first name alphabetically
    return {"majority": str(values[best]), "count": int(counts[best]), "of": len(names),
            "one_concept": bool(counts[best] >= math.ceil(CONCEPT_SHARE * k - 1e-9))}


def _chance_share(labels: Sequence[str | None], tops: list[np.ndarray], k: int, seed: int) -> float | None:
    """The share of units "of one concept" when the folder's labels are shuffled (same top-k images)."""
    if not tops or any(label is None for label in labels):
        return None
    rng = np.random.default_rng(seed)
    codes = np.unique(np.asarray(labels), return_inverse=True)[1]
    hits = 0
    for _ in range(CHANCE_SHUFFLES):
        shuffled = rng.permutation(codes)
        for top in tops:
            hits += np.bincount(shuffled[top]).max() >= math.ceil(CONCEPT_SHARE * k - 1e-9)
    return float(hits / (CHANCE_SHUFFLES * len(tops)))


def run_neurons(model: ImageTextModel, config: NeuronsConfig, progress: bool = False) -> NeuronsResult:
    """Dataset examples, words, the multimodal test and (if `config.visualize`) feature visualisations for
    the units of `config.layers`. Layers and units are checked against the model first; the folder is
    embedded once, with hooks on every layer."""
    if config.visualize and model.dtype_name == "int8":
        raise UserError("feature visualisation needs gradients, which an int8 model has not: load the model "
                        "in fp32 (or bf16), or turn the visualisations off (--no-visualize)")
    tower = Tower(model)
    layers = [tower.resolve(name) for name in config.layers]
    if len(set(layers)) != len(layers):
        raise UserError(f"two layer names are the same layer: {', '.join(config.layers)}")
    if config.tokens == "cls" and not tower.has_cls:
        raise UserError("--tokens cls: this image tower (SigLIP) has no class token; use --tokens mean")
    for layer in layers:
        if config.units is not None and max(config.units) >= tower.width(layer):
            raise UserError(f"unit {max(config.units)} does not exist in {layer}: its units are "
                            f"0..{tower.width(layer) - 1}")
        if config.units is None and config.top_units > tower.width(layer):
            raise UserError(f"--top-units {config.top_units} is more than the {tower.width(layer)} units of "
                            f"{layer}")
    paths = config.images
    timing: dict = {}
    started = time.perf_counter()
    acts = collect_activations(model, tower, paths, layers, config.tokens, config.batch_size, config.workers,
                               progress)
    timing["examples_pass_seconds"] = time.perf_counter() - started
    timing["images_embedded"] = len(acts.paths)
    timing["forward_calls"] = acts.forward_calls
    if not acts.paths:
        first = acts.skipped[0]["error"] if acts.skipped else "none found"
        raise UserError(f"no image in {config.folder} could be read ({first})")
    if config.k > len(acts.paths):
        raise UserError(f"-k/--top-k {config.k} is more than the {len(acts.paths)} images that could be read")
    acts.labels = [config.label_of(Path(p)) for p in acts.paths]
    skipped = [{"path": str(paths[s["index"]]), "error": s["error"]} for s in acts.skipped]
    labelled = all(label is not None for label in acts.labels)
    classes = sorted({label for label in acts.labels if label is not None}) if labelled else []
    vocabulary = list(dict.fromkeys([*classes, *config.words]))

    started = time.perf_counter()
    words_matrix = embed_words(model, vocabulary, config.templates) if vocabulary else None
    renders = None
    if config.render_names and classes:
        side = max(model.image_spec.output_size[0], 96)
        images = [image for concept in classes for image in name_renderings(concept, side)]
        renders = collect_activations(model, tower, images, layers, config.tokens, config.batch_size, 1)
    timing["text_seconds"] = time.perf_counter() - started

    units: dict[str, list[dict]] = {}
    tops: list[np.ndarray] = []
    font = font_path() or "Pillow default"
    started = time.perf_counter()
    for layer in layers:
        matrix = acts.values[layer]
        variance = matrix.var(axis=0)
        chosen = list(config.units) if config.units is not None else \
            [int(u) for u in np.argsort(-variance, kind="stable")[:config.top_units]]
        directions, method = word_directions(acts, layer, chosen, tower, config.direction, config.k)
        records = []
        for row, unit in enumerate(chosen):
            column = matrix[:, unit]
            order = np.argsort(-column, kind="stable")
            top, bottom = order[:config.k], order[::-1][:config.k]
            tops.append(top)
            record = {
                "layer": layer, "unit": unit, "mean": float(column.mean()), "std": float(column.std()),
                "variance": float(variance[unit]),
                "top": [{"path": acts.paths[i], "label": acts.labels[i], "activation": float(column[i])}
                        for i in top],
                "bottom": [{"path": acts.paths[i], "label": acts.labels[i], "activation": float(column[i])}
                           for i in bottom],
                "concept": concept_of(acts.labels, top, config.k) if labelled else None,
                "words": None, "direction": method, "multimodal": None}
            if words_matrix is not None:
                direction = directions[row] / max(float(np.linalg.norm(directions[row])), 1e-12)
                cosines = words_matrix @ direction
                best = np.argsort(-cosines, kind="stable")[:config.words_per_unit]
                record["words"] = [{"word": vocabulary[i], "cosine": float(cosines[i])} for i in best]
            if renders is not None:
                record["multimodal"] = _multimodal(column, acts.labels, classes,
                                                   renders.values[layer][:, unit])
            records.append(record)
        units[layer] = records
    timing["analysis_seconds"] = time.perf_counter() - started

    result = NeuronsResult(
        model.name, config.folder, config.tokens, layers, units, len(acts.paths), classes, vocabulary,
        list(config.templates), config.k, config.seed, font, skipped,
        rules={"activation": f"{config.tokens} over the layer's tokens (pooled: the pooled feature itself)",
               "one_concept": f"the majority label of a unit's top {config.k} images covers at least "
                              f"{math.ceil(CONCEPT_SHARE * config.k - 1e-9)} of them",
               "chance": f"the same share with the folder's labels shuffled, mean of {CHANCE_SHUFFLES} "
                         f"shuffles (seed {config.seed})",
               "multimodal": f"a unit is multimodal for a concept when its mean activation on the concept's "
                             f"images and its mean activation on 4 renderings of the concept's name both "
                             f"reach the {MULTIMODAL_QUANTILE:.0%} quantile of its activations over the "
                             "folder",
               "words": "cosine between each word's text embedding (mean over the templates) and the unit's "
                        f"direction in the joint space ({config.direction}: "
                        f"{_DIRECTION_WORDS[config.direction]})"},
        chance_share_one_concept=(_chance_share(acts.labels, tops, config.k, config.seed) if labelled
                                  else None),
        timing=timing, activations=acts)
    try:
        if config.visualize:
            grey = config.colour == "grey" or (config.colour == "auto" and _all_grey(acts.paths[:32]))
            result.rules["visualisation"] = (
                f"{config.steps} steps of AdamW (lr {config.lr:g}) on a Fourier-parametrised "
                f"{'grey' if grey else 'colour-decorrelated RGB'} image (1/f scaled), through pad, jitter, "
                "scale and rotation, seeded")
            for layer in layers:
                chosen = [r["unit"] for r in units[layer]]
                vis = visualise_units(model, tower, layer, chosen, config.tokens, config.steps, config.lr,
                                      config.seed, progress=progress, grey=grey)
                result.visualisations[layer] = vis
                for row, record in enumerate(units[layer]):
                    digest = hashlib.sha256(vis.pixels[row].tobytes()).hexdigest()[:16]
                    record["visualisation"] = {"start": vis.start[row], "end": vis.end[row],
                                               "pixels_sha256": digest}
            seconds = sum(v.seconds for v in result.visualisations.values())
            timing["visualisation_seconds"] = seconds
            timing["visualisation_steps"] = config.steps
    except KeyboardInterrupt:
        result.complete = False
        raise AuditInterrupted(result) from None
    count = sum(len(units[layer]) for layer in layers)
    timing["units"] = count
    timing["examples_seconds_per_unit"] = (timing["examples_pass_seconds"]
                                           + timing["analysis_seconds"]) / count
    if config.visualize:
        timing["visualisation_seconds_per_unit"] = timing["visualisation_seconds"] / count
    return result


def _all_grey(paths: Sequence[str]) -> bool:
    """Whether these image files are all single-channel (read from their headers)."""
    if not paths:
        return False
    try:
        for path in paths:
            with Image.open(path) as image:
                if image.mode not in ("1", "L", "LA", "I", "I;16", "F"):
                    return False
    except (OSError, ValueError):
        return False
    return True


def _multimodal(column: np.ndarray, labels: Sequence[str | None], classes: Sequence[str],
                rendered: np.ndarray) -> dict:
    """The multimodal test of one unit (see `MULTIMODAL_QUANTILE`); `rendered` holds its activations on
    the renderings of every class name, 4 per class in `classes` order."""
    threshold = float(np.quantile(column, MULTIMODAL_QUANTILE))
    per_class = rendered.reshape(len(classes), -1).mean(axis=1)
    names = np.asarray(labels)
    out = {"threshold": threshold, "image_means": {}, "text_means": {}, "concepts": []}
    for concept, text_mean in zip(classes, per_class, strict=True):
        image_mean = float(column[names == concept].mean())
        out["image_means"][concept] = image_mean
        out["text_means"][concept] = float(text_mean)
        if image_mean >= threshold and text_mean >= threshold:
            out["concepts"].append(concept)
    return out


# ---------------------------------------------------------------------------------------------------
# The page and the montages

THUMB = 56


def _thumbnails(records: list[dict], side: int = THUMB) -> dict[str, Image.Image]:
    out: dict[str, Image.Image] = {}
    for record in records:
        for item in (*record["top"], *record["bottom"]):
            path = item["path"]
            if path not in out:
                try:
                    image = load_image(path)
                except ImageError:
                    image = Image.new("RGB", (side, side), (128, 128, 128))
                out[path] = ImageOps.fit(image.convert("RGB"), (side, side), Image.Resampling.BICUBIC)
    return out


def _label_font(pixels: int = 11):
    path = font_path()
    return ImageFont.truetype(path, pixels) if path else ImageFont.load_default(size=pixels)


def montage(result: NeuronsResult, layer: str, side: int = THUMB) -> bytes:
    """One row per unit: its name and best words, the feature visualisation (if any), the top k images,
    then the bottom k, each with its activation; images as `side`-pixel thumbnails. PNG bytes (Pillow,
    no timestamp)."""
    records = result.units[layer]
    thumbnails = _thumbnails(records, side)
    vis = result.visualisations.get(layer)
    label_width, gap, caption = 150, 12, 14
    columns = (1 if vis is not None else 0) + 2 * result.k
    width = label_width + columns * (side + 2) + gap
    height = 20 + len(records) * (side + caption + 4)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font, small = _label_font(), _label_font(9)
    x_vis = label_width
    x_top = label_width + (side + 2 if vis is not None else 0)
    x_bottom = x_top + result.k * (side + 2) + gap
    if vis is not None:
        draw.text((x_vis, 6), "vis.", font=small, fill=(0, 0, 0))
    draw.text((x_top, 4), f"top {result.k}", font=font, fill=(0, 0, 0))
    draw.text((x_bottom, 4), f"bottom {result.k}", font=font, fill=(0, 0, 0))
    for row, record in enumerate(records):
        y = 20 + row * (side + caption + 4)
        words = ", ".join(w["word"] for w in (record["words"] or [])[:3])
        concept = record["concept"]
        lines = [f"{layer} #{record['unit']}", words[:24]]
        if concept is not None:
            lines.append(f"{concept['majority'][:14]} {concept['count']}/{concept['of']}")
        draw.multiline_text((4, y), "\n".join(lines), font=font, fill=(0, 0, 0), spacing=2)
        if vis is not None:
            tile = Image.fromarray(vis.pixels[vis.units.index(record["unit"])]).resize((side, side),
                                                                                      Image.Resampling.BICUBIC)
            sheet.paste(tile, (x_vis, y))
        for x0, items in ((x_top, record["top"]), (x_bottom, record["bottom"])):
            for i, item in enumerate(items):
                x = x0 + i * (side + 2)
                sheet.paste(thumbnails[item["path"]], (x, y))
                draw.text((x, y + side + 1), f"{item['activation']:.2f}", font=small, fill=(60, 60, 60))
    return _png(sheet)


def _png(sheet: Image.Image) -> bytes:
    """PNG bytes of `sheet`, as 8-bit grey when every pixel is grey (a third of the size, no loss)."""
    pixels = np.asarray(sheet)
    if (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all():
        sheet = Image.fromarray(pixels[..., 0])
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def visualisation_png(vis: Visualisation, side: int | None = None) -> bytes:
    """The visualisations of one layer side by side, in unit order, at their own size (or `side`)."""
    tiles = [Image.fromarray(p) for p in vis.pixels]
    if side is not None:
        tiles = [t.resize((side, side), Image.Resampling.BICUBIC) for t in tiles]
    w, h = tiles[0].size if tiles else (1, 1)
    sheet = Image.new("RGB", (max(1, len(tiles)) * (w + 2), h), (255, 255, 255))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, (i * (w + 2), 0))
    return _png(sheet)


def _slug(layer: str) -> str:
    return layer.replace(".", "-")


def neurons_report(result: NeuronsResult, thumb: int = THUMB) -> Report:
    """The HTML page and its PNGs: per layer a montage of dataset examples (with the visualisations) and a
    strip of the visualisations alone (at most twice `thumb` pixels, at least `thumb`), and a table of every
    unit. Thumbnails are `thumb` pixels square."""
    summary = result.summary()
    report = Report("neurons", "Neuron explorer: dataset examples, feature visualisations, words")
    report.paragraph(f"Model <b>{esc(result.model)}</b>; {result.images} images from {esc(result.folder)} "
                     f"({len(result.skipped)} unreadable, skipped); activation: "
                     f"{esc(result.rules['activation'])}; "
                     f"seed {result.seed}.", "meta")
    report.paragraph("Dataset examples show what the unit correlates with in this folder, not what causes it "
                     "to fire. A feature visualisation depends on its parametrisation (Fourier, 1/f, "
                     "decorrelated colours) and on its transforms. The multimodal test can only find what "
                     "the image tower was trained on: a tower that never saw rendered text has no reason to "
                     "respond to names.", "note")
    if not result.complete:
        report.paragraph("Interrupted: the visualisations are missing or partial.", "warn")
    rows = [["units", summary["units"]],
            ["share of units whose top images share one concept", fmt(summary["share_one_concept"])],
            ["the same with labels shuffled (chance)", fmt(summary["chance_share_one_concept"])],
            ["multimodal units", fmt(summary["multimodal_units"])]]
    report.html(table(["", ""], rows))
    report.html("<details><summary>rules</summary>" + table(
        ["what", "rule"], [[key, value] for key, value in result.rules.items()]) + "</details>")
    for layer in result.layers:
        report.heading(f"Layer {layer}")
        report.chart(f"{_slug(layer)}-examples", montage(result, layer, thumb),
                     f"{layer}: visualisation, top and bottom images per unit")
        vis = result.visualisations.get(layer)
        if vis is not None:
            own = vis.pixels.shape[1]  # keep the strip small: tiny inputs enlarged, large ones halved
            side = thumb if own < thumb else 2 * thumb if own > 2 * thumb else None
            report.chart(f"{_slug(layer)}-visualisations", visualisation_png(vis, side),
                         f"{layer}: feature visualisations in unit order")
        body = []
        for record in result.units[layer]:
            words = ", ".join(f"{w['word']} ({w['cosine']:.2f})" for w in record["words"] or [])
            concept = record["concept"]
            mm = record["multimodal"]
            v = record.get("visualisation")
            body.append([record["unit"], record["variance"],
                         f"{concept['majority']} {concept['count']}/{concept['of']}" if concept else "–",
                         "yes" if concept and concept["one_concept"] else "no" if concept else "–",
                         words or "–", ", ".join(mm["concepts"]) or "none" if mm else "–",
                         f"{v['start']:.3f} → {v['end']:.3f}" if v else "–"])
        report.html(table(["unit", "variance", "top-k majority", "one concept", "best words (cosine)",
                           "multimodal for", "visualisation activation start → end"], body))
    if result.skipped:
        report.html("<h3>Skipped</h3>" + table(["file", "reason"],
                                               [[s["path"], s["error"]] for s in result.skipped]))
    return report

