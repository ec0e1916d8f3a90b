"""Write the sample photos shipped in `src/zeroshot/vision/sample_photos/` from scikit-image's own data.

    python scripts/make_sample_photos.py          # needs scikit-image (the `dev` extra)

Run once by a maintainer; the package ships the result (about 200 KB), so `zeroshot samples` needs
neither scikit-image nor a network. Every photo is public domain or CC0 (scikit-image's docstrings
name the source of each; `SOURCES.md` beside the photos repeats them), so the package may carry them
under any licence. Photos are shrunk to at most `PHOTO_SIDE` pixels and textures to `TEXTURE_SIDE`,
saved as JPEG: small enough to ship, large enough for region proposals and a CLIP to see something.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

PHOTO_SIDE = 320
TEXTURE_SIDE = 256
QUALITY = 85
# shipped name -> scikit-image loader
PHOTOS = {"cat.jpg": "chelsea", "coffee.jpg": "coffee", "rocket.jpg": "rocket", "astronaut.jpg": "astronaut",
          "horse.jpg": "horse"}
TEXTURES = {"brick.jpg": "brick", "grass.jpg": "grass", "gravel.jpg": "gravel"}
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "zeroshot" / "vision" / "sample_photos"


def _as_image(array: np.ndarray) -> Image.Image:
    if array.dtype == bool:  # the horse is a silhouette: True where the horse is not
        array = np.where(array, 255, 0).astype(np.uint8)
    return Image.fromarray(array).convert("RGB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    import skimage.data

    args.out.mkdir(parents=True, exist_ok=True)
    for names, side in ((PHOTOS, PHOTO_SIDE), (TEXTURES, TEXTURE_SIDE)):
        for name, loader in names.items():
            image = _as_image(getattr(skimage.data, loader)())
            image.thumbnail((side, side), Image.Resampling.LANCZOS)
            path = args.out / name
            image.save(path, quality=QUALITY, optimize=True)
            print(f"{path}: {image.width}x{image.height}, {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
