"""Turn decoded images into the pixel tensors a CLIP-family model expects.

Gives the same numbers as the checkpoint's Hugging Face image processor (PIL backend): resize with
PIL (bicubic for CLIP), centre-crop, rescale, normalise. Resizing and cropping are per image in PIL's C
code (which releases the GIL, so `embed` runs them in threads); rescale and normalise are one lookup
per batch: every output value depends only on its channel and its 8-bit input, so a 3 x 256 table
computed with Hugging Face's own arithmetic reproduces it bit for bit.

`torch_preprocess` is the same path written in torch, differentiably, for losses that push gradients
into pixels (`zeroshot.train.losses`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from zeroshot.errors import UserError
from zeroshot.models.clip import ImageSpec


def resize_and_crop(image: Image.Image, spec: ImageSpec) -> np.ndarray:
    """One RGB image resized and centre-cropped as `spec` says: (H, W, 3) uint8."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    if spec.resize_to is not None:
        height, width = spec.resize_to
        image = image.resize((width, height), resample=spec.resample)
    elif spec.resize_shortest_edge is not None:
        new_size = _shortest_edge_size(image.size, spec.resize_shortest_edge)
        image = image.resize(new_size, resample=spec.resample)
    if spec.crop_size is not None and image.size != (spec.crop_size[1], spec.crop_size[0]):
        image = image.crop(_centre_box(image.size, spec.crop_size))
    return np.asarray(image)


def _shortest_edge_size(size: tuple[int, int], shortest: int) -> tuple[int, int]:
    # transformers' get_resize_output_image_size: the long side is truncated, not rounded.
    width, height = size
    if width <= height:
        return shortest, int(shortest * height / width)
    return int(shortest * width / height), shortest


def _centre_box(size: tuple[int, int], crop: tuple[int, int]) -> tuple[int, int, int, int]:
    # An image smaller than the crop is padded with zeros around it, as transformers' center_crop does;
    # PIL fills the area outside the image with zeros.
    width, height = size
    crop_height, crop_width = crop
    top = (height - crop_height) // 2 if height >= crop_height else -((crop_height - height) // 2)
    left = (width - crop_width) // 2 if width >= crop_width else -((crop_width - width) // 2)
    return left, top, left + crop_width, top + crop_height


@lru_cache(maxsize=16)
def _lookup_table(rescale_factor: float, mean: tuple[float, ...], std: tuple[float, ...],
                  do_normalize: bool) -> np.ndarray:
    # The exact operations of transformers' rescale (float64 multiply, then float32) and normalize
    # (float32 subtract and divide), applied once to each of the 256 possible values per channel.
    values = (np.arange(256, dtype=np.float64) * rescale_factor).astype(np.float32)
    table = np.stack([values] * 3)
    if do_normalize:
        mean32 = np.asarray(mean, dtype=np.float32)[:, None]
        std32 = np.asarray(std, dtype=np.float32)[:, None]
        table = (table - mean32) / std32
    return np.ascontiguousarray(table, dtype=np.float32)


def normalise_batch(pixels: np.ndarray, spec: ImageSpec) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32, rescaled and normalised as `spec` says."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"expected an (N, H, W, 3) uint8 batch, got {pixels.shape} {pixels.dtype}")
    table = _lookup_table(spec.rescale_factor, tuple(spec.mean), tuple(spec.std), spec.do_normalize)
    channels_first = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))
    out = np.empty(channels_first.shape, dtype=np.float32)
    for channel in range(3):
        np.take(table[channel], channels_first[:, channel], out=out[:, channel])
    return torch.from_numpy(out)


def preprocess(images: Sequence[Image.Image], spec: ImageSpec) -> torch.Tensor:
    """A batch of RGB PIL images -> (N, 3, H, W) float32 pixels, as the model's image processor makes them.

    Images must already be upright RGB (see `zeroshot.vision.images.load_image`); other modes are
    converted with PIL's `convert("RGB")`, as the Hugging Face processor does.
    """
    height, width = spec.output_size
    if len(images) == 0:
        return torch.empty((0, 3, height, width), dtype=torch.float32)
    stacked = np.stack([resize_and_crop(image, spec) for image in images])
    return normalise_batch(stacked, spec)


def torch_preprocess(pixels: torch.Tensor, spec: ImageSpec, round_to_8bit: bool = False) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> the model's input, differentiably; the PIL path's numbers.

    PIL resizes 8-bit images and rounds each pass to 8 bits; `round_to_8bit` rounds the resized image
    the same way (with a straight-through gradient) for the closest match to files on disk. Leave it
    off when optimising pixels: rounding makes the loss a staircase between gradient steps.
    """
    if pixels.ndim != 4 or pixels.shape[1] != 3:
        raise UserError(f"expected pixels shaped (N, 3, H, W), got {tuple(pixels.shape)}")
    height, width = pixels.shape[-2:]
    if spec.resize_to is not None:
        size = spec.resize_to
    elif spec.resize_shortest_edge is not None:
        short = spec.resize_shortest_edge
        # transformers' rule (the long side truncated), as `_shortest_edge_size`
        size = (
            (int(short * height / width), short) if width <= height else (short, int(short * width / height))
        )
    else:
        size = (height, width)
    if round_to_8bit:
        # PIL resizes width first, then height, and stores each pass as 8-bit: so do we.
        if size[1] != width:
            pixels = _to_8bit_straight_through(_torch_resize(pixels, (height, size[1])))
        if size[0] != height:
            pixels = _to_8bit_straight_through(_torch_resize(pixels, tuple(size)))
    elif tuple(size) != (height, width):
        pixels = _torch_resize(pixels, tuple(size))
    if spec.crop_size is not None:
        pixels = _torch_centre_crop(pixels, spec.crop_size)
    pixels = pixels * (spec.rescale_factor * 255)
    if spec.do_normalize:
        mean = torch.tensor(spec.mean, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
        std = torch.tensor(spec.std, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
        pixels = (pixels - mean) / std
    return pixels


def _torch_resize(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    # Antialiased bicubic with a = -0.5: PIL's filter (torch's antialias path was written to match it).
    return F.interpolate(pixels, size=size, mode="bicubic", antialias=True, align_corners=False)


def _to_8bit_straight_through(pixels: torch.Tensor) -> torch.Tensor:
    # Round to the 8-bit grid in the forward pass; let the gradient through unchanged (straight-through).
    return pixels + ((pixels * 255).round().clamp(0, 255) / 255 - pixels).detach()


def _torch_centre_crop(pixels: torch.Tensor, crop: tuple[int, int]) -> torch.Tensor:
    # Smaller than the crop: zero padding around it, as PIL's crop outside the image and transformers do.
    height, width = pixels.shape[-2:]
    crop_height, crop_width = crop
    top = (height - crop_height) // 2 if height >= crop_height else -((crop_height - height) // 2)
    left = (width - crop_width) // 2 if width >= crop_width else -((crop_width - width) // 2)
    pad = (max(0, -left), max(0, left + crop_width - width), max(0, -top), max(0, top + crop_height - height))
    if any(pad):
        pixels = F.pad(pixels, pad)
        top, left = max(0, top), max(0, left)
    return pixels[..., top : top + crop_height, left : left + crop_width]
