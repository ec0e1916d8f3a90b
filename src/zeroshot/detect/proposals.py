"""Region proposals: boxes that might hold an object, from classical computer vision.

Two sources, usable alone or together:

- selective search (OpenCV contrib, `cv2.ximgproc`): hierarchical grouping of superpixels, in its "fast"
  or "quality" strategy. It runs on a copy of the image shrunk to `max_side` pixels (its cost grows
  faster than the pixel count) and its boxes are scaled back.
- multi-scale sliding windows: square and elongated windows whose side is a fraction of the image's
  shorter side, at half-window strides. A window larger than the image is clipped to it, so even a
  tiny image gets its whole-image box.

Boxes are `(x0, y0, x1, y1)` float32 pixel coordinates, `x1`/`y1` exclusive, ranked best first as each
source ranks them; the combined list takes them in turns. Near-duplicates (IoU above `dedup_iou`), boxes
under `min_size` pixels a side and flat boxes (no texture: nothing there to find) are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from zeroshot.errors import UserError

METHODS = ("both", "selective-search", "windows")
SEARCH_MODES = ("fast", "quality")


@dataclass(frozen=True)
class RegionProposer:
    """Settings of a proposal run; call it on an image to get its boxes.

    `max_proposals` caps the output; `scales` are window sides as fractions of the shorter image side;
    `aspect_ratios` are width/height of the windows; `min_contrast` is the smallest standard deviation of
    grey levels (0-255) a box must have to be kept.
    """

    method: str = "both"
    max_proposals: int = 200
    search_mode: str = "fast"
    max_side: int = 320
    scales: Sequence[float] = (0.2, 0.35, 0.5, 0.7, 1.0)
    aspect_ratios: Sequence[float] = (1.0, 0.5, 2.0)
    min_size: int = 8
    dedup_iou: float = 0.9
    min_contrast: float = 2.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"unknown proposal method {self.method!r}: choose one of {', '.join(METHODS)}")
        if self.search_mode not in SEARCH_MODES:
            raise UserError(f"unknown selective search mode {self.search_mode!r}: choose fast or quality")
        if self.max_proposals < 1:
            raise UserError(f"the number of proposals must be at least 1, got {self.max_proposals}")
        if self.max_side < 16:
            raise UserError(f"max_side must be at least 16 pixels, got {self.max_side}")
        if not self.scales or any(not 0 < s <= 1 for s in self.scales):
            raise UserError(f"window scales must be fractions in (0, 1], got {list(self.scales)}")
        if not self.aspect_ratios or any(r <= 0 for r in self.aspect_ratios):
            raise UserError(f"aspect ratios must be positive, got {list(self.aspect_ratios)}")
        if not 0 < self.dedup_iou <= 1:
            raise UserError(f"dedup_iou must be in (0, 1], got {self.dedup_iou}")

    def __call__(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """The ranked proposals of one RGB image: (N, 4) float32, N <= `max_proposals` (may be 0)."""
        return self.ranked(image)[: self.max_proposals]

    def ranked(self, image: Image.Image | np.ndarray, limit: int | None = None) -> np.ndarray:
        """All proposals, ranked and filtered, up to `limit` (default: no cap). For recall curves."""
        rgb = _as_rgb_array(image)
        height, width = rgb.shape[:2]
        sources = []
        if self.method in ("both", "selective-search"):
            sources.append(selective_search(rgb, self.search_mode, self.max_side))
        if self.method in ("both", "windows"):
            sources.append(sliding_windows(width, height, self.scales, self.aspect_ratios))
        return self.merge(rgb, sources, limit)

    def merge(self, rgb: np.ndarray, sources: Sequence[np.ndarray], limit: int | None = None) -> np.ndarray:
        """Ranked box lists of one image merged in turns, then filtered (size, contrast, duplicates)."""
        boxes = interleave(sources)
        boxes = boxes[box_sizes_at_least(boxes, self.min_size)]
        if self.min_contrast > 0 and len(boxes):
            boxes = boxes[box_contrast(rgb, boxes) >= self.min_contrast]
        return dedup_boxes(boxes, self.dedup_iou, limit)


def _as_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    return image


def selective_search(rgb: np.ndarray, mode: str = "fast", max_side: int = 320) -> np.ndarray:
    """OpenCV selective search on `rgb` shrunk to `max_side`: (N, 4) float32 boxes in `rgb`'s pixels."""
    import cv2

    height, width = rgb.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    small = rgb if scale == 1.0 else cv2.resize(
        rgb, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(np.ascontiguousarray(small[:, :, ::-1]))  # OpenCV wants BGR
    if mode == "quality":
        search.switchToSelectiveSearchQuality()
    else:
        search.switchToSelectiveSearchFast()
    rects = np.asarray(search.process(), dtype=np.float32).reshape(-1, 4)
    boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1) / scale
    return clip_boxes(boxes, width, height)


