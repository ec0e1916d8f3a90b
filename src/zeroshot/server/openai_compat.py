"""OpenAI-compatible `/v1/completions` and `/v1/models`, so existing OpenAI clients work unchanged.

Follows OpenAI's legacy Completions API: same request fields, same response and streaming chunk
shapes, `data: [DONE]` at the end of a stream, and errors as `{"error": {message, type, param, code}}`.
`logprobs`, `echo`, `max_tokens: 0` and token-id prompts go to `completions_scored` (likelihoods through
the library's scoring engine). Options we cannot honour (n > 1, suffix, best_of, penalties, logit_bias)
are refused with a 400 that names them rather than silently ignored.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from zeroshot.errors import UserError
from zeroshot.models.lm import GenerationConfig
from zeroshot.server import completions_scored
from zeroshot.server.generation import Completion, complete, stream_completion
from zeroshot.server.resources import Resources
from zeroshot.server.streaming import primed, sse_event, sse_response

router = APIRouter(tags=["openai"])

# OpenAI's documented defaults for the Completions API.
DEFAULT_MAX_TOKENS = 16
DEFAULT_TEMPERATURE = 1.0


class CompletionRequest(BaseModel):
    """The request body of OpenAI's `POST /v1/completions`."""

    model_config = ConfigDict(extra="allow")  # unknown OpenAI fields are checked by name below

    model: str
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(None, ge=0)  # 0: score or echo the prompt, generate nothing
    temperature: float | None = None  # decoding values are checked by GenerationConfig, as on the CLI
    top_p: float | None = None
    n: int | None = 1
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    logprobs: int | None = None
    echo: bool | None = False
    suffix: str | None = None
    best_of: int | None = None
    presence_penalty: float | None = 0.0
    frequency_penalty: float | None = 0.0
    logit_bias: dict[str, float] | None = None
    user: str | None = None


class UnsupportedOption(UserError):
    def __init__(self, message: str, param: str) -> None:
        super().__init__(message, 400)
        self.param = param


def _check_supported(body: CompletionRequest, limit: int) -> list[str]:
    """The prompts of `body`, after refusing every option this server cannot honour."""
    if body.n not in (None, 1):
        raise UnsupportedOption("only n=1 is supported", "n")
    if body.best_of not in (None, 1):
        raise UnsupportedOption("best_of is not supported", "best_of")
    if body.suffix:
        raise UnsupportedOption("suffix (insertion) is not supported", "suffix")
    if body.logit_bias:
        raise UnsupportedOption("logit_bias is not supported", "logit_bias")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(body, name):
            raise UnsupportedOption(f"{name} is not supported; zeroshot's own /v1/generate offers "
                                    f"repetition_penalty", name)
    extra = sorted(body.model_extra or {})
    if extra:
        raise UnsupportedOption(f"unknown or unsupported field(s): {', '.join(extra)}", extra[0])
    prompts = completions_scored.prompt_list(body.prompt)
    if len(prompts) > limit:
        raise UserError(f"{len(prompts)} prompts in one request; this server accepts at most {limit} "
                        "(each is a whole generation)", 413)
    return prompts


def model_id(resources: Resources) -> str:
    """The id clients name the served LM by (`LanguageModel.model_id`, as every route reports it)."""
    return resources.lm().model_id


def _check_model(requested: str, resources: Resources) -> None:
    lm = resources.lm()
    accepted = {model_id(resources), lm.name, Path(lm.name).name, Path(lm.name).stem, "default"}
    if resources.settings.model:  # what `serve --model` was given (a catalogue name, say)
        accepted.add(resources.settings.model)
    from zeroshot.models.catalogue import names_of

    accepted |= names_of(lm.name)  # a catalogue model by any of its names, the default too
    if requested not in accepted:
        raise UserError(f"the model {requested!r} does not exist on this server; it serves "
                        f"{model_id(resources)!r} (see GET /v1/models)", 404)


def _resources(request: Request) -> Resources:
    return request.app.state.resources


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    """OpenAI's model list: the LM this server generates with, then its embedding models (each one
    `GET /v1/models/{id}` and `/v1/embeddings` accept; listing them loads none)."""
    from zeroshot.server.resources import public_name
    from zeroshot.server.routes_embeddings import MINILM

    resources = _resources(request)
    await resources.on_lm(lambda lm: None)  # load it, on its own thread, to name it
    names = [model_id(resources), MINILM]
    if resources.settings.clip_model:
        names.append(public_name(resources.settings.clip_model))
    created = int(time.time())
    return {"object": "list", "data": [{"id": name, "object": "model", "created": created,
                                        "owned_by": "zeroshot"} for name in dict.fromkeys(names)]}


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request):
    """OpenAI-compatible text completion (streaming or not)."""
    resources = _resources(request)
    prompts = _check_supported(body, resources.settings.max_prompts_per_request)
    await resources.on_lm(lambda lm: None)
    _check_model(body.model, resources)
    max_tokens = DEFAULT_MAX_TOKENS if body.max_tokens is None else body.max_tokens
    config = GenerationConfig.from_options(
        max_tokens=max(max_tokens, 1),  # max_tokens 0 only scores (completions_scored): nothing decodes
        temperature=DEFAULT_TEMPERATURE if body.temperature is None else body.temperature,
        top_p=body.top_p, stop=body.stop, seed=body.seed)
    header = {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
              "model": model_id(resources)}
    if completions_scored.wanted(body, prompts):
        return await completions_scored.respond(body, prompts, config, header, resources)
    if body.stream:
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        first = await primed(stream_completion(resources, prompts[0], config))
        return sse_response(_stream_chunks(first, prompts, config, header, include_usage, resources))
    choices, usage = [], {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for index, prompt in enumerate(prompts):
        completion = await complete(resources, prompt, config)
        choices.append({"text": completion.text, "index": index, "logprobs": None,
                        "finish_reason": completion.finish_reason})
        for field, count in completion.usage().items():
            usage[field] += count
    return {**header, "choices": choices, "usage": usage}


async def _stream_chunks(first: AsyncIterator[str | Completion], prompts: list[str],
                         config: GenerationConfig, header: dict[str, Any], include_usage: bool,
                         resources: Resources) -> AsyncIterator[str]:
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    try:
        for index, prompt in enumerate(prompts):
            items = first if index == 0 else stream_completion(resources, prompt, config)
            async with contextlib.aclosing(items):
                async for item in items:
                    if isinstance(item, Completion):
                        for field, count in item.usage().items():
                            usage[field] += count
                        choice = {"text": "", "index": index, "logprobs": None,
                                  "finish_reason": item.finish_reason}
                    else:
                        choice = {"text": item, "index": index, "logprobs": None, "finish_reason": None}
                    usage_field = {"usage": None} if include_usage else {}
                    yield sse_event({**header, "choices": [choice], **usage_field})
        if include_usage:
            yield sse_event({**header, "choices": [], "usage": usage})
    except UserError as exc:  # the stream has started: report in-band, as OpenAI does
        yield sse_event({"error": {"message": str(exc), "type": "invalid_request_error", "param": None,
                                   "code": exc.status_code}})
    yield sse_event("[DONE]")
