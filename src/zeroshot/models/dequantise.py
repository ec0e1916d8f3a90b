"""De-quantise a GGUF once into a float32 Hugging Face folder, for work that needs gradients or PyTorch.

Training a sliver of a frozen LM (soft prompts, recycled embeddings, a captioner's prefix) and running
other tools on our weights (lm-evaluation-harness's `hf` model) need a plain PyTorch model. transformers
reads GGUF but refuses to `save_pretrained` a model loaded from one, so the weights are copied into a
fresh model of the same config and saved. The folder is keyed by the GGUF's path, size and modification
time, and written to a scratch folder first, so an interrupted export never leaves a half folder behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from zeroshot.cache import cache_dir
from zeroshot.errors import UserError


def _folder_key(gguf: Path) -> str:
    stat = gguf.stat()
    digest = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    return f"{gguf.stem}-{digest[:12]}"


def gguf_to_hf_folder(gguf: str | os.PathLike | None = None, out: str | os.PathLike | None = None) -> Path:
    """The float32 Hugging Face folder of `gguf` (default: the built-in model), exported on first use.

    `out` defaults to `$ZEROSHOT_CACHE/hf/<name>-<key>`; an existing complete folder is returned as is.
    """
    from zeroshot.models.lm import builtin_model_path

    source = Path(gguf) if gguf is not None else Path(builtin_model_path())
    if not source.is_file():
        raise UserError(f"no GGUF file at {source}")
    target = Path(out) if out is not None else cache_dir("hf") / _folder_key(source)
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        loaded = AutoModelForCausalLM.from_pretrained(
            source.parent, gguf_file=source.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    except (ValueError, OSError, KeyError) as err:
        raise UserError(f"transformers cannot de-quantise {source.name}: {err}") from None
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=".export-"))
    try:
        model.save_pretrained(scratch, safe_serialization=True)
        tokenizer.save_pretrained(scratch)
        if target.exists():  # an older, incomplete export: replace it
            shutil.rmtree(target)
        os.replace(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target
