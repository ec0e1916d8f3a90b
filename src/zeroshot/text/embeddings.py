"""Embeddings of texts (and, with a CLIP model, of images) in one call, with the checks every interface
shares: what OpenAI's `/v1/embeddings` takes, refused here with one clear message when it cannot be done.

Texts go through the bundled all-MiniLM-L6-v2 sentence encoder by default, or through a CLIP model's text
tower; images only through a CLIP model's image tower (same space as its text tower, so text and image
vectors compare by cosine). Every vector is L2-normalised, as OpenAI's are.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from zeroshot.errors import UserError

MAX_INPUTS = 2048  # OpenAI's own limit per request
MAX_INPUT_CHARS = 32_000


@dataclass
class EmbeddingResult:
    """One row per input, in input order, and what it cost in tokens (estimated for images: 0)."""

    model: str
    vectors: np.ndarray  # (n, d) float32, unit rows
    prompt_tokens: int

    def to_dict(self, encoding_format: str = "float") -> dict:
        """OpenAI's embeddings response (`encoding_format` "float" or "base64" of little-endian float32)."""
        if encoding_format not in ("float", "base64"):
            raise UserError(f"encoding_format must be float or base64, not {encoding_format!r}")

        def encode(row: np.ndarray):
            if encoding_format == "base64":
                return base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")
            return [float(x) for x in row]

        return {"object": "list", "model": self.model,
                "data": [{"object": "embedding", "index": i, "embedding": encode(row)}
                         for i, row in enumerate(self.vectors)],
                "usage": {"prompt_tokens": self.prompt_tokens, "total_tokens": self.prompt_tokens}}


def check_texts(texts: str | Sequence, limit: int = MAX_INPUTS) -> list[str]:
    """The inputs as a list of non-empty strings, or `UserError` (413 when there are too many)."""
    items = [texts] if isinstance(texts, str) else list(texts)
    if not items:
        raise UserError("input is empty: give a string or a list of strings")
    if len(items) > limit:
        raise UserError(f"{len(items):,} inputs in one request; at most {limit:,} are accepted", 413)
    for index, item in enumerate(items):
        if not isinstance(item, str):
            # A client's token ids are its own tokenizer's (LangChain's are tiktoken's cl100k), which
            # no model here reads: refused, with the LangChain settings that send text instead.
            raise UserError("input holds token ids; this server embeds text only (LangChain: pass "
                            "check_embedding_ctx_length=False, or tiktoken_enabled=False, to "
                            "OpenAIEmbeddings)")
        if not item.strip():
            raise UserError(f"input[{index}] is an empty string: there is nothing to embed")
        if len(item) > MAX_INPUT_CHARS:
            raise UserError(f"input[{index}] has {len(item):,} characters; at most {MAX_INPUT_CHARS:,}", 413)
    return items


def embed_texts(encoder, texts: Sequence[str], name: str) -> EmbeddingResult:
    """Embed checked `texts` with a sentence encoder (`.encode`) or a CLIP model (`.encode_texts`)."""
    if hasattr(encoder, "encode_texts"):
        vectors = encoder.encode_texts(list(texts))
        tokenizer = encoder.tokenizer
    else:
        vectors = encoder.encode(list(texts))
        tokenizer = encoder.model.tokenizer
    tokens = sum(len(ids) for ids in tokenizer(list(texts), add_special_tokens=True)["input_ids"])
    return EmbeddingResult(name, np.asarray(vectors, dtype=np.float32), tokens)
