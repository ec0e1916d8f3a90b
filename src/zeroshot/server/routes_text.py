"""Text endpoints: `/v1/generate` (with streaming) and `/v1/classify/text` (micro-batched)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from zeroshot.errors import UserError
from zeroshot.models.lm import GenerationConfig
from zeroshot.server.generation import Completion, complete, stream_completion
from zeroshot.server.resources import Resources, public_name
from zeroshot.server.streaming import primed, sse_event, sse_response

router = APIRouter(tags=["text"])


class GenerateRequest(BaseModel):
    """A prompt and every decoding option of `GenerationConfig`."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="Text to continue.")
    max_new_tokens: int = Field(64, ge=1, description="Most tokens to generate (capped by --max-tokens).")
    temperature: float = Field(0.0, ge=0.0, le=5.0, description="0 is greedy decoding.")
    top_k: int = Field(0, ge=0, description="Sample from the k most likely tokens; 0 disables.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass; 1 disables.")
    repetition_penalty: float = Field(1.0, gt=0.0, le=10.0)
    num_beams: int = Field(1, ge=1, le=8, description="Beam search width (the backend may refuse > 1).")
    stop: list[str] | str | None = Field(None, description="Strings that end the completion.")
    seed: int | None = Field(None, description="Seed for sampling; same seed, same text.")
    stream: bool = Field(False, description="Send the completion piece by piece as server-sent events.")

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: list[str] | str | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > 8 or any(not stop for stop in stops):
            raise ValueError("give at most 8 non-empty stop strings")
        return stops

    def config(self) -> GenerationConfig:
        return GenerationConfig(max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                                top_k=self.top_k, top_p=self.top_p,
                                repetition_penalty=self.repetition_penalty,
                                num_beams=self.num_beams, stop=list(self.stop or []), seed=self.seed)


class GenerateResponse(BaseModel):
    model: str
    backend: str
    text: str
    finish_reason: str
    usage: dict[str, int]
    seconds: float


class Demonstration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    label: str


class Template(BaseModel):
    """How each text and each label are written into the prompt (see `zeroshot.text.prompts`)."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field("Text: {text}\nAnswer:", description="Formats one input; must contain {text}.")
    answer: str = Field(" {answer}", description="Formats one candidate label; must contain {answer}.")
    example_separator: str = "\n\n"

    @field_validator("query")
    @classmethod
    def _has_text(cls, query: str) -> str:
        if "{text}" not in query:
            raise ValueError("the query template must contain {text}")
        return query

    @field_validator("answer")
    @classmethod
    def _has_answer(cls, answer: str) -> str:
        if "{answer}" not in answer:
            raise ValueError("the answer template must contain {answer}")
        return answer


class ClassifyTextRequest(BaseModel):
    """Texts to sort into `labels` by the LM's likelihood of each label (zero- or few-shot)."""

    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(min_length=1, description="The texts to classify.")
    labels: list[str] = Field(min_length=2, description="Candidate labels, as words the LM can read.")
    description: str = Field("", description="What the task is, placed before the text.")
    demonstrations: list[Demonstration] = Field(default_factory=list, description="Few-shot examples.")
    template: Template | None = Field(None, description="Prompt format; None uses the default.")
    normalization: Literal["sum", "token", "char"] = "sum"
    calibrate: bool = Field(False, description="Divide out the labels' prior on a content-free input.")

    @field_validator("labels")
    @classmethod
    def _distinct_labels(cls, labels: list[str]) -> list[str]:
        if any(not label.strip() for label in labels):
            raise ValueError("labels must not be empty")
        if len(set(labels)) != len(labels):
            raise ValueError("labels must be distinct")
        return labels


class TextResult(BaseModel):
    label: str
    scores: dict[str, float]


class ClassifyTextResponse(BaseModel):
    model: str
    labels: list[str]
    results: list[TextResult]


def _resources(request: Request) -> Resources:
    return request.app.state.resources


@router.post("/v1/generate", response_model=GenerateResponse,
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "JSON, or server-sent events when `stream` is true: `data` "
                                             "events with {text}, then one `done` event with usage."}})
async def generate(body: GenerateRequest, request: Request):
    """Complete a prompt with the served LM."""
    resources = _resources(request)
    config = body.config()
    if body.stream:
        return sse_response(_generate_events(await primed(stream_completion(resources, body.prompt, config)),
                                             resources))
    started = time.perf_counter()
    completion = await complete(resources, body.prompt, config)
    lm = resources.lm()
    return GenerateResponse(model=public_name(lm.name), backend=lm.backend, text=completion.text,
                            finish_reason=completion.finish_reason, usage=completion.usage(),
                            seconds=round(time.perf_counter() - started, 4))


async def _generate_events(items: AsyncIterator[str | Completion],
                           resources: Resources) -> AsyncIterator[str]:
    try:
        async for item in items:
            if isinstance(item, Completion):
                lm = resources.lm()
                yield sse_event({"finish_reason": item.finish_reason, "usage": item.usage(),
                                 "model": public_name(lm.name),
                                 "backend": lm.backend}, event="done")
            else:
                yield sse_event({"text": item})
    except UserError as exc:  # headers are gone: the error travels as an event
        yield sse_event({"error": {"message": str(exc), "code": exc.status_code}}, event="error")
    finally:
        await items.aclose()


@router.post("/v1/classify/text", response_model=ClassifyTextResponse)
async def classify_text(body: ClassifyTextRequest, request: Request) -> ClassifyTextResponse:
    """Zero/few-shot text classification; concurrent requests with the same task share one LM call."""
    resources = _resources(request)
    settings = resources.settings
    if len(body.labels) > settings.max_labels_per_request:
        raise UserError(f"{len(body.labels)} labels in one request; this server accepts at most "
                        f"{settings.max_labels_per_request}", 413)
    if len(body.texts) > settings.max_texts_per_request:
        raise UserError(f"{len(body.texts)} texts in one request; this server accepts at most "
                        f"{settings.max_texts_per_request}", 413)
    longest = max(len(text) for text in [*body.texts, *(d.text for d in body.demonstrations)])
    if longest > settings.max_prompt_chars:
        raise UserError(f"a text has {longest:,} characters; this server accepts at most "
                        f"{settings.max_prompt_chars:,} (--max-prompt-chars)", 413)
    unknown = sorted({d.label for d in body.demonstrations} - set(body.labels))
    if unknown:
        raise UserError(f"demonstration labels not among the labels: {', '.join(unknown)}", 422)
    key = (tuple(body.labels), body.description, tuple((d.text, d.label) for d in body.demonstrations),
           None if body.template is None else (body.template.query, body.template.answer,
                                               body.template.example_separator),
           body.normalization, body.calibrate)
    rows = await resources.text_batcher.submit(key, body.texts)
    results = []
    for row in rows:
        scores = {label: round(float(p), 6) for label, p in zip(body.labels, row, strict=True)}
        results.append(TextResult(label=max(scores, key=scores.get), scores=scores))
    return ClassifyTextResponse(model=public_name(resources.lm().name), labels=body.labels, results=results)
