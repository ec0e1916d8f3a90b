"""What more than one bench uses, in one place.

Benches share code through this module only, never through another bench's names, so that a bench can
be changed or removed without breaking another. Heavy libraries are imported inside the functions that
need them: importing this module costs only NumPy.

- the machine: `lscpu_model`;
- the BBC News dev split and model names (`ladder_scaling`, `calibrate_auto`): `bbc_dev_task`,
  `model_path`;
- the dtype benches (`clip_classify`, `dtype_text`, `dtype_trained_clip`): `auto_choice`,
  `auto_summary`, `agreement`;
- synthetic detection scenes (`detect_recall`, `fashion_mnist_clip`): `FASHION`, `SIZE`, `IOU`,
  `tight_crop`, `load_backgrounds`, `make_scene`;
- the Fashion-MNIST test folders `fashion_mnist_setup` writes (`fashion_mnist_clip`,
  `dtype_trained_clip`): `load_test_set`;
- sampled Italian continuations of a recycled LM (`recycle_it`, `recycle_eval`): `recycle_samples`.
"""

from __future__ import annotations

import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

    from zeroshot.eval.tasks import Task

# Synthetic detection scenes: real object images pasted on real photos (see bench/detect_recall.py).
FASHION = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
OPENCV_SAMPLES = Path("/usr/share/doc/opencv-doc/examples/data")
OPENCV_BACKGROUNDS = ("building.jpg", "home.jpg", "fruits.jpg", "baboon.jpg", "board.jpg", "aero3.jpg",
                      "lena.jpg", "orange.jpg", "starry_night.jpg", "pic1.png")
SKIMAGE_BACKGROUNDS = ("astronaut", "coffee", "chelsea", "rocket", "grass", "gravel", "brick", "camera",
                       "coins", "horse", "moon", "page")
SIZE, IOU = (640, 480), 0.5

# The prompts a recycled Italian LM continues (issue 16).
PROMPTS = [
    "La vita è",
    "Il sistema operativo Debian",
    "Per installare un pacchetto, usare il comando",
    "Un vecchio proverbio dice che",
    "Il gatto",
]


def lscpu_model() -> str:
    """`lscpu`'s model name (what the notes record with every speed figure)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.processor() or platform.machine()
    names = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")]
    return names[0] if names else platform.processor() or platform.machine()


BBC_DEV_DOCS = 200  # articles of the demonstration pool that the dev split evaluates


def bbc_dev_task(max_chars: int | None = None) -> Task:
    """A dev split of BBC News for choosing options: 200 articles drawn (seed 0) from the demonstration
    pool are evaluated and the rest stays the pool; the test split is never touched. (The pool is
    ordered by topic, so a slice of it would hold one topic only.)"""
    import dataclasses
    import random

    from zeroshot.eval.tasks import load_task

    task = load_task("bbc-news", max_chars=max_chars)
    order = random.Random(0).sample(range(len(task.pool)), BBC_DEV_DOCS)  # drawn order: --limit stays mixed
    docs = [task.pool[i] for i in order]
    chosen = set(order)
    pool = [d for i, d in enumerate(task.pool) if i not in chosen]
    return dataclasses.replace(task, name="bbc-news-dev", docs=docs, pool=pool)


def model_path(name: str) -> str | None:
    """A model by ladder name (`zeroshot.models.ladder.LADDER`), "default" (the built-in 135M: None), or
    a path, as `load_lm` takes it."""
    from zeroshot.models.ladder import LADDER, ladder_dir

    if name == "default":
        return None
    for model in LADDER:
        if model.name == name:
            return str(ladder_dir() / model.filename)
    return name


def auto_choice(load: Callable[[], object]) -> dict:
    """What `--dtype auto` picks for the model `load()` returns, measured now in a fresh cache (its
    quick probe), and the load time with that probe."""
    saved = os.environ.get("ZEROSHOT_CACHE")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["ZEROSHOT_CACHE"] = cache
        try:
            start = time.perf_counter()
            model = load()
            seconds = time.perf_counter() - start
        finally:
            if saved is None:
                os.environ.pop("ZEROSHOT_CACHE", None)
            else:
                os.environ["ZEROSHOT_CACHE"] = saved
    return {**model.dtype_choice.to_dict(), "load_seconds_with_probe": seconds}


def auto_summary(auto: dict) -> str:
    """One line: what `auto_choice` picked, and each candidate's probe time and agreement."""
    return (f"auto picked {auto['dtype']} in {auto['load_seconds_with_probe']:.1f} s (load + probe): "
            + ", ".join(f"{t['dtype']} {t['seconds'] * 1000:.0f} ms cos {t['min_cosine']:.5f} "
                        f"top1 {t['top1_agreement']:.2f}" for t in auto["trials"]))


