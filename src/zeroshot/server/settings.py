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
from zeroshot.text.embeddings import MAX_INPUTS


@dataclass
class ServerSettings:
    """Options of `create_app`, checked when built (`check`); `zeroshot serve` fills them from its
    command line and checks nothing itself."""

    host: str = "127.0.0.1"
    port: int = 8000
    model: str | None = None  # LM name (`zeroshot models`), hub id, folder or GGUF; None: the default
    backend: str = "auto"  # LM backend: "auto", "llama.cpp" or "transformers"
    clip_model: str | None = None  # CLIP hub id or folder; None means zeroshot's default
    performer: str | None = None  # Binoculars' second LM at /v1/detect-generated (same tokenizer as model)
    device: str | None = None  # for CLIP; None picks CUDA when visible
    dtype: str | None = None  # CLIP's number format; None is auto (see zeroshot.models.dtype)
    db: Path | None = None  # image-search index folder
    captioner: Path | None = None  # a `zeroshot train-captioner` folder, served at /v1/caption
    image_roots: list[Path] = field(default_factory=list)  # folders whose images may be read by path
    api_key: str | None = None  # when set, every /v1 request needs `Authorization: Bearer <key>`
    # Without a key, only loopback Host names and same-origin requests are served; these origins
    # (e.g. "http://localhost:3000", or "*" for any) are allowed too. See `server.guard`.
    allowed_origins: list[str] = field(default_factory=list)
    # Without a key, the Host names served besides loopback and the bound address ("*": any). On a
    # wildcard address (0.0.0.0, ::) the machine's own names and addresses are added (`server.guard`).
    allowed_hosts: list[str] = field(default_factory=list)
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
    max_queries_per_request: int = 64  # /v1/detect text queries (each is a prompt set to encode)
    max_messages_per_request: int = 256  # chat messages of one request
    max_demonstrations_per_request: int = 64  # few-shot examples of one /v1/classify/text request
    max_stop_sequences: int = 16  # `stop` strings of one generation
    max_embedding_inputs: int = MAX_INPUTS  # /v1/embeddings `input` (OpenAI's own limit)
    max_text_label_pairs: int = 2_048  # texts x labels of one /v1/classify/text request (LM scorings)
    max_list_items: int = 100_000  # any other list anywhere in a request (token ids included)
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
        self.allowed_hosts = [h.strip().strip("[]").lower() for h in self.allowed_hosts if h.strip()]
        self.check()

    def check(self) -> None:
        """Every rule of the server's settings; `UserError` naming the option at fault."""
        if not 1 <= self.port <= 65535:
            raise UserError(f"--port must be between 1 and 65535, not {self.port}")
        for root in self.image_roots:
            if not root.is_dir():
                raise UserError(f"--image-root {root}: no such folder")
        self._check_served_files()
        if self.model is not None:
            from zeroshot.models.loader import resolve_model

            # A name not pulled yet, a misspelt one or a missing file stops `serve` at start (exit 2),
            # not at the first request (503); reading a few file headers costs nothing, loading waits.
            resolve_model(self.model)
        if self.performer is not None:
            from zeroshot.models.loader import resolve_model

            resolve_model(self.performer)
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
                    "max_prompts_per_request": self.max_prompts_per_request,
                    **{name: getattr(self, name) for name in _LIST_LIMITS}}
        for name, value in positive.items():
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise UserError(f"--{name.replace('_', '-')} must be positive, not {value}")
        for origin in self.allowed_origins:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise UserError(f"--allowed-origins {origin!r}: give origins as http(s)://host[:port], or *")
        if not (math.isfinite(self.batch_window_ms) and self.batch_window_ms >= 0):
            raise UserError(f"the batch window must be zero or positive, not {self.batch_window_ms} ms")
        for name in self.allowed_hosts:
            if name != "*" and (not name or any(c in name for c in "/@ \t")):
                raise UserError(f"--allowed-hosts {name!r}: give a host name or address (no scheme, no "
                                "port), or *")

    def _check_served_files(self) -> None:
        """What `serve` will need later, checked now (exit 2 at start-up, never a 503 at the first request):
        the backend's name, the `--db` index and the `--captioner` folder. Reading a catalog and a JSON
        record costs milliseconds; no model loads here."""
        from zeroshot.models.loader import check_backend_name

        check_backend_name(self.backend)
        if self.db is not None:
            from zeroshot.search.index import ImageIndex

            if not self.db.is_dir():
                raise UserError(f"--db {self.db}: " + ("is a file; give the folder `zeroshot index` made"
                                                       if self.db.exists() else "no such index folder"))
            with ImageIndex(self.db, create=False):
                pass  # opens the catalog: not an index, or a damaged one, says so here
        if self.captioner is not None:
            from zeroshot.caption.captioner import read_captioner_record

            self.captioner = Path(self.captioner).expanduser()
            if not self.captioner.is_dir():
                raise UserError(f"--captioner {self.captioner}: no such folder (made by `zeroshot "
                                "train-captioner`)")
            read_captioner_record(self.captioner)

    def list_caps(self, path: str) -> dict[str, tuple[int, str]]:
        """The most items each top-level list field of a request to `path` may hold, and the option
        that sets it: the one table `server.limits` enforces for JSON and multipart bodies alike.

        A field name means the same thing on every route except `input`: texts to caption, but texts
        to embed on /v1/embeddings (where OpenAI allows 2,048)."""
        caps = {"texts": "max_texts_per_request", "input": "max_texts_per_request",
                "labels": "max_labels_per_request", "templates": "max_templates_per_request",
                "queries": "max_queries_per_request", "messages": "max_messages_per_request",
                "prompt": "max_prompts_per_request", "demonstrations": "max_demonstrations_per_request",
                "stop": "max_stop_sequences", "paths": "max_images_per_request",
                "example_paths": "max_images_per_request", "images": "max_images_per_request"}
        if path == "/v1/embeddings":
            caps["input"] = "max_embedding_inputs"
        return {name: (getattr(self, option), option) for name, option in caps.items()}

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @classmethod
    def api_key_from_env(cls) -> str | None:
        """The key in `ZEROSHOT_API_KEY`, if set and not empty."""
        return os.environ.get("ZEROSHOT_API_KEY") or None

    def public(self) -> dict:
        """The settings a client may see (never the API key itself)."""
        # Names only, never the server's folders: a client needs to know what is served, not where.
        return {"host": self.host, "port": self.port, "model": public_name(self.model),
                "backend": self.backend, "clip_model": public_name(self.clip_model),
                "performer": public_name(self.performer),
                "db": self.db.name if self.db else None,
                "captioner": self.captioner.name if self.captioner else None,
                "image_roots": [root.name for root in self.image_roots],
                "auth_required": self.api_key is not None, "allowed_origins": self.allowed_origins,
                "limits": {"max_upload_bytes": self.max_upload_bytes, "max_pixels": self.max_pixels,
                           "max_prompt_chars": self.max_prompt_chars, "max_tokens": self.max_tokens,
                           "max_texts_per_request": self.max_texts_per_request,
                           "max_images_per_request": self.max_images_per_request,
                           "max_request_pixels": self.max_request_pixels,
                           "max_labels_per_request": self.max_labels_per_request,
                           "max_templates_per_request": self.max_templates_per_request,
                           "max_label_prompts": self.max_label_prompts,
                           "max_prompts_per_request": self.max_prompts_per_request,
                           **{name: getattr(self, name) for name in _LIST_LIMITS}},
                "batching": {"window_ms": self.batch_window_ms, "max_batch_items": self.max_batch_items}}


_LIST_LIMITS = ("max_queries_per_request", "max_messages_per_request", "max_demonstrations_per_request",
                "max_stop_sequences", "max_embedding_inputs", "max_text_label_pairs", "max_list_items")


def public_name(name: str | os.PathLike | None) -> str | None:
    """How a model or folder is named to clients: a local path only by its last part, never the server's
    folders (a hub id such as `openai/clip-vit-base-patch32` is kept whole)."""
    if name is None:
        return None
    name = os.fspath(name)
    return Path(name).name if ("/" in name and Path(name).exists()) or Path(name).is_absolute() else name
