"""Generation as the HTTP endpoints need it: limits checked, run on the LM's thread, usage counted.

Shared by `/v1/generate` and the OpenAI-compatible `/v1/completions`, which differ only in their
request and response shapes. The decoding itself is `LanguageModel.generate` / `.stream`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from zeroshot.errors import UserError
from zeroshot.server.resources import Resources
from zeroshot.server.streaming import iterate_in_executor


@dataclass
class Completion:
    """A finished completion and what it cost."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "length" when it used all `max_new_tokens`, else "stop"

    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


def check_request_limits(prompt: str, max_new_tokens: int, resources: Resources) -> None:
    """Refuse prompts and token budgets over the server's limits (cheap checks, before queueing)."""
    settings = resources.settings
    if not prompt:
        raise UserError("the prompt is empty")
    if len(prompt) > settings.max_prompt_chars:
        raise UserError(f"the prompt has {len(prompt):,} characters; this server accepts at most "
                        f"{settings.max_prompt_chars:,} (--max-prompt-chars)", 413)
    if max_new_tokens > settings.max_tokens:
        raise UserError(f"max tokens {max_new_tokens} is over this server's limit of {settings.max_tokens} "
                        f"(--max-tokens)")


def _prompt_tokens(lm, prompt: str, max_new_tokens: int) -> int:
    count = len(lm.tokenize(prompt, add_bos=True))
    if count + max_new_tokens > lm.context_length:
        raise UserError(f"the prompt ({count} tokens) plus {max_new_tokens} new tokens is more than the "
                        f"model's context of {lm.context_length} tokens")
    return count


def _finish(lm, prompt_tokens: int, text: str, pieces: int, max_new_tokens: int) -> Completion:
    completion_tokens = max(pieces, len(lm.tokenize(text))) if text else 0
    reason = "length" if completion_tokens >= max_new_tokens else "stop"
    return Completion(text, prompt_tokens, completion_tokens, reason)


async def complete(resources: Resources, prompt: str, config) -> Completion:
    """The whole completion of `prompt` under `config` (a `GenerationConfig`)."""
    check_request_limits(prompt, config.max_new_tokens, resources)

    def work(lm) -> Completion:
        prompt_tokens = _prompt_tokens(lm, prompt, config.max_new_tokens)
        text = lm.generate(prompt, config)
        return _finish(lm, prompt_tokens, text, 0, config.max_new_tokens)

    return await resources.on_lm(work)


async def stream_completion(resources: Resources, prompt: str, config) -> AsyncIterator[str | Completion]:
    """The completion's text pieces as they are decoded, then one final `Completion`."""
    check_request_limits(prompt, config.max_new_tokens, resources)

    def pieces():
        lm = resources.lm()
        prompt_tokens = _prompt_tokens(lm, prompt, config.max_new_tokens)
        parts: list[str] = []
        for piece in lm.stream(prompt, config):
            parts.append(piece)
            yield piece
        yield _finish(lm, prompt_tokens, "".join(parts), len(parts), config.max_new_tokens)

    async for item in iterate_in_executor(resources.lm_executor, pieces):
        yield item
