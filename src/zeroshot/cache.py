"""Where zeroshot keeps what it computes once and reuses: `$ZEROSHOT_CACHE`, else `~/.cache/zeroshot`."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(name: str) -> Path:
    """The cache folder `name` under `$ZEROSHOT_CACHE` (default `~/.cache/zeroshot`); not created here."""
    root = os.environ.get("ZEROSHOT_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "zeroshot") / name
