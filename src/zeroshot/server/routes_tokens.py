"""Tokens for clients: `/tokenize` and `/detokenize` (the shapes llama.cpp's and vLLM's servers use),
`GET /v1/models/{id}`, and the served model's tokenizer as Hugging Face files under `/v1/tokenizer/`.

lm-evaluation-harness counts tokens on the client: download the files listed by `GET /v1/tokenizer`
into a folder (or run `zeroshot export-tokenizer`) and pass it as `tokenizer=DIR` in `--model_args`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from zeroshot.errors import UserError
from zeroshot.server.openai_compat import model_id
from zeroshot.server.resources import Resources, public_name

router = APIRouter(tags=["tokens"])
MAX_TOKENIZE_CHARS = 200_000
MAX_DETOKENIZE_TOKENS = 100_000
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja")


def _resources(request: Request) -> Resources:
    return request.app.state.resources


class TokenizeRequest(BaseModel):
    """llama.cpp's `content` or vLLM's `prompt`; `add_special` adds the begin-of-sequence token."""

    model_config = ConfigDict(extra="forbid")

    content: str | None = Field(None, max_length=MAX_TOKENIZE_CHARS)
    prompt: str | None = Field(None, max_length=MAX_TOKENIZE_CHARS)
    add_special: bool = False
    model: str | None = None

    @model_validator(mode="after")
    def _one_text(self) -> TokenizeRequest:
        if (self.content is None) == (self.prompt is None):
            raise ValueError("give the text as `content` (llama.cpp) or `prompt` (vLLM), not both")
        return self


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens: list[int] = Field(max_length=MAX_DETOKENIZE_TOKENS)
    model: str | None = None


@router.post("/tokenize")
async def tokenize(body: TokenizeRequest, request: Request) -> dict[str, Any]:
    """Token ids of a text, as the served model reads it."""
    text = body.content if body.content is not None else body.prompt
    resources = _resources(request)
    tokens = await resources.on_lm(lambda lm: lm.tokenize(text, add_bos=body.add_special))
    context = resources.lm().context_length
    return {"tokens": tokens, "count": len(tokens), "max_model_len": context}


@router.post("/detokenize")
async def detokenize(body: DetokenizeRequest, request: Request) -> dict[str, Any]:
    """The text of token ids."""
    resources = _resources(request)

    def work(lm) -> str:
        vocabulary = lm.vocab_size
        if any(t < 0 or (vocabulary is not None and t >= vocabulary) for t in body.tokens):
            top = vocabulary - 1 if vocabulary else "the vocabulary size"
            raise UserError(f"token ids must be between 0 and {top}")
        try:
            return lm.detokenize(body.tokens)
        except (IndexError, ValueError, OverflowError) as exc:  # a backend that knows no vocabulary size
            raise UserError(f"token ids out of this model's vocabulary: {exc}") from None

    text = await resources.on_lm(work)
    return {"content": text, "prompt": text}


@router.get("/v1/models/{name:path}")
async def get_model(name: str, request: Request) -> dict[str, Any]:
    """One model this server serves: the LM (with its context and tokenizer), or an embedding model."""
    resources = _resources(request)
    await resources.on_lm(lambda lm: None)
    lm = resources.lm()
    created = int(time.time())
    served = model_id(resources)
    if name in (served, "default", lm.name, Path(lm.name).name, Path(lm.name).stem):
        return {"id": served, "object": "model", "created": created, "owned_by": "zeroshot",
                "backend": lm.backend, "context_length": lm.context_length,
                "tokenizer": {"files": [f"/v1/tokenizer/{f}" for f in await _tokenizer_files(resources)],
                              "chat_template": lm.chat_template is not None}}
    from zeroshot.server.routes_embeddings import _MINILM_NAMES, MINILM

    embedding_names = {"clip"} | ({resources.settings.clip_model, public_name(resources.settings.clip_model)}
                                  if resources.settings.clip_model else set())
    if name.lower() in _MINILM_NAMES or name in embedding_names:
        return {"id": MINILM if name.lower() in _MINILM_NAMES else name, "object": "model",
                "created": created, "owned_by": "zeroshot", "kind": "embeddings"}
    raise UserError(f"the model {name!r} does not exist on this server; it serves {served!r} "
                    f"(generation) and {MINILM!r} (embeddings); see GET /v1/models", 404)


async def _tokenizer_dir(resources: Resources) -> Path:
    from zeroshot.models.tokenizer_export import export_tokenizer

    folder = await resources.on_lm(lambda lm: export_tokenizer(resources.settings.model))
    path = Path(folder)
    if not path.is_dir():
        raise UserError(f"the served model's tokenizer is the hub id {folder!r}: load it from there", 404)
    return path


async def _tokenizer_files(resources: Resources) -> list[str]:
    try:
        folder = await _tokenizer_dir(resources)
    except UserError:
        return []
    return [name for name in TOKENIZER_FILES if (folder / name).is_file()]


@router.get("/v1/tokenizer")
async def tokenizer_files(request: Request) -> dict[str, Any]:
    """The files of the served model's tokenizer as a Hugging Face folder (save them side by side)."""
    return {"files": [f"/v1/tokenizer/{f}" for f in await _tokenizer_files(_resources(request))]}


@router.get("/v1/tokenizer/{filename}")
async def tokenizer_file(filename: str, request: Request) -> FileResponse:
    """One file of the served model's tokenizer folder."""
    if filename not in TOKENIZER_FILES:
        raise UserError(f"no tokenizer file {filename!r}; the files are {', '.join(TOKENIZER_FILES)}", 404)
    path = await _tokenizer_dir(_resources(request)) / filename
    if not path.is_file():
        raise UserError(f"this tokenizer has no {filename}", 404)
    return FileResponse(path)