def agreement(items: np.ndarray, classes: np.ndarray, ref_items: np.ndarray, ref_classes: np.ndarray,
              same_top1: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """A dtype against fp32, in float64: the cosine of each item's embedding and of each class's with
    fp32's (unit rows), the share of items whose top-1 is fp32's (`same_top1`, booleans), and whether
    that passes `--dtype auto`'s bar (smallest cosine >= MIN_COSINE, top-1 >= MIN_TOP1)."""
    from zeroshot.models.dtype import MIN_COSINE, MIN_TOP1

    item_cos = np.sum(items.astype(np.float64) * ref_items, axis=1)
    class_cos = np.sum(classes.astype(np.float64) * ref_classes, axis=1)
    top1 = float(np.mean(same_top1))
    passes = bool(min(item_cos.min(), class_cos.min()) >= MIN_COSINE and top1 >= MIN_TOP1)
    return item_cos, class_cos, top1, passes


def tight_crop(item: np.ndarray) -> np.ndarray:
    """A grey object image (0 = background) cut to the box of its pixels above 20."""
    ys, xs = np.nonzero(item > 20)
    return item[ys.min():ys.max() + 1, xs.min():xs.max() + 1] if len(ys) else item


def load_backgrounds() -> tuple[list[Image.Image], list[str]]:
    """The scene backgrounds: scikit-image's sample photos, and OpenCV's where installed; and their names."""
    from PIL import Image
    from skimage import data

    pictures, names = [], []
    for name in SKIMAGE_BACKGROUNDS:
        array = np.asarray(getattr(data, name)())
        pictures.append(Image.fromarray(array).convert("RGB"))
        names.append(f"skimage.data.{name}")
    for name in OPENCV_BACKGROUNDS:
        path = OPENCV_SAMPLES / name
        if path.is_file():
            pictures.append(Image.open(path).convert("RGB"))
            names.append(str(path))
    return pictures, names


def make_scene(rng: np.random.Generator, objects: list[np.ndarray], backgrounds: list[Image.Image],
               picked: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One 640x480 scene and its ground-truth boxes (x0, y0, x1, y1).

    `picked`, when given, receives the index in `objects` of each pasted item, box by box (for labels).
    """
    from PIL import Image

    from zeroshot.detect.proposals import box_iou

    background = backgrounds[rng.integers(len(backgrounds))]
    scale = max(SIZE[0] / background.width, SIZE[1] / background.height) * rng.uniform(1.0, 1.6)
    resized = background.resize((max(SIZE[0], round(background.width * scale)),
                                 max(SIZE[1], round(background.height * scale))), Image.Resampling.BICUBIC)
    left = rng.integers(resized.width - SIZE[0] + 1)
    top = rng.integers(resized.height - SIZE[1] + 1)
    scene = np.asarray(resized.crop((left, top, left + SIZE[0], top + SIZE[1])), np.float32).copy()
    boxes: list[list[float]] = []
    for _ in range(rng.integers(2, 5)):
        choice = int(rng.integers(len(objects)))
        item = objects[choice]
        for _attempt in range(20):
            longer = rng.uniform(24, 240)
            factor = longer / max(item.shape)
            w, h = max(8, round(item.shape[1] * factor)), max(8, round(item.shape[0] * factor))
            x0, y0 = rng.integers(0, SIZE[0] - w + 1), rng.integers(0, SIZE[1] - h + 1)
            box = [x0, y0, x0 + w, y0 + h]
            if not boxes or box_iou([box], boxes).max() <= 0.2:
                break
        else:
            continue
        grey = np.asarray(Image.fromarray(item).resize((w, h), Image.Resampling.BICUBIC), np.float32) / 255
        alpha = np.clip(grey * 4, 0, 1)[..., None]  # the item's own silhouette, soft at the edge
        tint = rng.uniform(40, 255, 3)
        colour = tint * (0.35 + 0.65 * grey[..., None])
        patch = scene[y0:y0 + h, x0:x0 + w]
        scene[y0:y0 + h, x0:x0 + w] = alpha * colour + (1 - alpha) * patch
        boxes.append(box)
        if picked is not None:
            picked.append(choice)
    return np.clip(scene, 0, 255).astype(np.uint8), np.asarray(boxes, np.float32)


def load_test_set(test_root: Path, classes: list[str]) -> tuple[list[Path], np.ndarray]:
    """The Fashion-MNIST test images `fashion_mnist_setup` wrote (one folder a class), and their labels."""
    paths, labels = [], []
    for name in classes:
        files = sorted((test_root / name.replace(" ", "_")).glob("*.png"))
        paths.extend(files)
        labels.extend([name] * len(files))
    return paths, np.asarray(labels)


def recycle_samples(folder: str, device: str, seed: int) -> list[str]:
    """Each of `PROMPTS` continued by the LM in `folder` (40 tokens, temperature 0.8, top-p 0.95, seeded)."""
    from zeroshot.models.lm import GenerationConfig
    from zeroshot.models.loader import load_lm

    lm = load_lm(folder, backend="transformers", device=device)
    out = []
    for i, prompt in enumerate(PROMPTS):
        config = GenerationConfig(max_new_tokens=40, temperature=0.8, top_p=0.95, seed=seed + i)
        out.append(prompt + lm.generate(prompt, config))
    return out
