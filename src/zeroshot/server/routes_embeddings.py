"""OpenAI's `POST /v1/embeddings`: texts by the bundled MiniLM, or by the CLIP text tower when the server
serves a CLIP model (`--clip-model`); images through CLIP's image tower via the extension field `images`.

`images` (not in OpenAI's API) holds base64 data URLs (`data:image/png;base64,...`) or paths under
`--image-root`; text and image vectors of one CLIP model share a space and compare by cosine.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from zeroshot.errors import UserError
from zeroshot.server.image_inputs import load_images
from zeroshot.server.resources import Resources, Unavailable, public_name

router = APIRouter(tags=["openai"])
MINILM = "all-MiniLM-L6-v2"
_MINILM_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm"}


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request, plus `images`."""

    model_config = ConfigDict(extra="forbid")

    input: str | list[str] | list[int] | list[list[int]] | None = Field(
        None, description="A text or a list of texts (token ids are refused: this server embeds text).")
    model: str | None = Field(None, description=f"{MINILM} (default without --clip-model), or the served "
                                                "CLIP model's name (default with it), or 'clip'.")
    encoding_format: str = Field("float", description="float, or base64 of little-endian float32.")
    dimensions: int | None = Field(None, ge=1, description="Must equal the model's own dimension if given.")
    user: str | None = None
    images: list[str] | None = Field(None, description="Extension: images as base64 data URLs or paths under "
                                                       "--image-root, embedded by the CLIP image tower.")


class _SentenceEncoder:
    """The MiniLM encoder, loaded on first use on a thread of its own (the LM and CLIP keep theirs)."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="zeroshot-embed")
        self._encoder = None
        self._lock = threading.Lock()

    def get(self):
        with self._lock:
            if self._encoder is None:
                from zeroshot.models.sentence import load_sentence_encoder

                try:
                    self._encoder = load_sentence_encoder(None)
                except (UserError, ImportError) as exc:
                    raise Unavailable(f"the sentence encoder could not be loaded: {exc}") from exc
        return self._encoder


def _encoder(request: Request) -> _SentenceEncoder:
    state = request.app.state
    if getattr(state, "sentence_encoder", None) is None:
        state.sentence_encoder = _SentenceEncoder()
    return state.sentence_encoder


def _wants_clip(model: str | None, resources: Resources) -> bool:
    clip_names = {"clip"}
    if resources.settings.clip_model:
        clip_names |= {resources.settings.clip_model, public_name(resources.settings.clip_model)}
    if model in (None, "", "default"):
        return resources.settings.clip_model is not None
    if model in clip_names:
        return True
    if model.lower() in _MINILM_NAMES:
        return False
    served = sorted({MINILM} | {public_name(name) for name in clip_names - {"clip"}})  # names, no paths
    raise UserError(f"the embedding model {model!r} does not exist on this server; it serves "
                    f"{', '.join(repr(name) for name in served)} (or 'clip')", 404)


def _data_url(value: str, index: int) -> tuple[str, bytes] | None:
    if not value.startswith("data:"):
        return None
    head, _, payload = value.partition(",")
    if not head.endswith(";base64") or not payload:
        raise UserError(f"images[{index}]: a data URL must be data:image/...;base64,<data>")
    try:
        return f"images[{index}]", base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise UserError(f"images[{index}]: the base64 data is not valid") from None


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request) -> dict[str, Any]:
    """Embeddings of texts (`input`) and images (`images`), in OpenAI's response shape."""
    from zeroshot.text.embeddings import EmbeddingResult, check_texts, embed_texts
    from zeroshot.vision.embed import embed_decoded_images

    resources: Resources = request.app.state.resources
    if body.encoding_format not in ("float", "base64"):
        raise UserError(f"encoding_format must be float or base64, not {body.encoding_format!r}")
    if body.input is None and not body.images:
        raise UserError("give `input` (texts) or `images`")
    texts = check_texts(body.input) if body.input is not None else []
    use_clip = bool(body.images) or _wants_clip(body.model, resources)
    if body.images and body.model not in (None, "", "default") and not _wants_clip(body.model, resources):
        raise UserError("images are embedded by a CLIP model only: leave `model` out or name the CLIP model")
    pictures: list = []
    if body.images:
        uploads, paths = [], []
        for index, value in enumerate(body.images):
            decoded = _data_url(value, index)
            (uploads.append(decoded) if decoded else paths.append(value))
        pictures = [image for _, image in await load_images(resources.settings, uploads, paths)]
    if use_clip:
        def work(clip):
            name = public_name(clip.name)
            parts = [embed_texts(clip, texts, name)] if texts else []
            if pictures:
                parts.append(EmbeddingResult(name, embed_decoded_images(clip, pictures), 0))
            return parts

        parts = await resources.on_clip(work)
    else:
        holder = _encoder(request)
        parts = [await asyncio.get_running_loop().run_in_executor(
            holder.executor, lambda: embed_texts(holder.get(), texts, MINILM))]
    import numpy as np


    result = EmbeddingResult(parts[0].model, np.concatenate([p.vectors for p in parts]),
                             sum(p.prompt_tokens for p in parts))
    if body.dimensions is not None and body.dimensions != result.vectors.shape[1]:
        raise UserError(f"dimensions {body.dimensions}: {result.model} gives vectors of "
                        f"{result.vectors.shape[1]} and this server does not shorten them")
    return result.to_dict(body.encoding_format)
