"""`preprocess` gives the same pixels as the checkpoint's own Hugging Face image processor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from zeroshot.models.clip import ImageSpec
from zeroshot.vision.transforms import normalise_batch, preprocess


def _images() -> list[Image.Image]:
    from skimage import data

    rng = np.random.default_rng(0)
    shapes = [(300, 500), (500, 300), (224, 224), (225, 1000), (100, 50), (1, 1), (7, 3)]
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in shapes]
    return images + [Image.fromarray(data.astronaut()), Image.fromarray(data.coffee())]


def _reference(processor, images) -> np.ndarray:
    return np.stack(processor(images=images, return_tensors="np")["pixel_values"])


def test_clip_preprocess_equals_the_hugging_face_processor(tiny_clip):
    images = _images()
    ours = preprocess(images, tiny_clip.image_spec)
    assert ours.dtype == torch.float32 and ours.shape == (len(images), 3, 224, 224)
    assert np.abs(ours.numpy() - _reference(tiny_clip.image_processor, images)).max() <= 1e-6


@pytest.mark.parametrize("settings", [
    {"size": {"height": 64, "width": 96}, "resample": 2, "image_mean": [0.5] * 3, "image_std": [0.5] * 3,
     "do_center_crop": False},  # SigLIP-style: straight to a size, bilinear
    {"size": {"shortest_edge": 48}, "crop_size": {"height": 64, "width": 64}},  # crop larger than the resize
    {"size": {"shortest_edge": 80}, "crop_size": {"height": 64, "width": 48}, "do_normalize": False},
])
def test_other_processor_settings_are_followed(settings):
    from transformers import CLIPImageProcessorPil

    processor = CLIPImageProcessorPil(**settings)
    spec = ImageSpec.from_processor(processor)
    images = _images()
    reference = _reference(processor, images)
    ours = preprocess(images, spec).numpy()
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() <= 1e-6


def test_non_rgb_images_are_converted_like_the_processor(tiny_clip):
    gray = Image.fromarray(np.arange(300 * 200, dtype=np.uint32).reshape(300, 200).astype(np.uint8), mode="L")
    ours = preprocess([gray], tiny_clip.image_spec).numpy()
    assert np.abs(ours - _reference(tiny_clip.image_processor, [gray.convert("RGB")])).max() <= 1e-6


def test_empty_batch_and_bad_arrays():
    spec = ImageSpec(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert preprocess([], spec).shape == (0, 3, 32, 32)
    with pytest.raises(ValueError, match="uint8"):
        normalise_batch(np.zeros((1, 32, 32, 3), dtype=np.float32), spec)
