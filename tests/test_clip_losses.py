"""CLIP as a differentiable loss: the torch preprocessing matches the PIL path; gradients are right."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from zeroshot.errors import UserError
from zeroshot.train.losses import clip_consistency_loss, image_features
from zeroshot.vision.transforms import preprocess, torch_preprocess

skimage_data = pytest.importorskip("skimage.data")


def _photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(skimage_data, name)()).convert("RGB")


def _pixels(image: Image.Image, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].to(dtype) / 255


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee", "rocket"])
def test_torch_preprocessing_matches_the_pil_path_on_photos(tiny_clip, name):
    image = _photo(name)
    expected = preprocess([image], tiny_clip.image_spec)
    got = torch_preprocess(_pixels(image, torch.float64), tiny_clip.image_spec, round_to_8bit=True).float()
    difference = (got - expected).abs()
    assert got.shape == expected.shape
    assert difference.mean() < 1e-3
    # The rare exceptions are one 8-bit level apart (0.015 after normalising), where rounding ties differ.
    assert (difference > 1e-3).float().mean() < 1e-3
    assert difference.max() < 0.02
    cosine = (
        image_features(tiny_clip, _pixels(image), round_to_8bit=True)[0].detach().numpy()
        @ tiny_clip.encode_images(expected)[0]
    )
    assert cosine > 1 - 1e-3


def test_small_images_are_padded_like_the_pil_path(tiny_clip):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 90, 3), dtype=np.uint8))
    expected = preprocess([image], tiny_clip.image_spec)
    got = torch_preprocess(_pixels(image, torch.float64), tiny_clip.image_spec, round_to_8bit=True).float()
    assert (got - expected).abs().mean() < 1e-3


def test_gradient_matches_finite_differences(tiny_clip_dir):
    from zeroshot.models.clip import load_clip

    model = load_clip(tiny_clip_dir, device="cpu")
    model.model.double()
    rng = np.random.default_rng(1)
    pixels = torch.tensor(rng.uniform(0.2, 0.8, (1, 3, 64, 80)), dtype=torch.float64, requires_grad=True)
    target = torch.tensor(rng.uniform(0, 1, (1, 3, 70, 70)), dtype=torch.float64)
    loss = clip_consistency_loss(model, pixels, target)
    loss.backward()
    eps = 1e-6
    for index in [(0, 0, 10, 10), (0, 1, 32, 40), (0, 2, 63, 79), (0, 0, 5, 60)]:
        bumped = pixels.detach().clone()
        bumped[index] += eps
        up = clip_consistency_loss(model, bumped, target).item()
        bumped[index] -= 2 * eps
        down = clip_consistency_loss(model, bumped, target).item()
        numeric = (up - down) / (2 * eps)
        assert pixels.grad[index].item() == pytest.approx(numeric, rel=1e-4, abs=1e-9)


def test_targets_as_images_or_embeddings_agree_and_a_photo_is_its_own_best_match(tiny_clip):
    photo = _pixels(_photo("chelsea"))
    embedding = image_features(tiny_clip, photo, round_to_8bit=True).detach()
    same = clip_consistency_loss(tiny_clip, photo, photo)
    assert same.item() == pytest.approx(clip_consistency_loss(tiny_clip, photo, embedding).item(), abs=1e-6)
    assert clip_consistency_loss(tiny_clip, photo, embedding[0].numpy()).item() < 1e-3
    noise = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert clip_consistency_loss(tiny_clip, noise, embedding).item() > same.item()


def test_optimising_noise_lowers_the_loss(tiny_clip):
    target = image_features(tiny_clip, _pixels(_photo("astronaut")), round_to_8bit=True).detach()
    logits = (
        torch.zeros(1, 3, 64, 64).normal_(generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    )
    optimiser = torch.optim.Adam([logits], lr=0.05)
    losses = []
    for _ in range(15):
        loss = clip_consistency_loss(tiny_clip, torch.sigmoid(logits), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_bad_shapes_are_user_errors(tiny_clip):
    with pytest.raises(UserError, match="N, 3, H, W"):
        clip_consistency_loss(tiny_clip, torch.rand(3, 32, 32), torch.rand(16))
    with pytest.raises(UserError, match="dimensional"):
        clip_consistency_loss(tiny_clip, torch.rand(1, 3, 32, 32), torch.rand(7))
