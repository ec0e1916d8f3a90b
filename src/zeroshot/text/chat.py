"""Chat templates: a list of messages written out with the model's own template, and few-shot prompts
inside it.

The template comes from the model (GGUF metadata `tokenizer.chat_template`, or the Hugging Face
tokenizer config), so the prompt is the one the instruct model was trained on. The rules for valid
messages live here, so the CLI, the HTTP API and Python users refuse the same things.

    >>> lm = load_lm()
    >>> prompt = chat_prompt(lm, [{"role": "user", "content": "Name a colour."}])

Few-shot prompts (`chat_prompt_template`): the task description becomes the system turn, each
demonstration a user turn (the query) and an assistant turn (the answer), and the query a last user turn
followed by the opening of the assistant's turn; each candidate answer then continues that opening. To
keep prefix reuse (every query shares the token ids of the system turn and the demonstrations), the
template is rendered once with marker strings in place of two demonstrations, and cut at the markers
into the pieces a `PromptTemplate` is made of: the opening (system turn and the first user turn's
start), what joins a query to its answer (end of the user turn, start of the assistant turn) and what
joins an answer to the next query (end of the assistant turn, start of the next user turn). A template
that does not repeat turns identically cannot be cut so and is refused with one line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from zeroshot.errors import UserError
from zeroshot.models.lm import LanguageModel
from zeroshot.text.prompts import PromptTemplate

ROLES = ("system", "developer", "user", "assistant")
MAX_MESSAGES = 256


def check_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """`messages` as plain {"role", "content"} dicts, or `UserError` naming the first problem.

    Content is a string or a list of OpenAI text parts ({"type": "text", "text": ...}), which are joined.
    OpenAI's "developer" role is the newer name of "system" and is written as one.
    """
    if not messages:
        raise UserError("messages is empty: give at least one message")
    if len(messages) > MAX_MESSAGES:
        raise UserError(f"{len(messages)} messages; at most {MAX_MESSAGES} are accepted", 413)
    checked = []
    for index, message in enumerate(messages):
        role = message.get("role")
        if role not in ROLES:
            raise UserError(f"messages[{index}].role is {role!r}; use one of {', '.join(ROLES)}")
        checked.append({"role": "system" if role == "developer" else role,
                        "content": _text_of(message.get("content"), index)})
    if checked[-1]["role"] == "assistant":
        raise UserError("the last message is the assistant's: end with a user (or system) message")
    return checked


def _text_of(content: Any, index: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not (isinstance(part, Mapping) and part.get("type") == "text"
                    and isinstance(part.get("text"), str)):
                raise UserError(f"messages[{index}].content: only text parts ({{\"type\": \"text\", "
                                "\"text\": ...}) are supported; this model reads no images or audio")
            parts.append(part["text"])
        return "".join(parts)
    raise UserError(f"messages[{index}].content must be a string or a list of text parts")


def chat_prompt(lm: LanguageModel, messages: Sequence[Mapping[str, Any]]) -> str:
    """The prompt `lm` continues to answer `messages`: its chat template, ending with the assistant's turn."""
    return lm.format_chat(check_messages(messages))


def chat_prompt_ids(lm: LanguageModel, messages: Sequence[Mapping[str, Any]]) -> list[int]:
    """The token ids `lm` continues to answer `messages` (`LanguageModel.chat_ids`): the template's
    markers as special tokens, the contents as plain text, so a message cannot forge a turn."""
    return lm.chat_ids(check_messages(messages))


_Q1, _A1, _Q2, _A2 = "\x01Q1\x01", "\x01A1\x01", "\x01Q2\x01", "\x01A2\x01"


def render_chat(template: str, messages: list[dict], bos: str = "", eos: str = "",
                add_generation_prompt: bool = False) -> str:
    """`messages` rendered by a Jinja chat template, in the sandbox transformers uses."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template).render(messages=messages, bos_token=bos, eos_token=eos,
                                                add_generation_prompt=add_generation_prompt)
    except TemplateError as exc:
        raise UserError(f"the model's chat template failed: {exc}") from None


def chat_prompt_template(lm: LanguageModel, description: str, base: PromptTemplate) -> PromptTemplate:
    """`base` (query and answer formats) wrapped in `lm`'s chat template, with `description` as system turn.

    `UserError` if the model has no chat template or its template cannot be cut into repeated turns.
    """
    if not lm.chat_template:
        raise UserError(f"{lm.name} has no chat template (neither in its GGUF metadata nor in its tokenizer "
                        "config): run without --chat-template")
    messages = [{"role": "system", "content": description}] if description else []
    messages += [{"role": "user", "content": _Q1}, {"role": "assistant", "content": _A1},
                 {"role": "user", "content": _Q2}, {"role": "assistant", "content": _A2}]
    text = render_chat(lm.chat_template, messages, lm.bos_text, lm.eos_text)
    try:
        q1, a1, q2, a2 = (text.index(m) for m in (_Q1, _A1, _Q2, _A2))
    except ValueError:
        raise UserError(f"{lm.name}'s chat template drops message contents; cannot build prompts with it") \
            from None
    opening = text[:q1]
    to_answer = text[q1 + len(_Q1): a1]
    to_next = text[a1 + len(_A1): q2]
    if text[q2 + len(_Q2): a2] != to_answer:
        raise UserError(f"{lm.name}'s chat template formats its turns differently each time; "
                        "cannot share a prompt prefix with it: run without --chat-template")
    if lm.bos_text and opening.startswith(lm.bos_text):
        opening = opening[len(lm.bos_text):]  # the prompt builder adds BOS as a token, not as text
    return replace(base, query=base.query + to_answer, answer=base.answer.lstrip(" "),
                   example_separator=to_next, head=opening, special=True)
