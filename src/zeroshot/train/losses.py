"""The training losses, pure functions of tensors: what a trainer minimises, apart from its loop.

- `contrastive_loss`: CLIP's symmetric InfoNCE, for batches whose images may share a caption (the
  CLIP/LiT trainer, `zeroshot.train.clip`).
- `clip_consistency_loss`: CLIP as a differentiable loss (DietNeRF's semantic consistency loss, Jain et
  al. 2021): 1 - cosine between the CLIP image embeddings of `images` (pixel tensors, differentiable)
  and of `targets` (images or precomputed embeddings). Its preprocessing is written in torch:
  `zeroshot.vision.transforms.torch_preprocess` resizes (bicubic, antialiased as PIL does), centre-crops
  and normalises exactly as the PIL path does, so a rendered image and the same photo loaded from disk
  give the same embedding.

    >>> pixels = torch.rand(1, 3, 256, 256, requires_grad=True)
    >>> loss = clip_consistency_loss(clip, pixels, photo_embedding)
    >>> loss.backward()  # pixels.grad: how to change the render to look more like the photo to CLIP
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from zeroshot.errors import UserError
from zeroshot.models.clip import ImageTextModel
from zeroshot.vision.transforms import torch_preprocess

__all__ = ["clip_consistency_loss", "contrastive_loss", "image_features", "torch_preprocess"]


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor, caption_index: torch.Tensor,
                     logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP's loss) over a batch whose images may share captions.

    `image_features` (B, D) and `text_features` (U, D) are unnormalised; the U rows of `text_features`
    are the batch's *distinct* captions, and `caption_index` (B,) says which of them belongs to each
    image; `logit_scale` is the log of the temperature's inverse (CLIP's learnable scale).

    - image -> text: cross-entropy of each image's logits against the U distinct captions, so two
      images of one class never push each other's (identical) caption away;
    - text -> image: each caption's logits over the B images against a target spread evenly over the
      images of that caption.

    With B distinct captions (`caption_index` = 0..B-1) this is exactly CLIP's loss.
    """
    images = F.normalize(image_features, dim=-1)
    texts = F.normalize(text_features, dim=-1)
    logits = logit_scale.exp() * images @ texts.t()  # (B, U)
    image_to_text = F.cross_entropy(logits, caption_index)
    target = F.one_hot(caption_index, num_classes=texts.shape[0]).t().to(logits.dtype)  # (U, B)
    target = target / target.sum(dim=1, keepdim=True)
    text_to_image = -(target * F.log_softmax(logits.t(), dim=1)).sum(dim=1).mean()
    return (image_to_text + text_to_image) / 2


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