def sliding_windows(width: int, height: int, scales: Sequence[float] = (0.2, 0.35, 0.5, 0.7, 1.0),
                    aspect_ratios: Sequence[float] = (1.0, 0.5, 2.0), stride: float = 0.5) -> np.ndarray:
    """Windows at every scale and aspect ratio, `stride` x window apart, coarse scales first.

    A window's area is (scale x shorter side)^2, shaped by the aspect ratio (width / height) and
    clipped to the image; each row of windows is spread evenly so the last one touches the border.
    """
    shorter = min(width, height)
    boxes: list[np.ndarray] = []
    for scale in sorted(scales, reverse=True):
        for ratio in aspect_ratios:
            side = scale * shorter
            win_w = min(float(width), side * np.sqrt(ratio))
            win_h = min(float(height), side / np.sqrt(ratio))
            xs = _starts(width, win_w, stride)
            ys = _starts(height, win_h, stride)
            x0, y0 = np.meshgrid(xs, ys)
            x0, y0 = x0.ravel(), y0.ravel()
            boxes.append(np.stack([x0, y0, x0 + win_w, y0 + win_h], axis=1))
    return np.concatenate(boxes).astype(np.float32) if boxes else np.zeros((0, 4), np.float32)


def _starts(length: int, window: float, stride: float) -> np.ndarray:
    span = length - window
    if span <= 0:
        return np.zeros(1)
    steps = int(np.ceil(span / max(1.0, window * stride)))
    return np.linspace(0.0, span, steps + 1)


def interleave(sources: Sequence[np.ndarray]) -> np.ndarray:
    """Ranked box lists merged in turns (1st of each, then 2nd of each...), so each keeps its best."""
    sources = [s for s in sources if len(s)]
    if not sources:
        return np.zeros((0, 4), np.float32)
    if len(sources) == 1:
        return sources[0]
    rank = np.concatenate([np.arange(len(s)) for s in sources])
    source = np.concatenate([np.full(len(s), i) for i, s in enumerate(sources)])
    order = np.lexsort((source, rank))
    return np.concatenate(sources)[order]


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes clipped to the image rectangle."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    return boxes


def box_sizes_at_least(boxes: np.ndarray, min_size: float) -> np.ndarray:
    """Mask of the boxes whose width and height are both at least `min_size` (and positive)."""
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return (widths >= max(min_size, 1e-6)) & (heights >= max(min_size, 1e-6))


def box_contrast(rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Standard deviation of grey levels inside each box, from integral images: O(1) per box."""
    grey = rgb.astype(np.float64).mean(axis=2)
    total = np.pad(grey.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    squares = np.pad((grey * grey).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    height, width = grey.shape
    x0 = np.floor(boxes[:, 0]).astype(int).clip(0, width)
    y0 = np.floor(boxes[:, 1]).astype(int).clip(0, height)
    x1 = np.ceil(boxes[:, 2]).astype(int).clip(0, width)
    y1 = np.ceil(boxes[:, 3]).astype(int).clip(0, height)
    count = np.maximum((x1 - x0) * (y1 - y0), 1)

    def box_sum(table: np.ndarray) -> np.ndarray:
        return table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]

    mean = box_sum(total) / count
    variance = np.maximum(box_sum(squares) / count - mean * mean, 0.0)
    return np.sqrt(variance)


def box_iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union, (len(boxes), len(others))."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    others = np.asarray(others, dtype=np.float64).reshape(-1, 4)
    left = np.maximum(boxes[:, None, 0], others[None, :, 0])
    top = np.maximum(boxes[:, None, 1], others[None, :, 1])
    right = np.minimum(boxes[:, None, 2], others[None, :, 2])
    bottom = np.minimum(boxes[:, None, 3], others[None, :, 3])
    inter = (right - left).clip(0) * (bottom - top).clip(0)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    other_area = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area[:, None] + other_area[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def dedup_boxes(boxes: np.ndarray, iou_threshold: float = 0.9, limit: int | None = None) -> np.ndarray:
    """Drop each box that overlaps an earlier (better-ranked) one above `iou_threshold`; keep order."""
    kept = greedy_suppression(boxes, iou_threshold, limit)
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)[kept]


def greedy_suppression(boxes: np.ndarray, iou_threshold: float, limit: int | None = None) -> np.ndarray:
    """Indices of the boxes kept by greedy suppression in the given order (best first).

    Vectorised in blocks: each block of candidates is compared with everything kept so far at once,
    then resolved within itself, so thousands of boxes cost milliseconds.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    kept: list[int] = []
    kept_boxes = np.zeros((0, 4))
    block = 256
    for start in range(0, len(boxes), block):
        candidates = boxes[start:start + block]
        alive = np.ones(len(candidates), dtype=bool)
        if len(kept_boxes):
            alive &= box_iou(candidates, kept_boxes).max(axis=1) <= iou_threshold
        within = box_iou(candidates, candidates)
        for i in range(len(candidates)):
            if not alive[i]:
                continue
            kept.append(start + i)
            if limit is not None and len(kept) >= limit:
                return np.asarray(kept, dtype=np.int64)
            alive[i + 1:] &= within[i, i + 1:] <= iou_threshold
        kept_boxes = boxes[kept]
    return np.asarray(kept, dtype=np.int64)
