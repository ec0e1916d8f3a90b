"""A disk cache of text embeddings, keyed by the encoder (name and revision) and each text's hash.

Embedding the 2,225 BBC articles with MiniLM takes minutes on a laptop CPU; every curve, test and
benchmark after the first reads them back in a fraction of a second. One `.npy` file per text means
runs that share texts share work, and concurrent writers cannot corrupt each other (write, then rename).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from zeroshot.files import write_atomic


def cache_root() -> Path:
    """`$ZEROSHOT_CACHE/embeddings`, by default `~/.cache/zeroshot/embeddings`."""
    base = os.environ.get("ZEROSHOT_CACHE") or Path.home() / ".cache" / "zeroshot"
    return Path(base) / "embeddings"


def encoder_key(encoder) -> str:
    """A file-name-safe id of everything about `encoder` that changes its embeddings."""
    fingerprint = encoder.fingerprint() if hasattr(encoder, "fingerprint") else encoder.name
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in encoder.name)[-40:]
    return f"{slug}-{hashlib.sha256(fingerprint.encode()).hexdigest()[:12]}"


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cached_encode(
    encoder, texts: Sequence[str], batch_size: int = 32, progress: bool = False, cache_dir: Path | None = None
) -> np.ndarray:
    """`encoder.encode(texts)`, computing only the texts not already cached on disk.

    `encoder` needs `name`, `encode(texts, batch_size, progress)` and ideally `fingerprint()`.
    """
    folder = (cache_dir or cache_root()) / encoder_key(encoder)
    paths = [folder / key[:2] / f"{key}.npy" for key in map(text_key, texts)]
    missing = [i for i, path in enumerate(paths) if not path.is_file()]
    if missing:
        vectors = encoder.encode([texts[i] for i in missing], batch_size=batch_size, progress=progress)
        for i, vector in zip(missing, vectors, strict=True):
            paths[i].parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            np.save(buffer, vector)
            write_atomic(paths[i], buffer.getvalue())
    if not paths:
        return encoder.encode([])
    return np.stack([np.load(path) for path in paths]).astype(np.float32, copy=False)
