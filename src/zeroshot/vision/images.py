"""Safe image loading: every file either becomes an upright RGB image or fails with a reason.

Batches never stop for one bad file: callers catch `ImageError` per file and report it.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from zeroshot.errors import UserError

# Larger images are refused as possible decompression bombs (Pillow's own default warns at 89 MP).
MAX_PIXELS = 64_000_000
# We enforce our own pixel limit (with a clearer message), and a damaged EXIF block only costs the
# rotation. Module-level filters rather than catch_warnings, which is not thread-safe.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".avif",
                  ".ppm", ".pgm", ".pbm"}


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
            data = source if isinstance(source, bytes) else read_image_bytes(source, max_pixels)
            with io.BytesIO(data) as stream:
                image = Image.open(stream)
                _check_size(image, max_pixels, name)  # before decoding: a bomb is refused unallocated
                image.load()
        _check_size(image, max_pixels, name)
        return to_rgb(image)
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
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{name}: corrupt, truncated or unsupported image ({exc})") from exc
    except MemoryError as exc:
        raise ImageError(f"{name}: not enough memory to decode it") from exc


def max_file_bytes(max_pixels: int = MAX_PIXELS) -> int:
    """The largest image file worth reading for `max_pixels`: 8 bytes a pixel (16-bit RGBA, uncompressed)
    plus 16 MiB for headers and metadata. Anything bigger cannot be an image we would accept."""
    return max_pixels * 8 + (16 << 20)


def read_image_bytes(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> bytes:
    """The bytes of the image file at `path`: regular files only, at most `max_file_bytes(max_pixels)`.

    Every reader of image files goes through here, so a FIFO (which would block forever), a device such
    as /dev/zero (which never ends), a socket or a folder is refused with a reason, even behind a symlink.
    """
    name = os.fspath(path)
    limit = max_file_bytes(max_pixels)
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer; it changes nothing for
    # regular files. The type is checked on the opened descriptor, so nothing can be swapped in between.
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ImageError(f"{name}: is a folder, not an image")
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(f"{name}: not a regular file (a device, FIFO or socket), not read")
        if info.st_size > limit:
            raise ImageError(f"{name}: {info.st_size:,} bytes is more than an image of at most "
                             f"{max_pixels:,} pixels can need ({limit:,} bytes)")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:  # it grew while we read it
        raise ImageError(f"{name}: more than {limit:,} bytes, not read")
    return data


def _check_size(image: Image.Image, max_pixels: int, name: str) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(f"{name}: {width}x{height} is more than {max_pixels:,} pixels "
                         "(possible decompression bomb)")
    if width < 1 or height < 1:
        raise ImageError(f"{name}: empty image")


def to_rgb(image: Image.Image) -> Image.Image:
    """Upright 8-bit RGB: apply EXIF orientation, scale 16-bit, composite alpha on white."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        image = Image.fromarray(_to_8bit(np.asarray(image)), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB") if image.mode != "RGB" else image


def _to_8bit(array: np.ndarray) -> np.ndarray:
    # 16-bit data keeps its brightness (65535 -> 255); values outside that range (32-bit or float
    # images) are stretched from their minimum to their maximum.
    low, high = float(array.min()), float(array.max())
    if array.dtype.kind in "ui" and low >= 0 and high <= 65535:
        return np.round(array.astype(np.float64) / 257.0).astype(np.uint8)
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.round((array.astype(np.float64) - low) * scale).astype(np.uint8)


def expand_paths(inputs: Iterable[str | os.PathLike], recursive: bool = True) -> list[Path]:
    """Files named by `inputs`, in order, each once: files as given, folders walked, globs expanded.

    A file named explicitly is kept whatever its suffix (the loader reports it if it is no image);
    folders (and folders a glob matches) contribute their image files by suffix, sorted, skipping
    hidden files and folders and not following symlinked folders (no loops). Raises `UserError` for
    an input that matches nothing.
    """
    import glob

    found: dict[Path, None] = {}  # an ordered set: a file named twice is classified once
    for item in inputs:
        text = os.fspath(item)
        if not str(text).strip():
            raise UserError("an empty path was given")
        path = Path(text).expanduser()
        if path.is_dir():
            found.update(dict.fromkeys(_walk_images(path, recursive)))
        elif path.exists():
            found[path] = None
        else:
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
            if not matches:
                raise UserError(f"{text}: no such file, folder or glob match")
            for match in matches:
                if match.is_dir():
                    found.update(dict.fromkeys(_walk_images(match, recursive)))
                elif match.is_file():
                    found[match] = None
    return list(found)


def _walk_images(folder: Path, recursive: bool) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        for name in sorted(files):
            candidate = Path(root) / name
            if not name.startswith(".") and candidate.suffix.lower() in IMAGE_SUFFIXES:
                yield candidate
