"""OpenAI's `POST /v1/chat/completions`, plain and streaming, with the served model's own chat template.

The messages are checked and written out by `zeroshot.text.chat`; the completion is the same generation
`/v1/completions` runs (`server.generation`), so limits, stop strings and seeds behave the same.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from zeroshot.errors import UserError
from zeroshot.models.lm import GenerationConfig
from zeroshot.server.generation import Completion, complete, stream_completion
from zeroshot.server.openai_compat import DEFAULT_TEMPERATURE, UnsupportedOption, _check_model, model_id
from zeroshot.server.resources import Resources
from zeroshot.server.streaming import primed, sse_event, sse_response

router = APIRouter(tags=["openai"])
DEFAULT_MAX_TOKENS = 256  # OpenAI has none (the context's end); a bound keeps a forgotten field cheap


class ChatRequest(BaseModel):
    """The request body of OpenAI's `POST /v1/chat/completions` (the fields this server honours)."""

    model_config = ConfigDict(extra="allow")  # unknown fields are refused by name below

    model: str
    messages: list[dict[str, Any]]
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int | None = 1
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    logprobs: bool | None = False
    presence_penalty: float | None = 0.0
    frequency_penalty: float | None = 0.0
    user: str | None = None


def _config(body: ChatRequest) -> GenerationConfig:
    if body.n not in (None, 1):
        raise UnsupportedOption("only n=1 is supported", "n")
    if body.logprobs:
        raise UnsupportedOption("logprobs are not supported on chat completions; use /v1/completions",
                                "logprobs")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(body, name):
            raise UnsupportedOption(f"{name} is not supported", name)
    extra = sorted(body.model_extra or {})
    if extra:
        raise UnsupportedOption(f"unknown or unsupported field(s): {', '.join(extra)}", extra[0])
    try:  # the decoding values are GenerationConfig's to check, as on the CLI and /v1/completions
        return GenerationConfig.from_options(
            max_tokens=body.max_completion_tokens or body.max_tokens or DEFAULT_MAX_TOKENS,
            temperature=DEFAULT_TEMPERATURE if body.temperature is None else body.temperature,
            top_p=body.top_p, stop=body.stop, seed=body.seed)
    except UserError as exc:
        raise UnsupportedOption(str(exc), "stop" if "stop" in str(exc) else "max_tokens") from None


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatRequest, request: Request):
    """OpenAI-compatible chat completion (streaming or not) with the model's chat template."""
    from zeroshot.text.chat import chat_prompt_ids, check_messages

    resources: Resources = request.app.state.resources
    config = _config(body)
    try:
        messages = check_messages(body.messages)
    except UserError as exc:
        raise UnsupportedOption(str(exc), "messages") from exc
    if body.max_tokens is None and body.max_completion_tokens is None:  # unasked: the server's bound
        config.max_new_tokens = min(config.max_new_tokens, resources.settings.max_tokens)
    chars = sum(len(m["content"]) for m in messages)
    if chars > resources.settings.max_prompt_chars:
        raise UserError(f"the messages have {chars:,} characters; this server accepts at most "
                        f"{resources.settings.max_prompt_chars:,} (--max-prompt-chars)", 413)
    # token ids, not text: the contents are tokenized apart from the template, as plain text
    prompt = await resources.on_lm(lambda lm: chat_prompt_ids(lm, messages))
    _check_model(body.model, resources)
    header = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()),
              "model": model_id(resources)}
    if body.stream:
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        first = await primed(stream_completion(resources, prompt, config))
        return sse_response(_chunks(first, header, include_usage))
    completion = await complete(resources, prompt, config)
    return {**header, "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": completion.text},
                         "logprobs": None, "finish_reason": completion.finish_reason}],
            "usage": completion.usage()}


async def _chunks(items: AsyncIterator[str | Completion], header: dict[str, Any],
                  include_usage: bool) -> AsyncIterator[str]:
    header = {**header, "object": "chat.completion.chunk"}
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict, finish: str | None) -> str:
        return sse_event({**header, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                  "finish_reason": finish}], **extra})

    try:
        yield chunk({"role": "assistant", "content": ""}, None)
        async with contextlib.aclosing(items):
            async for item in items:
                if isinstance(item, Completion):
                    yield chunk({}, item.finish_reason)
                    if include_usage:
                        yield sse_event({**header, "choices": [], "usage": item.usage()})
                else:
                    yield chunk({"content": item}, None)
    except UserError as exc:  # the stream has started: report in-band, as OpenAI does
        yield sse_event({"error": {"message": str(exc), "type": "invalid_request_error", "param": None,
                                   "code": exc.status_code}})
    yield sse_event("[DONE]")
