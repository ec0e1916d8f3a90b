"""Prompt templates for zero-shot image classification, shipped as JSON files next to this module.

A template is a sentence with `{}` where the class name goes ("a photo of a {}."). `get_templates`
takes the name of a shipped set, a path to a file of templates, or a list of templates.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from zeroshot.errors import UserError

_HERE = Path(__file__).parent
PLACEHOLDER = "{}"
DEFAULT_TEMPLATES = "imagenet"


def template_set_names() -> list[str]:
    """Names of the shipped template sets."""
    return sorted(path.stem for path in _HERE.glob("*.json"))


@cache
def _load_set(name: str) -> tuple[str, ...]:
    data = json.loads((_HERE / f"{name}.json").read_text(encoding="utf-8"))
    return tuple(data["templates"])


def describe_template_sets() -> dict[str, str]:
    """Each shipped set's name -> a one-line description with its source."""
    sets = {}
    for name in template_set_names():
        data = json.loads((_HERE / f"{name}.json").read_text(encoding="utf-8"))
        sets[name] = f"{data['description']} ({len(data['templates'])} templates)"
    return sets


def get_templates(name_or_list: str | os.PathLike | Sequence[str] | None = None) -> list[str]:
    """Resolve templates: a shipped set's name ("imagenet", "cifar", ...), a file, or a list.

    A file is JSON (a list, or an object with a "templates" list) or plain text, one template per line.
    `None` gives the CLIP paper's 80 ImageNet templates. Every template must contain `{}` (or `{label}`).
    """
    if name_or_list is None:
        return list(_load_set(DEFAULT_TEMPLATES))
    if isinstance(name_or_list, str | os.PathLike):
        text = str(name_or_list)
        if text in template_set_names():
            return list(_load_set(text))
        path = Path(text).expanduser()
        if path.is_file():
            return _check(_read_file(path), str(path))
        if PLACEHOLDER in text or "{label}" in text:
            return _check([text], "the template")
        raise UserError(f"unknown templates {text!r}: give a file, a template containing {{}}, or one of "
                        f"{', '.join(template_set_names())}")
    return _check(list(name_or_list), "the templates")


def _read_file(path: Path) -> list[str]:
    from zeroshot.vision.results import read_string_list

    return read_string_list(path, "templates", json_key="templates")


def _check(templates: list[str], where: str) -> list[str]:
    templates = [template.replace("{label}", PLACEHOLDER) for template in templates]
    if not templates:
        raise UserError(f"{where}: no templates given")
    for template in templates:
        if template.count(PLACEHOLDER) != 1:
            raise UserError(f"{where}: template {template!r} must contain {{}} exactly once, "
                            "where the label goes")
    return templates


def fill(template: str, label: str) -> str:
    """The prompt for one label: `template` with `{}` replaced (other braces are left alone)."""
    return template.replace(PLACEHOLDER, label)


IMAGENET_TEMPLATES: list[str] = list(_load_set("imagenet"))
