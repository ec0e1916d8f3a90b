"""Text endpoints: `/v1/generate` (with streaming) and `/v1/classify/text` (micro-batched)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from zeroshot.errors import UserError
from zeroshot.models.lm import GenerationConfig
from zeroshot.server.generation import Completion, complete, stream_completion
from zeroshot.server.resources import Resources, TextTask, unprocessable
from zeroshot.server.streaming import primed, sse_event, sse_response
from zeroshot.text.prompts import PromptTemplate
from zeroshot.text.scoring import check_normalization
from zeroshot.validation import DEFAULT_CALIBRATE, check_calibrate, check_labels

router = APIRouter(tags=["text"])


class GenerateRequest(BaseModel):
    """A prompt and the decoding options of `GenerationConfig`, under OpenAI's and Hugging Face's names.

    Values are checked by `GenerationConfig.from_options`, the same check the CLI's `generate` runs.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    prompt: str = Field(description="Text to continue.")
    max_tokens: int = Field(64, validation_alias=AliasChoices("max_tokens", "max_new_tokens"),
                            description="Most tokens to generate (capped by the server's --max-tokens). "
                                        "`max_new_tokens` is accepted as a deprecated alias.")
    temperature: float = Field(0.0, description="0 is greedy decoding.")
    top_k: int = Field(0, description="Sample from the k most likely tokens; 0 disables.")
    top_p: float = Field(1.0, description="Nucleus sampling mass; 1 disables.")
    repetition_penalty: float = Field(1.0, description="1 disables.")
    num_beams: int = Field(1, description="Beam search width (the backend may refuse > 1).")
    stop: list[str] | str | None = Field(None, description="Strings that end the completion.")
    seed: int | None = Field(None, description="Seed for sampling; same seed, same text.")
    stream: bool = Field(False, description="Send the completion piece by piece as server-sent events.")

    def config(self) -> GenerationConfig:
        with unprocessable():
            return GenerationConfig.from_options(**self.model_dump(exclude={"prompt", "stream"}))


class Demonstration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    label: str


class Template(BaseModel):
    """How each text and each label go into the prompt (checked by `text.prompts.PromptTemplate`)."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field("Text: {text}\nAnswer:", description="Formats one input; must contain {text}.")
    answer: str = Field(" {answer}", description="Formats one candidate label; must contain {answer}.")
    example_separator: str = "\n\n"


class ClassifyTextRequest(BaseModel):
    """Texts to sort into `labels` by the LM's likelihood of each label (zero- or few-shot).

    Labels, template and normalization are checked by the library, as for `zeroshot classify-text`.
    """

    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(min_length=1, description="The texts to classify.")
    labels: list[str] = Field(description="Candidate labels (at least two), as words the LM can read.")
    description: str = Field("", description="What the task is, placed before the text.")
    demonstrations: list[Demonstration] = Field(default_factory=list, description="Few-shot examples.")
    template: Template | None = Field(None, description="Prompt format; None uses the default.")
    normalization: str = Field("sum", description="sum, token or char.")
    calibrate: bool | str = Field(
        DEFAULT_CALIBRATE,
        description="Divide out the labels' prior on a content-free input: auto, on or off (true and "
                    "false mean on and off); auto chooses by leave-one-out on the demonstrations, and "
                    "scores plain without any.")

    def task(self) -> TextTask:
        with unprocessable():
            return self._task()

    def _task(self) -> TextTask:
        return TextTask(labels=tuple(check_labels(self.labels)), description=self.description,
                        demonstrations=tuple((d.text, d.label) for d in self.demonstrations),
                        template=(None if self.template is None
                                  else PromptTemplate(**self.template.model_dump())),
                        normalization=check_normalization(self.normalization),
                        calibrate=check_calibrate(self.calibrate, "calibrate"))


def _resources(request: Request) -> Resources:
    return request.app.state.resources


@router.post("/v1/generate",
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "`Completion.to_dict()` as JSON, or server-sent events when "
                                             "`stream` is true: `data` events with {text}, then one `done` "
                                             "event with the completion's fields but its text."}})
async def generate(body: GenerateRequest, request: Request):
    """Complete a prompt with the served LM."""
    resources = _resources(request)
    config = body.config()
    if body.stream:
        return sse_response(_generate_events(await primed(stream_completion(resources, body.prompt, config))))
    return (await complete(resources, body.prompt, config)).to_dict()


async def _generate_events(items: AsyncIterator[str | Completion]) -> AsyncIterator[str]:
    try:
        async for item in items:
            if isinstance(item, Completion):
                yield sse_event({k: v for k, v in item.to_dict().items() if k != "text"}, event="done")
            else:
                yield sse_event({"text": item})
    except UserError as exc:  # headers are gone: the error travels as an event
        yield sse_event({"error": {"message": str(exc), "code": exc.status_code}}, event="error")
    finally:
        await items.aclose()


@router.post("/v1/classify/text")
async def classify_text(body: ClassifyTextRequest, request: Request) -> dict:
    """Zero/few-shot text classification (`TextClassification.to_dict()`); concurrent requests for the
    same task share one LM call."""
    resources = _resources(request)
    settings = resources.settings
    task = body.task()
    if len(task.labels) > settings.max_labels_per_request:
        raise UserError(f"{len(task.labels)} labels in one request; this server accepts at most "
                        f"{settings.max_labels_per_request}", 413)
    if len(body.texts) > settings.max_texts_per_request:
        raise UserError(f"{len(body.texts)} texts in one request; this server accepts at most "
                        f"{settings.max_texts_per_request}", 413)
    longest = max(len(text) for text in [*body.texts, *(d.text for d in body.demonstrations)])
    if longest > settings.max_prompt_chars:
        raise UserError(f"a text has {longest:,} characters; this server accepts at most "
                        f"{settings.max_prompt_chars:,} (--max-prompt-chars)", 413)
    unknown = sorted({d.label for d in body.demonstrations} - set(task.labels))
    if unknown:
        raise UserError(f"demonstration labels not among the labels: {', '.join(unknown)}", 422)
    rows = await resources.text_batcher.submit(task, body.texts)
    classifier = resources.text_classifier(task)
    return classifier.result(body.texts, rows).to_dict()
