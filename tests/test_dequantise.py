"""gguf_to_hf_folder: the built-in GGUF becomes a float32 HF folder that scores like the GGUF it came from."""

from __future__ import annotations

import numpy as np
import pytest

from zeroshot.errors import UserError
from zeroshot.models.dequantise import gguf_to_hf_folder


def test_missing_gguf_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no GGUF file"):
        gguf_to_hf_folder(tmp_path / "absent.gguf", out=tmp_path / "out")


def test_export_is_complete_reused_and_scores_like_the_gguf(tmp_path):
    import torch

    from zeroshot.models.loader import llama_cpp_available, load_lm

    folder = gguf_to_hf_folder(out=tmp_path / "hf")
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert not list(tmp_path.glob(".export-*"))  # nothing half-written left behind
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    assert gguf_to_hf_folder(out=tmp_path / "hf") == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime  # reused, not re-exported

    exported = load_lm(str(folder), backend="transformers")
    assert all(p.dtype == torch.float32 for p in exported.model.parameters())
    # llama.cpp runs the quantised GGUF with 8-bit activations, so agreement is to a few hundredths of a
    # nat; without llama.cpp, transformers' in-memory de-quantisation must match to float precision.
    backend = "llama.cpp" if llama_cpp_available() else "transformers"
    tolerance = 0.1 if backend == "llama.cpp" else 1e-4
    original = load_lm(backend=backend)
    ids = original.tokenize("The capital of France is Paris", add_bos=False)
    assert exported.tokenize("The capital of France is Paris", add_bos=False) == ids
    ours = exported.continuation_logprobs(ids[:3], [ids[3:]])[0]
    theirs = original.continuation_logprobs(ids[:3], [ids[3:]])[0]
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=tolerance)
