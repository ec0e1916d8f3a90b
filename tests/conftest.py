"""Shared fixtures. Area-specific fixtures live in the area's own test files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never reach a hub: loading code must take the local path or fail with a clear message.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Models load in fp32 unless a test asks for a dtype: `auto` times candidates, and a choice that
# depends on the machine's load would make the parity tests flaky. tests/test_dtype.py covers auto.
os.environ.setdefault("ZEROSHOT_DTYPE", "fp32")
# Tests run on the smallest model, the built-in SmolLM2-135M (`make setup` installs it), whatever the
# default is: the suite stays fast and needs no pull. tests/test_models_catalogue.py covers the default.
os.environ["ZEROSHOT_MODEL"] = "smollm2-135m"


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """A small random-weight CLIP saved in the real Hugging Face folder format."""
    from zeroshot.testing import save_random_clip

    return save_random_clip(tmp_path_factory.mktemp("tiny-clip"), size="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_clip(tiny_clip_dir):
    """The tiny random CLIP, loaded once through `load_clip` (the path a real checkpoint takes)."""
    from zeroshot.models.clip import load_clip

    return load_clip(tiny_clip_dir, device="cpu")
