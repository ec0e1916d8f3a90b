"""Zero-shot object detection: classical region proposals, kept or rejected by CLIP.

For each image: propose boxes (`proposals.RegionProposer`), crop each one (padded to a square so
CLIP's centre crop cuts nothing off), embed the crops in batches, and score them

- against text queries: each query is a yes/no question against a set of generic background prompts
  ("a photo of a wall", ...). A box is a candidate for a query when the query beats every background
  prompt and its probability in the softmax over (query, backgrounds) reaches `threshold`. Queries are
  judged independently, so "car" and "dented car door" can both claim a box. The text side is the
  cached, template-ensembled classifier of `zeroshot.vision.classify.text_classifier`.
- against example images: cosine similarity of the crop to the examples' mean embedding ("mean") or to
  the nearest example ("nearest"), which must reach `example_threshold`. Image-image and image-text
  cosines live on different scales (CLIP's modality gap), hence the separate threshold.
- both: a label that has a query and examples needs both to pass; its score is their mean.

Candidates then go through per-label non-maximum suppression. With `context_padding`, each surviving
box is embedded again with a margin of context around it and scored on the mean of both embeddings
(CLIP judges objects better in context).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from PIL import Image

from zeroshot.detect.proposals import RegionProposer, greedy_suppression
from zeroshot.errors import UserError
from zeroshot.models.clip import ImageTextModel
from zeroshot.numerics import batch_slices, l2_normalize
from zeroshot.vision.images import ImageError, load_image

ImageSource = str | os.PathLike | bytes | Image.Image

# Generic scenes and surfaces a proposal often lands on when it holds no object of interest.
DEFAULT_BACKGROUND_PROMPTS = (
    "background", "a wall", "the floor", "the ground", "the sky", "grass", "a road", "a plain surface",
    "a texture", "a blurry region", "part of an object", "an empty scene",
)
EXAMPLE_LABEL = "example"
# The pad colour of square crops: CLIP's mean pixel, which normalises to (almost) zero.
_PAD_COLOUR = (122, 116, 104)


@dataclass(frozen=True)
class Detection:
    """One found object: `box` (x0, y0, x1, y1) in pixels of the input image, `label`, `score` in [0, 1]."""

    box: tuple[float, float, float, float]
    label: str
    score: float

    def to_dict(self) -> dict:
        return {"box": [round(v, 1) for v in self.box], "label": self.label, "score": round(self.score, 4)}


@dataclass
class DetectionResult:
    """Everything one image's run produced: detections, image size, proposal count, time per stage."""

    detections: list[Detection]
    width: int
    height: int
    num_proposals: int
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self, image: str) -> dict:
        """The result as every entry point reports it (CLI JSONL, HTTP, Python): boxes to 0.1 pixel,
        scores to 4 decimals. Timings are left out: they differ from run to run, the boxes do not."""
        return {"image": image, "width": self.width, "height": self.height, "proposals": self.num_proposals,
                "detections": [d.to_dict() for d in self.detections]}


