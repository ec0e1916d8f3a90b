"""Generation as the HTTP endpoints need it: the server's limits checked, run on the LM's thread.

Shared by `/v1/generate` and the OpenAI-compatible `/v1/completions`, which differ only in their
request and response shapes. Token counting, the context budget and the finish reason are the
library's (`LanguageModel.generate_from_ids`), so the CLI and every route report the same numbers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from zeroshot.errors import UserError
from zeroshot.models.lm import Completion, GenerationConfig, LanguageModel
from zeroshot.server.resources import Resources
from zeroshot.server.streaming import iterate_in_executor

__all__ = ["Completion", "check_request_limits", "complete", "stream_completion"]


def check_request_limits(prompt: str | Sequence[int], max_new_tokens: int, resources: Resources) -> None:
    """Refuse prompts and token budgets over this server's limits (cheap checks, before queueing).

    A prompt of token ids (a chat's, made by `text.chat.chat_prompt_ids`) is bounded by the model's
    context, checked where it is generated."""
    settings = resources.settings
    if not prompt:
        raise UserError("the prompt is empty")
    if isinstance(prompt, str) and len(prompt) > settings.max_prompt_chars:
        raise UserError(f"the prompt has {len(prompt):,} characters; this server accepts at most "
                        f"{settings.max_prompt_chars:,} (--max-prompt-chars)", 413)
    if max_new_tokens > settings.max_tokens:
        raise UserError(f"max_tokens {max_new_tokens} is over this server's limit of {settings.max_tokens} "
                        f"(--max-tokens)")


def _ids(lm: LanguageModel, prompt: str | Sequence[int], config: GenerationConfig) -> list[int]:
    return lm.prompt_ids(prompt, config) if isinstance(prompt, str) else [int(t) for t in prompt]


async def complete(resources: Resources, prompt: str | Sequence[int], config: GenerationConfig) -> Completion:
    """The whole completion of `prompt` (text, or the token ids to generate from) under `config`."""
    check_request_limits(prompt, config.max_new_tokens, resources)
    return await resources.on_lm(lambda lm: lm.complete_ids(_ids(lm, prompt, config), config))


async def stream_completion(resources: Resources, prompt: str | Sequence[int],
                            config: GenerationConfig) -> AsyncIterator[str | Completion]:
    """The completion's text pieces as they are decoded, then one final `Completion` (the same one
    `complete` returns: `LanguageModel.generate_from_ids` makes both)."""
    check_request_limits(prompt, config.max_new_tokens, resources)

    def pieces():
        lm = resources.lm()
        yield from lm.generate_from_ids(_ids(lm, prompt, config), config)

    async for item in iterate_in_executor(resources.lm_executor, pieces):
        yield item
