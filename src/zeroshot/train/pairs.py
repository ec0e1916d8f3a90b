"""The CLIP/LiT trainer's data: image-text pairs from a captions file or a folder of class folders.

    pairs = read_pairs("pairs.jsonl")        # or .csv, or a folder with one sub-folder of images per class
    pixels, kept = decode_images(pairs, spec) # every image decoded, resized and cropped once

A captions file is JSONL (`{"image": ..., "caption": ...}`) or CSV with `image,caption` columns, image
paths relative to the file; a folder of class folders gives each image its class name (folder name,
`_` read as a space), from which the trainer builds captions with templates. Bad input raises
`UserError` naming the file, the line and the fix.
"""

from __future__ import annotations

import csv
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zeroshot.errors import UserError
from zeroshot.validation import read_jsonl


@dataclass
class Pairs:
    """Training data: image paths and, per image, a caption or a class name (then captions from templates)."""

    images: list[Path]
    captions: list[str] | None = None
    labels: list[str] | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.images)


def read_pairs(data: str | os.PathLike) -> Pairs:
    """A captions file (.jsonl / .csv) or a folder of class folders -> `Pairs`. Raises `UserError`."""
    path = Path(data).expanduser()
    if path.is_file():
        readers = {".jsonl": _read_jsonl, ".csv": _read_csv}
        if path.suffix.lower() not in readers:
            raise UserError(f"{path.name}: a captions file must be .jsonl or .csv")
        try:
            rows = readers[path.suffix.lower()](path)
        except UnicodeDecodeError as exc:
            raise UserError(f"{path.name} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
        return _check_captions(path, rows)
    if path.is_dir():
        return _read_class_folders(path)
    raise UserError(f"{path}: no such captions file or folder")


def _read_jsonl(path: Path) -> list[tuple[int, str, str]]:
    return [(number, row["image"], row["caption"])
            for number, row in read_jsonl(path, {"image": str, "caption": str})]


def _read_csv(path: Path) -> list[tuple[int, str, str]]:
    rows: list[tuple[int, str, str]] = []
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"image", "caption"} <= set(reader.fieldnames):
                raise UserError(f"{path.name} needs a header with `image` and `caption` columns")
            for number, row in enumerate(reader, start=2):
                rows.append((number, row["image"] or "", row["caption"] or ""))
    except csv.Error as exc:
        # the csv module's own limits (a field over 131,072 characters, a NUL byte): one line, not a
        # traceback; the line is the one after the last row read
        line = rows[-1][0] + 1 if rows else 2
        raise UserError(f"{path.name} line {line} cannot be read as CSV ({exc}): a caption that long is "
                        "not a caption; check the file") from None
    return rows


def _check_captions(path: Path, rows: list[tuple[int, str, str]]) -> Pairs:
    if not rows:
        raise UserError(f"{path.name} has no image-caption pairs")
    images, captions, missing = [], [], []
    for number, image, caption in rows:
        file = (path.parent / image).expanduser() if not Path(image).is_absolute() else Path(image)
        if not caption.strip():
            raise UserError(f"{path.name} line {number}: empty caption for {image}")
        if not file.is_file():
            missing.append((number, image))
        images.append(file)
        captions.append(caption.strip())
    if missing:
        number, image = missing[0]
        raise UserError(f"{path.name} names {len(missing)} image(s) that do not exist, the first on line "
                        f"{number}: {image} (paths are relative to {path.parent})")
    if len(set(captions)) < 2:
        raise UserError(f"{path.name} has a single distinct caption: contrastive training needs at least two")
    return Pairs(images, captions=captions, source=str(path))


def _read_class_folders(folder: Path) -> Pairs:
    from zeroshot.vision.images import expand_paths

    classes = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = expand_paths([sub])
        if files:
            classes[sub.name.replace("_", " ")] = files
    if not classes:
        raise UserError(f"{folder} has no class folders with images: give one sub-folder of images per "
                        "class, or a captions .jsonl/.csv file")
    if len(classes) < 2:
        raise UserError(f"{folder} has one class folder ({next(iter(classes))}): contrastive training needs "
                        "at least two classes to tell apart")
    images, labels = [], []
    for name, files in classes.items():
        images.extend(files)
        labels.extend([name] * len(files))
    return Pairs(images, labels=labels, source=str(folder))


def decode_images(pairs: Pairs, spec, progress: bool = True, workers: int = 2
                  ) -> tuple[np.ndarray, list[int]]:
    """Decode, resize and crop every image once (N, H, W, 3) uint8; and the indices that decoded."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    from zeroshot.vision.embed import prepare_image
    from zeroshot.vision.images import ImageError

    arrays, kept, failures = [], [], []

    def one(path):
        try:
            return prepare_image(path, spec)
        except ImageError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for index, result in enumerate(tqdm(pool.map(one, pairs.images), total=len(pairs), unit="img",
                                            desc="reading images", disable=not progress, leave=False)):
            if isinstance(result, Exception):
                failures.append(str(result))
            else:
                arrays.append(result)
                kept.append(index)
    if not arrays:
        raise UserError(f"none of the {len(pairs)} images in {pairs.source} could be read "
                        f"(first: {failures[0] if failures else 'none found'})")
    if progress and failures:
        print(f"skipped {len(failures)} unreadable image(s), the first: {failures[0]}", file=sys.stderr)
    return np.stack(arrays), kept
