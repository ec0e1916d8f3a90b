"""Write Fashion-MNIST as image folders for `zeroshot train-clip` and the vision benchmarks.

    python bench/fashion_mnist_setup.py [--out .cache/fashion-mnist] [--train-per-class 1000] [--seed 0]

Reads Debian's `dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist/, `apt-get install -y
dataset-fashion-mnist`) and writes PNGs (28x28, grey):
- OUT/train/<class>/: `--train-per-class` seeded random training images of each of the 8 *seen* classes
  (the 2 held-out classes, sandal and ankle boot, are not written at all: the model never sees them);
- OUT/test/<class>/: all 10,000 test images, all 10 classes;
- OUT/classes.json: the 10 class names (Fashion-MNIST's label order), which are seen and which held out.
Folder names are the class names with "_" for spaces (train-clip turns them back). Re-running with the
same options rewrites nothing that is already there.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SOURCE = Path("/usr/share/datasets/fashion-mnist")
# Fashion-MNIST's label order. "T-shirt/top" is named "t-shirt" (a slash cannot be a folder name).
CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
           "ankle boot")
# Held out of training entirely: two kinds of footwear the seen "sneaker" is near in words but not in looks.
HELD_OUT = ("sandal", "ankle boot")
DEFAULT_OUT = Path(__file__).resolve().parent.parent / ".cache" / "fashion-mnist"


def read_idx(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) uint8) of "train" or "t10k"."""
    images_file = SOURCE / f"{split}-images-idx3-ubyte.gz"
    labels_file = SOURCE / f"{split}-labels-idx1-ubyte.gz"
    if not images_file.is_file() or not labels_file.is_file():
        sys.exit(f"error: {images_file} not found: install Debian's dataset-fashion-mnist "
                 "(apt-get install -y dataset-fashion-mnist)")
    with gzip.open(images_file) as handle:
        images = np.frombuffer(handle.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(labels_file) as handle:
        labels = np.frombuffer(handle.read(), np.uint8, offset=8)
    return images, labels


def folder_name(label: str) -> str:
    return label.replace(" ", "_")


def write_split(images: np.ndarray, labels: np.ndarray, indices: np.ndarray, root: Path) -> int:
    written = 0
    for index in indices:
        target = root / folder_name(CLASSES[labels[index]]) / f"{index:05d}.png"
        if target.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[index]).save(target)
        written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--train-per-class", type=int, default=1000, help="at most 6000")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not 1 <= args.train_per_class <= 6000:
        sys.exit("error: --train-per-class must be between 1 and 6000")

    train_images, train_labels = read_idx("train")
    test_images, test_labels = read_idx("t10k")
    rng = np.random.default_rng(args.seed)
    chosen = []
    for label, name in enumerate(CLASSES):
        if name in HELD_OUT:
            continue
        members = np.flatnonzero(train_labels == label)
        chosen.extend(rng.permutation(members)[:args.train_per_class])
    train_root = args.out / f"train-{args.train_per_class}-seed{args.seed}"
    written = write_split(train_images, train_labels, np.sort(chosen), train_root)
    written += write_split(test_images, test_labels, np.arange(len(test_labels)), args.out / "test")
    info = {"classes": list(CLASSES), "held_out": list(HELD_OUT),
            "seen": [c for c in CLASSES if c not in HELD_OUT], "train": str(train_root),
            "test": str(args.out / "test"), "train_per_class": args.train_per_class, "seed": args.seed,
            "source": str(SOURCE)}
    (args.out / "classes.json").write_text(json.dumps(info, indent=1))
    print(f"{written} PNGs written; training folders in {train_root} ({len(chosen)} images, "
          f"{len(CLASSES) - len(HELD_OUT)} classes), test folders in {args.out / 'test'} "
          f"({len(test_labels)} images, 10 classes)")


if __name__ == "__main__":
    main()
