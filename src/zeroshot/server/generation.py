"""Generation as the HTTP endpoints need it: the server's limits checked, run on the LM's thread.

Shared by `/v1/generate` and the OpenAI-compatible `/v1/completions`, which differ only in their
request and response shapes. Token counting, the context budget and the finish reason are the
library's (`LanguageModel.complete` / `finish`), so the CLI and every route report the same numbers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from zeroshot.errors import UserError
from zeroshot.models.lm import Completion, GenerationConfig
from zeroshot.server.resources import Resources
from zeroshot.server.streaming import iterate_in_executor

__all__ = ["Completion", "check_request_limits", "complete", "stream_completion"]


def check_request_limits(prompt: str, max_new_tokens: int, resources: Resources) -> None:
    """Refuse prompts and token budgets over this server's limits (cheap checks, before queueing)."""
    settings = resources.settings
    if not prompt:
        raise UserError("the prompt is empty")
    if len(prompt) > settings.max_prompt_chars:
        raise UserError(f"the prompt has {len(prompt):,} characters; this server accepts at most "
                        f"{settings.max_prompt_chars:,} (--max-prompt-chars)", 413)
    if max_new_tokens > settings.max_tokens:
        raise UserError(f"max_tokens {max_new_tokens} is over this server's limit of {settings.max_tokens} "
                        f"(--max-tokens)")


async def complete(resources: Resources, prompt: str, config: GenerationConfig) -> Completion:
    """The whole completion of `prompt` under `config`."""
    check_request_limits(prompt, config.max_new_tokens, resources)
    return await resources.on_lm(lambda lm: lm.complete(prompt, config))


async def stream_completion(resources: Resources, prompt: str,
                            config: GenerationConfig) -> AsyncIterator[str | Completion]:
    """The completion's text pieces as they are decoded, then one final `Completion`."""
    check_request_limits(prompt, config.max_new_tokens, resources)

    def pieces():
        lm = resources.lm()
        prompt_tokens = lm.count_prompt_tokens(prompt, config)
        parts: list[str] = []
        for piece in lm.stream(prompt, config):
            parts.append(piece)
            yield piece
        yield lm.finish(prompt_tokens, "".join(parts), len(parts), config)

    async for item in iterate_in_executor(resources.lm_executor, pieces):
        yield item
