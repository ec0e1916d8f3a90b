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
from zeroshot.errors import UserError, storage_error
from zeroshot.files import make_output_dir


def export_tokenizer(model: str | os.PathLike | None = None, out: str | os.PathLike | None = None) -> str:
    """A folder (or hub id) holding the tokenizer of `model` (None: the built-in GGUF), ready for
    `AutoTokenizer.from_pretrained`. GGUF tokenizers are exported to `out` (default: the cache)."""
    from zeroshot.models.loader import resolve_model

    if out is not None:  # before the model is resolved or read
        _check_target(Path(out).expanduser())
        make_output_dir(Path(out).expanduser().parent, "folder for the tokenizer")
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
    make_output_dir(target.parent, "folder for the tokenizer")
    try:
        scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tokenizer-"))
        try:
            tokenizer.save_pretrained(scratch)
            if target.exists():
                shutil.rmtree(target)  # an empty folder or an earlier export only: `_check_target`
            os.replace(scratch, target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    except OSError as exc:
        raise (storage_error(exc, target.parent, "writing the tokenizer")
               or UserError(f"cannot write the tokenizer to {target}: {exc.strerror or exc}")) from None
    return str(target)


def _check_target(target: Path) -> None:
    """`--output-dir` must be a folder we may replace: absent, empty, or an earlier export. A folder
    holding anything else is the user's, and the export replaces its target whole."""
    if target.exists() and not target.is_dir():
        raise UserError(f"--output-dir {target} is a file, not a folder: choose another --output-dir")
    if target.is_dir() and any(target.iterdir()) and not (target / "tokenizer_config.json").is_file():
        raise UserError(f"--output-dir {target} holds other files: choose an empty or new folder "
                        "(the export replaces the whole folder)")