class ZeroShotDetector:
    """Find objects described by text queries and/or example images, without training.

    >>> detector = ZeroShotDetector(load_clip(), queries=["dented metallic surface"])  # doctest: +SKIP
    >>> detector.detect("car.jpg")  # doctest: +SKIP
    [Detection(box=(112.0, 40.5, 301.0, 220.0), label='dented metallic surface', score=0.83)]

    `model` is an `ImageTextModel` or anything `load_clip` takes. `examples` is a list of images (all
    labelled `example_label`) or a mapping label -> images; an example that cannot be read raises a
    `UserError` naming it. Text embeddings and example embeddings are computed once, here.
    """

    def __init__(self, model: ImageTextModel | str | os.PathLike, queries: Sequence[str] = (),
                 examples: Sequence[ImageSource] | Mapping[str, Sequence[ImageSource]] = (), *,
                 example_label: str = EXAMPLE_LABEL, example_mode: Literal["mean", "nearest"] = "mean",
                 templates: str | Sequence[str] | None = None,
                 background: Sequence[str] = DEFAULT_BACKGROUND_PROMPTS, threshold: float = 0.5,
                 example_threshold: float = 0.8, proposer: RegionProposer | None = None,
                 nms_iou: float = 0.3, context_padding: float = 0.0, max_detections: int = 50,
                 batch_size: int = 32, cache_dir: str | os.PathLike | None | Literal[False] = None) -> None:
        from zeroshot.vision.classify import text_classifier

        if not isinstance(model, ImageTextModel):
            from zeroshot.models.clip import load_clip

            model = load_clip(model)
        self.model = model
        self.queries = _clean_queries(queries)
        self.examples = _group_examples(examples, example_label)
        if not self.queries and not self.examples:
            raise UserError("nothing to detect: give at least one text query or one example image")
        if example_mode not in ("mean", "nearest"):
            raise UserError(f"unknown example mode {example_mode!r}: choose mean or nearest")
        _check_fraction("threshold", threshold)
        _check_fraction("nms_iou", nms_iou)
        if not -1 <= example_threshold <= 1:
            raise UserError(f"example_threshold is a cosine similarity in [-1, 1], got {example_threshold}")
        if context_padding < 0:
            raise UserError(f"context_padding must be 0 or more, got {context_padding}")
        if max_detections < 1 or batch_size < 1:
            raise UserError("max_detections and batch_size must be at least 1")
        self.example_mode = example_mode
        self.threshold = threshold
        self.example_threshold = example_threshold
        self.proposer = proposer or RegionProposer()
        self.nms_iou = nms_iou
        self.context_padding = context_padding
        self.max_detections = max_detections
        self.batch_size = batch_size
        self.background = [b for b in dict.fromkeys(str(b).strip() for b in background) if b]
        self.labels = self.queries + [label for label in self.examples if label not in self.queries]

        # Labels first, then backgrounds, in one cached matrix (n_queries + n_background, dim).
        prompts = self.queries + [b for b in self.background if b not in self.queries]
        self.text_weights = (text_classifier(model, prompts, templates, cache_dir) if self.queries
                             else np.zeros((0, model.embedding_dim), np.float32))
        self.example_embeddings = {label: self.embed_regions([_load_example(s) for s in sources],
                                                             [None] * len(sources))
                                   for label, sources in self.examples.items()}

    def detect(self, image: ImageSource) -> list[Detection]:
        """The objects in one image, best first. Raises `ImageError` for an unreadable image."""
        return self.run(image).detections

    def run(self, image: ImageSource) -> DetectionResult:
        """`detect` with the details: image size, number of proposals, milliseconds per stage."""
        picture = load_image(image)
        timings: dict[str, float] = {}
        clock = time.perf_counter()
        boxes = self.proposer(picture)
        timings["proposals"] = _elapsed_ms(clock)
        embeddings = self.embed_regions([picture] * len(boxes), list(boxes), timings)
        clock = time.perf_counter()
        candidates = self._candidates(boxes, embeddings)
        timings["scoring"] = _elapsed_ms(clock)
        if self.context_padding > 0 and candidates:
            candidates = self._rescore_with_context(picture, boxes, embeddings, candidates, timings)
        clock = time.perf_counter()
        detections = self._suppress(boxes, candidates)
        timings["nms"] = _elapsed_ms(clock)
        return DetectionResult(detections, picture.width, picture.height, len(boxes), timings)

    def iter_runs(self, images: Iterable[ImageSource], progress: bool = True
                  ) -> Iterator[tuple[int, DetectionResult | None, str | None]]:
        """(position, result, error) per image, in order; an unreadable image yields its error."""
        from tqdm.auto import tqdm

        images = images if isinstance(images, Sequence) else list(images)
        for index, image in enumerate(tqdm(images, desc="detecting", unit="img", disable=not progress)):
            try:
                yield index, self.run(image), None
            except ImageError as exc:
                yield index, None, str(exc)

    def embed_regions(self, images: Sequence[Image.Image], boxes: Sequence[np.ndarray | None],
                      timings: dict[str, float] | None = None) -> np.ndarray:
        """L2-normalised embeddings of square-padded regions (a `None` box is the whole image)."""
        from zeroshot.vision.transforms import preprocess

        timings = timings if timings is not None else {}
        parts = [np.zeros((0, self.model.embedding_dim), np.float32)]
        for part in batch_slices(len(boxes), self.batch_size):
            clock = time.perf_counter()
            crops = [square_crop(image, box) for image, box in zip(images[part], boxes[part], strict=True)]
            pixels = preprocess(crops, self.model.image_spec)
            timings["crop"] = timings.get("crop", 0.0) + _elapsed_ms(clock)
            clock = time.perf_counter()
            parts.append(self.model.encode_images(pixels).astype(np.float32, copy=False))
            timings["encode"] = timings.get("encode", 0.0) + _elapsed_ms(clock)
        return np.concatenate(parts)

    def score(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores, passed), both (n_regions, n_labels): each region's score per label, and its verdict."""
        n = len(embeddings)
        scores = np.zeros((n, len(self.labels)), np.float32)
        passed = np.ones((n, len(self.labels)), dtype=bool)
        counts = np.zeros(len(self.labels), np.float32)
        if self.queries:
            text_scores, text_passed = self._score_text(embeddings)
            q = len(self.queries)
            scores[:, :q] += text_scores
            passed[:, :q] &= text_passed
            counts[:q] += 1
        for label, examples in self.example_embeddings.items():
            column = self.labels.index(label)
            similarity = embeddings @ examples.T
            if self.example_mode == "mean":
                prototype = examples.mean(axis=0)
                similarity = embeddings @ l2_normalize(prototype)
            else:
                similarity = similarity.max(axis=1)
            scores[:, column] += np.clip(similarity, 0.0, 1.0)
            passed[:, column] &= similarity >= self.example_threshold
            counts[column] += 1
        return scores / np.maximum(counts, 1), passed

    def _score_text(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = len(self.queries)
        logits = (embeddings @ self.text_weights.T) * self.model.logit_scale + self.model.logit_bias
        query_logits, background_logits = logits[:, :q], logits[:, q:]
        if self.model.is_siglip:  # SigLIP scores every pair on its own
            probabilities = 1.0 / (1.0 + np.exp(-query_logits))
        elif background_logits.shape[1]:
            # Each query against the backgrounds only: softmax over (query, backgrounds).
            peak = np.maximum(query_logits, background_logits.max(axis=1, keepdims=True))
            background_mass = np.exp(background_logits[:, None, :] - peak[:, :, None]).sum(axis=2)
            own = np.exp(query_logits - peak)
            probabilities = own / (own + background_mass)
        else:
            probabilities = np.ones_like(query_logits)
        beats_background = (query_logits > background_logits.max(axis=1, keepdims=True)
                            if background_logits.shape[1] else np.ones_like(query_logits, dtype=bool))
        return probabilities.astype(np.float32), beats_background & (probabilities >= self.threshold)

    def _candidates(self, boxes: np.ndarray, embeddings: np.ndarray) -> list[tuple[int, int, float]]:
        scores, passed = self.score(embeddings)
        rows, columns = np.nonzero(passed)
        return [(int(r), int(c), float(scores[r, c])) for r, c in zip(rows, columns, strict=True)]

    def _rescore_with_context(self, picture: Image.Image, boxes: np.ndarray, embeddings: np.ndarray,
                              candidates: list[tuple[int, int, float]], timings: dict[str, float]
                              ) -> list[tuple[int, int, float]]:
        regions = sorted({box_index for box_index, _, _ in candidates})
        padded = [pad_box(boxes[i], self.context_padding, picture.width, picture.height) for i in regions]
        context_timings: dict[str, float] = {}
        context = self.embed_regions([picture] * len(padded), padded, context_timings)
        timings["context_crop_encode"] = sum(context_timings.values())
        clock = time.perf_counter()
        mixed = l2_normalize(embeddings[regions] + context)
        scores, passed = self.score(mixed)
        row_of = {box_index: row for row, box_index in enumerate(regions)}
        rescored = [(i, c, float(scores[row_of[i], c])) for i, c, _ in candidates if passed[row_of[i], c]]
        timings["scoring"] += _elapsed_ms(clock)
        return rescored

    def _suppress(self, boxes: np.ndarray, candidates: list[tuple[int, int, float]]) -> list[Detection]:
        detections: list[Detection] = []
        for column, label in enumerate(self.labels):
            mine = [(i, s) for i, c, s in candidates if c == column]
            if not mine:
                continue
            indices = np.array([i for i, _ in mine])
            scores = np.array([s for _, s in mine])
            keep = nms(boxes[indices], scores, self.nms_iou)
            detections += [Detection(tuple(float(v) for v in boxes[indices[k]]), label, float(scores[k]))
                           for k in keep]
        detections.sort(key=lambda d: -d.score)
        return detections[: self.max_detections]


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3) -> np.ndarray:
    """Non-maximum suppression: indices of the kept boxes, best score first.

    A box is dropped when it overlaps a better-scoring kept box with IoU above `iou_threshold`;
    ties keep the earlier box.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    return order[greedy_suppression(np.asarray(boxes).reshape(-1, 4)[order], iou_threshold)]


def square_crop(image: Image.Image, box: np.ndarray | Sequence[float] | None) -> Image.Image:
    """The region `box` (whole image if None), padded with CLIP's mean colour to a centred square."""
    if box is not None:
        x0, y0 = int(np.floor(box[0])), int(np.floor(box[1]))
        x1, y1 = int(np.ceil(box[2])), int(np.ceil(box[3]))
        image = image.crop((max(0, x0), max(0, y0), min(image.width, max(x1, x0 + 1)),
                            min(image.height, max(y1, y0 + 1))))
    side = max(image.size)
    if image.width == image.height:
        return image
    square = Image.new("RGB", (side, side), _PAD_COLOUR)
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return square


