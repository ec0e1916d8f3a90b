"""The tokenizer of a served model as a Hugging Face folder, for clients that count tokens themselves.

lm-evaluation-harness's API models (`local-completions`) tokenize requests on the client and need a
tokenizer transformers can load. A GGUF file holds its tokenizer but is no tokenizer folder: this writes
one (cached, keyed like the de-quantised model by the file's path, size and modification time, written
to a scratch folder first). A Hugging Face folder or hub id already is one and is returned as is.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from zeroshot.cache import cache_dir
from zeroshot.errors import UserError


def export_tokenizer(model: str | os.PathLike | None = None, out: str | os.PathLike | None = None) -> str:
    """A folder (or hub id) holding the tokenizer of `model` (None: the built-in GGUF), ready for
    `AutoTokenizer.from_pretrained`. GGUF tokenizers are exported to `out` (default: the cache)."""
    from zeroshot.models.loader import resolve_model

    kind, location = resolve_model(model)
    if kind != "gguf":
        return location
    source = Path(location)
    stat = source.stat()
    key = hashlib.sha256(f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = Path(out) if out is not None else cache_dir("tokenizers") / f"{source.stem}-{key}"
    if (target / "tokenizer_config.json").is_file():
        return str(target)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    except (ValueError, OSError, KeyError) as err:
        raise UserError(f"transformers cannot read the tokenizer of {source.name}: {err}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tokenizer-"))
    try:
        tokenizer.save_pretrained(scratch)
        if target.exists():
            shutil.rmtree(target)
        os.replace(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return str(target)
