"""CLIP as a differentiable loss (DietNeRF's semantic consistency loss, Jain et al. 2021).

`clip_consistency_loss(model, images, targets)` is 1 - cosine between the CLIP image embeddings of
`images` (pixel tensors, differentiable) and of `targets` (images or precomputed embeddings). It needs
preprocessing written in torch: `torch_preprocess` resizes (bicubic, antialiased as PIL does), centre-
crops and normalises exactly as the PIL path in `zeroshot.vision.transforms` describes, so a rendered
image and the same photo loaded from disk give the same embedding.

    >>> pixels = torch.rand(1, 3, 256, 256, requires_grad=True)
    >>> loss = clip_consistency_loss(clip, pixels, photo_embedding)
    >>> loss.backward()  # pixels.grad: how to change the render to look more like the photo to CLIP
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from zeroshot.errors import UserError
from zeroshot.models.clip import ImageSpec, ImageTextModel


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
        # transformers' rule (the long side truncated), as `transforms._shortest_edge_size`
        size = (
            (int(short * height / width), short) if width <= height else (short, int(short * width / height))
        )
    else:
        size = (height, width)
    if round_to_8bit:
        # PIL resizes width first, then height, and stores each pass as 8-bit: so do we.
        if size[1] != width:
            pixels = _to_8bit(_resize(pixels, (height, size[1])))
        if size[0] != height:
            pixels = _to_8bit(_resize(pixels, tuple(size)))
    elif tuple(size) != (height, width):
        pixels = _resize(pixels, tuple(size))
    if spec.crop_size is not None:
        pixels = _centre_crop(pixels, spec.crop_size)
    pixels = pixels * (spec.rescale_factor * 255)
    if spec.do_normalize:
        mean = torch.tensor(spec.mean, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
        std = torch.tensor(spec.std, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
        pixels = (pixels - mean) / std
    return pixels


def _resize(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    # Antialiased bicubic with a = -0.5: PIL's filter (torch's antialias path was written to match it).
    return F.interpolate(pixels, size=size, mode="bicubic", antialias=True, align_corners=False)


def _to_8bit(pixels: torch.Tensor) -> torch.Tensor:
    # Round to the 8-bit grid in the forward pass; let the gradient through unchanged (straight-through).
    return pixels + ((pixels * 255).round().clamp(0, 255) / 255 - pixels).detach()


def _centre_crop(pixels: torch.Tensor, crop: tuple[int, int]) -> torch.Tensor:
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


def image_features(model: ImageTextModel, pixels: torch.Tensor, round_to_8bit: bool = False) -> torch.Tensor:
    """Unit-length CLIP image embeddings of (N, 3, H, W) pixels in [0, 1], with gradients."""
    net = model.model
    dtype = next(net.parameters()).dtype
    inputs = torch_preprocess(pixels, model.image_spec, round_to_8bit).to(model.device, dtype)
    output = net.get_image_features(pixel_values=inputs)
    if not isinstance(output, torch.Tensor):  # newer transformers: a model output
        output = output.pooler_output if getattr(output, "pooler_output", None) is not None else output[0]
    return F.normalize(output, dim=-1)


def clip_consistency_loss(
    model: ImageTextModel, images: torch.Tensor, targets: torch.Tensor | np.ndarray
) -> torch.Tensor:
    """Mean of 1 - cos(CLIP(images), CLIP(targets)); differentiable with respect to `images`.

    `images`: (N, 3, H, W) pixels in [0, 1]. `targets`: pixels of the same layout (any size; no
    gradient flows into them), or precomputed image embeddings (N, D) or (D,) (broadcast over N).
    """
    if images.ndim != 4:
        raise UserError(f"images must be (N, 3, H, W) pixels in [0, 1], got shape {tuple(images.shape)}")
    features = image_features(model, images)
    targets = torch.as_tensor(targets)
    if targets.ndim == 4:
        with torch.no_grad():
            wanted = image_features(model, targets.to(images.dtype), round_to_8bit=True)
    elif targets.ndim in (1, 2):
        if targets.shape[-1] != features.shape[-1]:
            raise UserError(
                f"target embeddings are {targets.shape[-1]}-dimensional but {model.name} gives "
                f"{features.shape[-1]}-dimensional ones"
            )
        wanted = F.normalize(
            targets.to(features.device, features.dtype).reshape(-1, features.shape[-1]), dim=-1
        )
    else:
        raise UserError(
            f"targets must be images (N, 3, H, W) or embeddings (N, D), got {tuple(targets.shape)}"
        )
    if wanted.shape[0] not in (1, features.shape[0]):
        raise UserError(f"{features.shape[0]} images but {wanted.shape[0]} targets")
    return (1 - (features * wanted).sum(-1)).mean()
