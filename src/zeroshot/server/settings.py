"""What one running server is allowed to do: which models it serves and the limits it enforces.

Every limit has a safe default so that `zeroshot serve` with no options is safe to leave running on a
laptop: loopback only, bounded uploads, bounded generation.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from zeroshot.errors import UserError


@dataclass
class ServerSettings:
    """Options of `create_app`, checked when built (`check`); `zeroshot serve` fills them from its
    command line and checks nothing itself."""

    host: str = "127.0.0.1"
    port: int = 8000
    model: str | None = None  # LM name (`zeroshot models`), hub id, folder or GGUF; None: the default
    backend: str = "auto"  # LM backend: "auto", "llama.cpp" or "transformers"
    clip_model: str | None = None  # CLIP hub id or folder; None means zeroshot's default
    device: str | None = None  # for CLIP; None picks CUDA when visible
    dtype: str | None = None  # CLIP's number format; None is auto (see zeroshot.models.dtype)
    db: Path | None = None  # image-search index folder
    captioner: Path | None = None  # a `zeroshot train-captioner` folder, served at /v1/caption
    image_roots: list[Path] = field(default_factory=list)  # folders whose images may be read by path
    api_key: str | None = None  # when set, every /v1 request needs `Authorization: Bearer <key>`
    # Without a key, only loopback Host names and same-origin requests are served; these origins
    # (e.g. "http://localhost:3000", or "*" for any) are allowed too. See `server.guard`.
    allowed_origins: list[str] = field(default_factory=list)
    max_upload_mb: float = 10.0
    max_pixels: int = 40_000_000
    max_prompt_chars: int = 8_000
    max_tokens: int = 512
    max_texts_per_request: int = 64
    max_images_per_request: int = 16
    max_request_pixels: int = 80_000_000  # decoded pixels of all images of one request together
    max_labels_per_request: int = 1_000
    max_templates_per_request: int = 100
    max_label_prompts: int = 8_000  # labels x templates: the text encodings one request may cost
    max_prompts_per_request: int = 16  # prompts of one /v1/completions request (each is a generation)
    batch_window_ms: float = 5.0  # how long a micro-batcher waits for more requests to join a batch
    max_batch_items: int = 64
    preload: bool = False  # load the LM and CLIP at start-up instead of on first use

    def __post_init__(self) -> None:
        # Normalised first (paths resolved, the dtype's aliases to its name), then every rule, once:
        # `zeroshot serve` builds this before any model loads, so a bad option never waits for a request.
        self.image_roots = [Path(root).expanduser().resolve() for root in self.image_roots]
        if self.db is not None:
            self.db = Path(self.db).expanduser()
        if self.api_key == "":
            self.api_key = None
        self.allowed_origins = [o.strip().rstrip("/") for o in self.allowed_origins if o.strip()]
        self.check()

    def check(self) -> None:
        """Every rule of the server's settings; `UserError` naming the option at fault."""
        if not 1 <= self.port <= 65535:
            raise UserError(f"--port must be between 1 and 65535, not {self.port}")
        for root in self.image_roots:
            if not root.is_dir():
                raise UserError(f"--image-root {root}: no such folder")
        if self.model is not None:
            from zeroshot.models.loader import resolve_model

            # A name not pulled yet, a misspelt one or a missing file stops `serve` at start (exit 2),
            # not at the first request (503); reading a few file headers costs nothing, loading waits.
            resolve_model(self.model)
        if self.dtype is not None:  # None: the default, `$ZEROSHOT_DTYPE` or auto, read where CLIP loads
            from zeroshot.models.dtype import check_dtype

            self.dtype = check_dtype(self.dtype)  # the one dtype check of `serve` (its alias -> its name)
        positive = {"max_upload_mb": self.max_upload_mb, "max_pixels": self.max_pixels,
                    "max_prompt_chars": self.max_prompt_chars, "max_tokens": self.max_tokens,
                    "max_texts_per_request": self.max_texts_per_request,
                    "max_images_per_request": self.max_images_per_request,
                    "max_batch_items": self.max_batch_items, "max_request_pixels": self.max_request_pixels,
                    "max_labels_per_request": self.max_labels_per_request,
                    "max_templates_per_request": self.max_templates_per_request,
                    "max_label_prompts": self.max_label_prompts,
                    "max_prompts_per_request": self.max_prompts_per_request}
        for name, value in positive.items():
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise UserError(f"--{name.replace('_', '-')} must be positive, not {value}")
        for origin in self.allowed_origins:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise UserError(f"--allowed-origins {origin!r}: give origins as http(s)://host[:port], or *")
        if not (math.isfinite(self.batch_window_ms) and self.batch_window_ms >= 0):
            raise UserError(f"the batch window must be zero or positive, not {self.batch_window_ms} ms")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @classmethod
    def api_key_from_env(cls) -> str | None:
        """The key in `ZEROSHOT_API_KEY`, if set and not empty."""
        return os.environ.get("ZEROSHOT_API_KEY") or None

    def public(self) -> dict:
        """The settings a client may see (never the API key itself)."""
        return {"host": self.host, "port": self.port, "model": self.model, "backend": self.backend,
                "clip_model": self.clip_model, "db": str(self.db) if self.db else None,
                "image_roots": [str(root) for root in self.image_roots],
                "auth_required": self.api_key is not None, "allowed_origins": self.allowed_origins,
                "limits": {"max_upload_bytes": self.max_upload_bytes, "max_pixels": self.max_pixels,
                           "max_prompt_chars": self.max_prompt_chars, "max_tokens": self.max_tokens,
                           "max_texts_per_request": self.max_texts_per_request,
                           "max_images_per_request": self.max_images_per_request,
                           "max_request_pixels": self.max_request_pixels,
                           "max_labels_per_request": self.max_labels_per_request,
                           "max_templates_per_request": self.max_templates_per_request,
                           "max_label_prompts": self.max_label_prompts,
                           "max_prompts_per_request": self.max_prompts_per_request},
                "batching": {"window_ms": self.batch_window_ms, "max_batch_items": self.max_batch_items}}
