"""Chat: a list of messages written out with the model's own chat template, then completed.

The template comes from the model (GGUF metadata `tokenizer.chat_template`, or the Hugging Face
tokenizer config), so the prompt is the one the instruct model was trained on. The rules for valid
messages live here, so the CLI, the HTTP API and Python users refuse the same things.

    >>> lm = load_lm()
    >>> prompt = chat_prompt(lm, [{"role": "user", "content": "Name a colour."}])
    >>> lm.generate(prompt, GenerationConfig(max_new_tokens=8))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from zeroshot.errors import UserError
from zeroshot.models.lm import LanguageModel

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