def pad_box(box: np.ndarray, padding: float, width: int, height: int) -> np.ndarray:
    """`box` grown by `padding` x its size on every side, clipped to the image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    dx, dy = (x1 - x0) * padding, (y1 - y0) * padding
    return np.array([max(0.0, x0 - dx), max(0.0, y0 - dy), min(float(width), x1 + dx),
                     min(float(height), y1 + dy)], dtype=np.float32)


def _clean_queries(queries: Sequence[str]) -> list[str]:
    if isinstance(queries, str):
        queries = [queries]
    cleaned = [str(q).strip() for q in queries]
    if any(not q for q in cleaned):
        raise UserError("a query is empty")
    return list(dict.fromkeys(cleaned))


def _group_examples(examples: Sequence[ImageSource] | Mapping[str, Sequence[ImageSource]],
                    default_label: str) -> dict[str, list[ImageSource]]:
    if isinstance(examples, Mapping):
        groups = {str(label).strip(): list(sources) for label, sources in examples.items()}
    else:
        groups = {default_label.strip(): list(examples)} if len(examples) else {}
    if any(not label for label in groups):
        raise UserError("an example label is empty")
    empty = [label for label, sources in groups.items() if not sources]
    if empty:
        raise UserError(f"no example images for {', '.join(empty)}")
    return groups


def _load_example(source: ImageSource) -> Image.Image:
    try:
        return load_image(source)
    except ImageError as exc:
        raise ImageError(f"example image {exc}") from exc


def _check_fraction(name: str, value: float) -> None:
    if not 0 <= value <= 1:
        raise UserError(f"{name} must be between 0 and 1, got {value}")


def _elapsed_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def draw_detections(image: Image.Image, detections: Sequence[Detection], labels: Sequence[str] = ()
                    ) -> Image.Image:
    """A copy of `image` with each detection's box and "label score" drawn (one colour per label)."""
    from PIL import ImageDraw, ImageFont

    palette = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
               (70, 240, 240), (240, 50, 230), (210, 245, 60), (0, 128, 128), (170, 110, 40)]
    order = list(dict.fromkeys(list(labels) + [d.label for d in detections]))
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    width = max(2, round(max(canvas.size) / 300))
    font = ImageFont.load_default(size=max(11, round(max(canvas.size) / 45)))
    for detection in sorted(detections, key=lambda d: d.score):  # best drawn last, on top
        colour = palette[order.index(detection.label) % len(palette)]
        x0, y0, x1, y1 = detection.box
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=width)
        text = f"{detection.label} {detection.score:.2f}"
        left, top, right, bottom = draw.textbbox((x0, y0), text, font=font)
        lift = min(bottom - top + 2, y0)  # above the box when there is room, else inside it
        draw.rectangle((left, top - lift, right + 4, bottom - lift), fill=colour)
        draw.text((x0 + 2, y0 - lift), text, fill=(255, 255, 255), font=font)
    return canvas


def result_record(source: str, result: DetectionResult | None, error: str | None = None) -> dict:
    """One JSON-lines record for an image: `result.to_dict(source)`, or the reason it failed."""
    return {"image": source, "error": error} if result is None else result.to_dict(source)


def detection_from_dict(record: Mapping) -> Detection:
    """The inverse of `Detection.to_dict`."""
    return Detection(tuple(float(v) for v in record["box"]), str(record["label"]), float(record["score"]))


__all__ = ["DEFAULT_BACKGROUND_PROMPTS", "Detection", "DetectionResult", "ZeroShotDetector",
           "draw_detections", "nms", "pad_box", "result_record", "square_crop"]
