"""`POST /v1/caption`: caption texts or images with the server's prefix captioner (`--captioner`).

JSON `{"input": ["text", ...]}` for a text captioner, or image `paths` (JSON, under `--image-root`)
or uploaded `files` (multipart) for an image captioner; decoding options use OpenAI's names.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from zeroshot.errors import UserError
from zeroshot.server.image_inputs import load_images, parse_body
from zeroshot.server.resources import Unavailable

router = APIRouter(tags=["caption"])
_LOCK = threading.Lock()


class CaptionRequest(BaseModel):
    """Texts (`input`), or images as `paths` (JSON) or uploaded `files` (multipart); decoding options."""

    model_config = ConfigDict(extra="forbid")

    input: list[str] = Field(default_factory=list, description="Texts to caption (text captioners).")
    paths: list[str] = Field(default_factory=list, description="Image paths under the server's image roots.")
    max_tokens: int = Field(24, ge=1, le=256)
    temperature: float = Field(0.0, ge=0.0, le=5.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    num_beams: int = Field(1, ge=1, le=8)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)


def _service(request: Request):
    """The captioner named by `--captioner`, loaded on first use and kept on the app."""
    state = request.app.state
    folder = getattr(state.settings, "captioner", None)
    if folder is None:
        raise Unavailable(
            "captioning is off: start the server with --captioner DIR (made by `zeroshot train-captioner`)"
        )
    if getattr(state, "caption_service", None) is None:
        with _LOCK:
            if getattr(state, "caption_service", None) is None:
                from zeroshot.caption.data import CaptionService

                try:
                    state.caption_service = CaptionService(folder, device=state.settings.device)
                except UserError as exc:
                    raise Unavailable(f"the captioner could not be loaded: {exc}") from exc
    return state.caption_service


@router.post("/v1/caption")
async def caption(request: Request) -> dict[str, Any]:
    """Captions from the prefix captioner: one per text or image, in order."""
    from zeroshot.models.lm import GenerationConfig

    settings = request.app.state.settings
    body, uploads = await parse_body(request, CaptionRequest, ("files",))
    if body.max_tokens > settings.max_tokens:
        raise UserError(f"max_tokens {body.max_tokens} is over this server's limit of {settings.max_tokens}")
    config = GenerationConfig(
        max_new_tokens=body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        num_beams=body.num_beams,
        seed=body.seed,
    )
    config.check()
    loop = asyncio.get_running_loop()
    resources = request.app.state.resources
    service = await loop.run_in_executor(resources.lm_executor, _service, request)
    if service.kind == "clip-image":
        if body.input:
            raise UserError(
                "this captioner captions images: send `files` (multipart) or `paths`, not `input`", 422
            )
        images = await load_images(settings, uploads["files"], body.paths)
        if not images:
            raise UserError("no image: upload `files` (multipart) or name `paths` (JSON)", 422)
        names, items = [name for name, _ in images], [image for _, image in images]
    else:
        if uploads["files"] or body.paths:
            raise UserError("this captioner captions texts: send `input`, not images", 422)
        if not body.input or any(not text.strip() for text in body.input):
            raise UserError("`input` must hold at least one non-empty text", 422)
        if len(body.input) > settings.max_texts_per_request:
            raise UserError(
                f"{len(body.input)} texts in one request; this server accepts at most "
                f"{settings.max_texts_per_request}",
                413,
            )
        if any(len(text) > settings.max_prompt_chars for text in body.input):
            raise UserError(f"a text is longer than {settings.max_prompt_chars} characters", 413)
        names, items = list(body.input), list(body.input)
    results = await loop.run_in_executor(resources.lm_executor, lambda: service.caption(items, config))
    return {
        "model": service.captioner.lm.name,
        "encoder": service.kind,
        "data": [
            {"index": i, "input": name, "caption": r.caption}
            for i, (name, r) in enumerate(zip(names, results, strict=True))
        ],
    }
