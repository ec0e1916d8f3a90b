"""Safe image loading: every file either becomes an upright RGB image or fails with a reason.

Batches never stop for one bad file: callers catch `ImageError` per file and report it.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from zeroshot.errors import UserError

# Larger images are refused as possible decompression bombs (Pillow's own default warns at 89 MP).
MAX_PIXELS = 64_000_000
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}


class ImageError(UserError):
    """An image that cannot be used, with the reason."""


def load_image(source: str | os.PathLike | bytes | Image.Image, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode `source` (a path, raw bytes or a PIL image) into an upright 8-bit RGB image.

    Handles EXIF rotation, grayscale, 16-bit, CMYK, palette and alpha (composited on white); refuses
    truncated or corrupt files, non-images and images over `max_pixels`.
    """
    name = "image" if isinstance(source, bytes | Image.Image) else str(source)
    try:
        if isinstance(source, Image.Image):
            image = source
        else:
            stream = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
            with stream:
                image = Image.open(stream)
                _check_size(image, max_pixels, name)
                image.load()
    except ImageError:
        raise
    except FileNotFoundError as exc:
        raise ImageError(f"{name}: no such file") from exc
    except IsADirectoryError as exc:
        raise ImageError(f"{name}: is a folder, not an image") from exc
    except PermissionError as exc:
        raise ImageError(f"{name}: permission denied") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name}: not an image file (or an unsupported format)") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: too many pixels (possible decompression bomb)") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name}: corrupt or truncated image ({exc})") from exc
    _check_size(image, max_pixels, name)
    return to_rgb(image)


def _check_size(image: Image.Image, max_pixels: int, name: str) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(f"{name}: {width}x{height} is more than {max_pixels:,} pixels (possible decompression bomb)")
    if width < 1 or height < 1:
        raise ImageError(f"{name}: empty image")


def to_rgb(image: Image.Image) -> Image.Image:
    """Upright 8-bit RGB: apply EXIF orientation, scale 16-bit, composite alpha on white."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        image = Image.fromarray(((array - low) * scale).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB") if image.mode != "RGB" else image


def expand_paths(inputs: Iterable[str | os.PathLike], recursive: bool = True) -> list[Path]:
    """Files named by `inputs`: files as given, folders walked for image files, globs expanded.

    Raises `UserError` for an input that matches nothing.
    """
    import glob

    found: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            walker: Iterator[Path] = path.rglob("*") if recursive else path.glob("*")
            found.extend(sorted(p for p in walker if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.exists():
            found.append(path)
        else:
            matches = sorted(Path(m) for m in glob.glob(str(item), recursive=True))
            if not matches:
                raise UserError(f"{item}: no such file, folder or glob match")
            found.extend(m for m in matches if m.is_file())
    return found
