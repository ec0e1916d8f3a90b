"""A detection dataset from a folder of images: one JSON line per image, annotated PNGs and a COCO file.

Each JSON line is `DetectionResult.to_dict(image)`, the same record `/v1/detect` returns; the annotated
picture of `x.jpg` is `x.detections.png` (`x-2.detections.png` for a second `x.jpg`, see `picture_names`).

What `zeroshot detect` writes, as a library call, so Python users get the same files:

    from zeroshot.detect.dataset import write_detection_dataset
    summary = write_detection_dataset(detector, ["shots/"], "car-damage/")

Unreadable images are recorded with their error and skipped; the files of every image finished before
an interruption are kept (the JSONL is written line by line).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from zeroshot.detect.coco import CocoBuilder
from zeroshot.detect.detector import ZeroShotDetector, draw_detections, result_record
from zeroshot.errors import UserError
from zeroshot.files import make_output_dir
from zeroshot.vision.images import expand_paths, load_image

JSONL_NAME = "detections.jsonl"
COCO_NAME = "annotations.coco.json"


@dataclass
class DatasetSummary:
    """What a run wrote: counts, and the folder."""

    images: int
    detections: int
    skipped: int
    output_dir: Path

    def to_dict(self) -> dict:
        return {"images": self.images, "detections": self.detections, "skipped": self.skipped,
                "output_dir": str(self.output_dir)}


def write_detection_dataset(detector: ZeroShotDetector, paths: Sequence[str | os.PathLike],
                            output_dir: str | os.PathLike, progress: bool = False,
                            on_record: Callable[[dict], None] | None = None) -> DatasetSummary:
    """Run `detector` on every image under `paths` and write `detections.jsonl`, one annotated PNG per
    image and `annotations.coco.json` into `output_dir`. `on_record` sees each JSON record as written."""
    files = expand_paths([str(p) for p in paths])
    if not files:
        raise UserError("no image files found in " + ", ".join(str(p) for p in paths))
    folder = make_output_dir(output_dir)
    coco = CocoBuilder(detector.labels)
    names = picture_names(files)
    summary = DatasetSummary(0, 0, 0, folder)
    with open(folder / JSONL_NAME, "w", encoding="utf-8") as jsonl:
        for index, result, error in detector.iter_runs([str(f) for f in files], progress=progress):
            record = result_record(str(files[index]), result, error)
            if result is None:
                summary.skipped += 1
            else:
                summary.images += 1
                summary.detections += len(result.detections)
                coco.add_image(str(files[index]), result.width, result.height, result.detections)
                picture = draw_detections(load_image(files[index]), result.detections, detector.labels)
                picture.save(folder / names[index])
            jsonl.write(json.dumps(record) + "\n")
            jsonl.flush()
            if on_record is not None:
                on_record(record)
    coco.write(folder / COCO_NAME)
    return summary


def picture_names(files: Sequence[Path]) -> list[str]:
    """The annotated PNG's name per input; two inputs may share a name (a/x.jpg, b/x.jpg), so they are
    numbered from the second one on."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for path in files:
        stem = Path(path).stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(f"{stem}.detections.png" if seen[stem] == 1 else f"{stem}-{seen[stem]}.detections.png")
    return names
