"""`load_clip` / `save_random_clip`: the Hugging Face folder path, clear errors, a stable fingerprint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from zeroshot.errors import UserError
from zeroshot.models.clip import ImageSpec, load_clip


def test_random_clip_folder_has_the_hugging_face_layout(tiny_clip_dir):
    names = {path.name for path in tiny_clip_dir.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json"} <= names
    assert json.loads((tiny_clip_dir / "config.json").read_text())["model_type"] == "clip"


def test_loaded_model_encodes_unit_vectors(tiny_clip):
    texts = tiny_clip.encode_texts(["a photo of a cat.", "a dog"])
    images = tiny_clip.encode_images(torch.zeros(2, 3, 224, 224))
    assert texts.shape == images.shape == (2, tiny_clip.embedding_dim)
    assert np.allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
    assert tiny_clip.logit_scale > 0 and tiny_clip.logit_bias == 0.0 and not tiny_clip.is_siglip
    assert tiny_clip.image_spec == ImageSpec(224, tiny_clip.image_spec.mean, tiny_clip.image_spec.std)


def test_fingerprint_is_stable_across_loads_and_follows_the_weights(tiny_clip, tiny_clip_dir):
    again = load_clip(tiny_clip_dir, device="cpu")
    assert again.fingerprint == tiny_clip.fingerprint and len(again.fingerprint) == 16
    with torch.no_grad():
        next(again.model.parameters()).mul_(1.5)
    again._fingerprint = None
    assert again.fingerprint != tiny_clip.fingerprint


def test_saving_a_random_model_leaves_the_callers_random_state_alone(tmp_path):
    from zeroshot.testing import save_random_clip

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    save_random_clip(tmp_path / "m", seed=7)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp, "not a Hugging Face model folder"),
    (lambda tmp: tmp / "absent" / "model", "no such model folder"),
])
def test_bad_model_paths_are_user_errors(tmp_path, make, message):
    with pytest.raises(UserError, match=message):
        load_clip(make(tmp_path))


def test_broken_model_folder_is_a_user_error(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "clip"')  # cut short
    with pytest.raises(UserError, match="cannot load the CLIP model"):
        load_clip(tmp_path)


def test_hub_id_offline_is_one_sentence(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(UserError) as caught:
        load_clip("openai/clip-vit-base-patch32")
    assert "hf download openai/clip-vit-base-patch32" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_bad_dtype_and_device(tiny_clip_dir):
    with pytest.raises(UserError, match="unknown dtype"):
        load_clip(tiny_clip_dir, dtype="int4")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="not available"):
            load_clip(tiny_clip_dir, device="cuda")
    with pytest.raises(UserError, match="not available"):
        load_clip(tiny_clip_dir, device="no-such-device")


def test_half_precision_loads_and_still_gives_float32_unit_vectors(tiny_clip_dir, monkeypatch):
    from zeroshot.models import dtype as dtypes

    # bf16 is kept only where the CPU has bf16 instructions; this test is about the bf16 path itself,
    # so it runs on any CPU (torch emulates bf16 where the instructions are missing).
    monkeypatch.setattr(dtypes, "bf16_supported", lambda: True)
    model = load_clip(tiny_clip_dir, device="cpu", dtype="bf16")
    vectors = model.encode_texts(["a photo of a cat."])
    assert model.model.dtype == torch.bfloat16 and vectors.dtype == np.float32
    assert abs(np.linalg.norm(vectors) - 1) < 1e-3
