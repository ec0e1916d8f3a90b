"""COCO-format annotations for a detection run, so its output can train a supervised detector.

One file holds the whole run: `images` (id, file_name, width, height), `categories` (id, name; ids
from 1 in the detector's label order), and `annotations` (id, image_id, category_id, bbox as
[x, y, width, height] in pixels, area, iscrowd 0, and the detector's `score`). Images with no
detections are listed too: "nothing here" is a label a detector learns from.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from zeroshot.detect.detector import Detection
from zeroshot.errors import UserError


class CocoBuilder:
    """Collects images and their detections; `to_dict` / `write` give the COCO JSON.

    >>> coco = CocoBuilder(["dent", "scratch"])
    >>> image_id = coco.add_image("car.jpg", 640, 480, [Detection((10, 20, 110, 70), "dent", 0.9)])
    >>> coco.to_dict()["annotations"][0]["bbox"]
    [10.0, 20.0, 100.0, 50.0]
    """

    def __init__(self, categories: Sequence[str] = ()) -> None:
        self._category_ids: dict[str, int] = {}
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        for name in categories:
            self.category_id(name)

    def category_id(self, name: str) -> int:
        """The id of category `name`, added (next id) if new."""
        if name not in self._category_ids:
            self._category_ids[name] = len(self._category_ids) + 1
        return self._category_ids[name]

    def add_image(self, file_name: str, width: int, height: int, detections: Sequence[Detection]) -> int:
        """Record one image and its detections; return the image's id."""
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": str(file_name), "width": int(width),
                            "height": int(height)})
        for detection in detections:
            x0, y0, x1, y1 = detection.box
            w, h = max(0.0, x1 - x0), max(0.0, y1 - y0)
            self.annotations.append({
                "id": len(self.annotations) + 1, "image_id": image_id,
                "category_id": self.category_id(detection.label),
                "bbox": [round(x0, 2), round(y0, 2), round(w, 2), round(h, 2)],
                "area": round(w * h, 2), "iscrowd": 0, "score": round(float(detection.score), 4)})
        return image_id

    def to_dict(self) -> dict:
        """The COCO document: info, images, annotations, categories."""
        categories = [{"id": i, "name": name, "supercategory": "object"}
                      for name, i in self._category_ids.items()]
        return {"info": {"description": "zeroshot detect: CLIP-filtered region proposals"},
                "images": self.images, "annotations": self.annotations, "categories": categories}

    def write(self, path: str | os.PathLike) -> Path:
        """Write the COCO JSON to `path`; return it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        return path


def read_coco(path: str | os.PathLike) -> dict[str, list[Detection]]:
    """file_name -> detections of a COCO file (ours or any with bbox, category and optional score).

    Checks what a training tool relies on: unique ids, annotations that point at a listed image and
    category, bboxes of four non-negative numbers. Raises `UserError` naming the first problem.
    """
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable COCO JSON file ({exc})") from exc
    if not isinstance(document, dict) or not all(
            isinstance(document.get(key), list) for key in ("images", "annotations", "categories")):
        raise UserError(f"{path}: a COCO file needs the lists images, annotations and categories")
    images = {image["id"]: image for image in _unique_id(document["images"], "image", path)}
    categories = {c["id"]: str(c["name"]) for c in _unique_id(document["categories"], "category", path)}
    found: dict[str, list[Detection]] = {str(image["file_name"]): [] for image in images.values()}
    for annotation in _unique_id(document["annotations"], "annotation", path):
        if annotation.get("image_id") not in images:
            raise UserError(f"{path}: annotation {annotation['id']} points at no listed image")
        if annotation.get("category_id") not in categories:
            raise UserError(f"{path}: annotation {annotation['id']} has an unknown category")
        bbox = annotation.get("bbox")
        if (not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, int | float) for v in bbox)
                or min(bbox) < 0):
            raise UserError(f"{path}: annotation {annotation['id']} has a bad bbox {bbox!r}")
        x, y, w, h = (float(v) for v in bbox)
        file_name = str(images[annotation["image_id"]]["file_name"])
        found[file_name].append(Detection((x, y, x + w, y + h), categories[annotation["category_id"]],
                                          float(annotation.get("score", 1.0))))
    return found


def _unique_id(items: list, kind: str, path: str | os.PathLike) -> list[dict]:
    seen: set = set()
    for item in items:
        if not isinstance(item, dict) or "id" not in item:
            raise UserError(f"{path}: a {kind} entry has no id")
        if item["id"] in seen:
            raise UserError(f"{path}: duplicate {kind} id {item['id']}")
        seen.add(item["id"])
    return items
