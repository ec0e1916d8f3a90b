"""The likelihood side of `/v1/completions`: `logprobs`, `echo`, `max_tokens: 0` and token-id prompts.

What lm-evaluation-harness's `local-completions` sends for every likelihood task (`echo`, `logprobs: 1`,
`max_tokens: 1`, token-id prompts). The work is `zeroshot.text.completion.complete_with_logprobs`, the
scoring engine of `classify-text` with its prefix reuse; this module only checks the request and shapes
the answer. Every prompt is checked before any is run, so a bad request costs nothing.
"""

from __future__ import annotations

from typing import Any

from zeroshot.errors import UserError
from zeroshot.models.lm import GenerationConfig
from zeroshot.server.resources import Resources

MAX_LOGPROBS = 5  # OpenAI's own limit for the Completions API


class _BadOption(UserError):
    def __init__(self, message: str, param: str) -> None:
        super().__init__(message, 400)
        self.param = param


def prompt_list(prompt: Any) -> list[str | list[int]]:
    """OpenAI's four prompt forms (text, texts, token ids, lists of token ids) as a list of prompts."""
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return [list(prompt)]
    if isinstance(prompt, list) and prompt and (
            all(isinstance(p, str) for p in prompt)
            or all(isinstance(p, list) and p and all(isinstance(t, int) for t in p) for p in prompt)):
        return list(prompt)
    raise _BadOption("prompt must be a string, a list of strings, a list of token ids or a list of lists of "
                     "token ids (none empty)", "prompt")


def wanted(body, prompts: list) -> bool:
    """Whether the request needs scoring rather than plain generation."""
    return (body.logprobs is not None or bool(body.echo) or body.max_tokens == 0
            or any(not isinstance(p, str) for p in prompts))


async def respond(body, prompts: list, config: GenerationConfig, header: dict[str, Any],
                  resources: Resources) -> dict[str, Any]:
    """The whole response (scored requests are never streamed)."""
    from zeroshot.text.completion import complete_with_logprobs, prompt_ids

    if body.stream:
        what = "echo" if body.echo else "logprobs" if body.logprobs is not None else "prompt"
        raise _BadOption(f"{what} with stream is not supported: send the request with stream false "
                         "(likelihoods come whole)", what if what != "prompt" else "stream")
    if body.logprobs is not None and not 0 <= body.logprobs <= MAX_LOGPROBS:
        raise _BadOption(f"logprobs must be between 0 and {MAX_LOGPROBS}, got {body.logprobs}", "logprobs")
    max_tokens = 16 if body.max_tokens is None else body.max_tokens
    if max_tokens > resources.settings.max_tokens:
        raise _BadOption(f"max_tokens {max_tokens} is over this server's limit of "
                         f"{resources.settings.max_tokens} (--max-tokens)", "max_tokens")
    settings = resources.settings

    def run(lm) -> list:
        for prompt in prompts:  # check all before running any
            if isinstance(prompt, str) and len(prompt) > settings.max_prompt_chars:
                raise UserError(f"the prompt has {len(prompt):,} characters; this server accepts at most "
                                f"{settings.max_prompt_chars:,} (--max-prompt-chars)", 413)
            ids = prompt_ids(lm, prompt)
            lm.check_fits(len(ids), max_tokens)
        return [complete_with_logprobs(lm, prompt, max_tokens, body.logprobs, bool(body.echo), config)
                for prompt in prompts]

    results = await resources.on_lm(run)
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    choices = []
    for index, result in enumerate(results):
        answer = result.to_dict()
        choices.append({"text": answer["text"], "index": index, "logprobs": answer["logprobs"],
                        "finish_reason": answer["finish_reason"]})
        for field, count in answer["usage"].items():
            usage[field] += count
    return {**header, "choices": choices, "usage": usage}
