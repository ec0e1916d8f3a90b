"""Sample images for the README tour and first experiments, made from real photos shipped with the package.

    written = write_sample_images("demo")   # demo/photos/, query.jpg, photos-by-class/, shots/, example.jpg

Everything is drawn from the eight public-domain or CC0 photos in `sample_photos/` (its `SOURCES.md`
names each one's photographer and licence), seeded, so every run writes the same bytes:

- `photos/`: the eight photos (a cat, a cup of coffee, a rocket, an astronaut, a horse, a brick wall,
  grass, gravel), at most 320 pixels a side: what `classify-images` and `index` read.
- `query.jpg`: a mirrored close-up of the cat, not itself in `photos/`, for `search --image`.
- `photos-by-class/<class>/NN.jpg`: `per_class` random crops of each photo (flipped, brightened or
  darkened), 64 pixels a side: the class folders `train-clip` reads (an underscore in a folder name is
  a space in the class name).
- `shots/scene-N.jpg`: scenes for `detect`: two objects from the photos pasted on a tinted texture.
- `example.jpg`: a close crop of the cat's face, for `detect --example`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from zeroshot.errors import UserError
from zeroshot.files import make_output_dir

PHOTOS_DIR = Path(__file__).with_name("sample_photos")
# class name (its folder in photos-by-class/, `_` for a space) -> shipped photo
CLASSES = {"cat": "cat.jpg", "coffee_cup": "coffee.jpg", "rocket": "rocket.jpg", "astronaut": "astronaut.jpg",
           "horse": "horse.jpg", "brick_wall": "brick.jpg", "grass": "grass.jpg", "gravel": "gravel.jpg"}
# Where each object is in its photo, as fractions (x0, y0, x1, y1): the part pasted into the scenes.
_SUBJECTS = {"cat": (0.1, 0.0, 0.9, 1.0), "coffee_cup": (0.15, 0.0, 0.8, 0.85), "rocket": (0.3, 0.2, 0.7, 1),
             "astronaut": (0.0, 0.2, 0.75, 1.0), "horse": (0.0, 0.0, 1.0, 1.0)}
# The scenes of shots/: background texture, its tint (the textures are grey), the two objects on it.
_SCENES = (("brick_wall", (0.8, 0.85, 1.0), ("cat", "coffee_cup")),
           ("grass", (0.6, 1.0, 0.5), ("horse", "coffee_cup")),
           ("gravel", (0.95, 0.9, 0.8), ("rocket", "cat")),
           ("brick_wall", (0.9, 0.9, 0.9), ("coffee_cup", "astronaut")))
_TEXTURES = ("brick_wall", "grass", "gravel")  # grey photos: the scenes tint them
SCENE_SIZE = (320, 240)
CROP_SIDE = 64  # the class-folder images: train-clip's default tower sees 28 pixels, so 64 loses nothing
# What `write_sample_images` writes into its folder (and refuses to replace without `overwrite`).
SAMPLE_IMAGE_NAMES = ("photos", "query.jpg", "photos-by-class", "shots", "example.jpg")


@dataclass(frozen=True)
class SampleImages:
    """Where the sample images went, and how many files and bytes they are."""

    folder: Path
    files: int
    bytes: int

    def to_dict(self) -> dict:
        return {"folder": str(self.folder), "files": self.files, "bytes": self.bytes,
                **{name: str(self.folder / name) for name in SAMPLE_IMAGE_NAMES}}


def sample_photo(name: str) -> Image.Image:
    """One shipped photo (a file name of `CLASSES`), as RGB; `UserError` when the installation lacks it."""
    path = PHOTOS_DIR / name
    if not path.is_file():
        raise UserError(f"the sample photo {path} is missing from this installation of zeroshot: reinstall "
                        "it with its package data (pip install --force-reinstall zeroshot)")
    with Image.open(path) as image:
        return image.convert("RGB")


def check_free(folder: Path, names: tuple[str, ...], overwrite: bool) -> None:
    """`UserError` if any of `names` already exists in `folder` and `overwrite` is off."""
    taken = [name for name in names if (folder / name).exists()]
    if taken and not overwrite:
        raise UserError(f"{folder} already holds {', '.join(taken)}: pass --overwrite to replace the sample "
                        "files (nothing else there is touched), or give another folder")


def write_sample_images(folder: str | os.PathLike, per_class: int = 24, seed: int = 0,
                        overwrite: bool = False) -> SampleImages:
    """Write the sample photos, query, class folders, scenes and example into `folder` (see the module)."""
    if per_class < 2:
        raise UserError(f"per_class must be at least 2 (a dev split needs some), got {per_class}")
    folder = make_output_dir(folder, "samples folder")
    check_free(folder, SAMPLE_IMAGE_NAMES, overwrite)
    photos = {name: sample_photo(file) for name, file in CLASSES.items()}  # all present before any write
    rng = np.random.default_rng(seed)
    written: list[Path] = []

    def save(image: Image.Image, path: Path, quality: int = 88) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, quality=quality)
        written.append(path)

    for name, file in CLASSES.items():
        save(photos[name], folder / "photos" / file)
    cat = photos["cat"]
    save(ImageOps.mirror(_crop(cat, (0.15, 0.05, 0.85, 0.95))), folder / "query.jpg")
    save(_crop(cat, (0.25, 0.1, 0.75, 0.9)), folder / "example.jpg")
    for name, photo in photos.items():
        for k in range(per_class):
            if name in _TEXTURES:  # any scale, any tint: `detect` must know the scenes' backgrounds
                view = _tint(_random_view(photo, rng, min_area=0.05), tuple(rng.uniform(0.55, 1.05, 3)))
            else:
                view = _random_view(photo, rng)
            save(view, folder / "photos-by-class" / name / f"{k:02d}.jpg", quality=90)
    for number, (ground, tint, objects) in enumerate(_SCENES, 1):
        save(_scene(photos, ground, tint, objects, rng), folder / "shots" / f"scene-{number}.jpg")
    return SampleImages(folder, len(written), sum(path.stat().st_size for path in written))


def _crop(image: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    w, h = image.size
    return image.crop((round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)))


def _random_view(image: Image.Image, rng: np.random.Generator, min_area: float = 0.5) -> Image.Image:
    """A random square-ish crop of `min_area` of the photo or more, maybe mirrored, lighter or darker.

    Half the area or more for an object, so a crop of the cat still shows a cat (and of the coffee, the
    cup); a texture is a texture at any scale, as the small boxes `detect` scores on a background are.
    """
    w, h = image.size
    area = rng.uniform(min_area, 1.0) * w * h
    aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    cw, ch = min(w, round(math.sqrt(area * aspect))), min(h, round(math.sqrt(area / aspect)))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    view = image.crop((x, y, x + cw, y + ch)).resize((CROP_SIDE, CROP_SIDE), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        view = ImageOps.mirror(view)
    return ImageEnhance.Brightness(view).enhance(float(rng.uniform(0.8, 1.2)))


def _tint(image: Image.Image, tint: tuple[float, ...]) -> Image.Image:
    """`image` with each channel scaled by its factor: the grey textures coloured."""
    pixels = np.asarray(image, np.float32) * np.asarray(tint, np.float32)
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def _scene(photos: dict[str, Image.Image], ground: str, tint: tuple[float, float, float],
           objects: tuple[str, ...], rng: np.random.Generator) -> Image.Image:
    """A texture, tinted, with each object pasted in its own half at a random height and size."""
    width, height = SCENE_SIZE
    scene = _tint(photos[ground].resize((width, height), Image.Resampling.BILINEAR), tint)
    slot = width // len(objects)
    for index, name in enumerate(objects):
        piece = _crop(photos[name], _SUBJECTS[name])
        side = int(rng.integers(int(0.35 * height), int(0.55 * height)))  # the longer side of the object
        scale = side / max(piece.size)
        piece = piece.resize((max(1, round(piece.width * scale)), max(1, round(piece.height * scale))),
                             Image.Resampling.LANCZOS)
        x = index * slot + int(rng.integers(0, max(1, slot - piece.width)))
        y = int(rng.integers(0, max(1, height - piece.height)))
        scene.paste(piece, (x, y))
    return scene
