"""What one request may cost: list caps and per-route work estimates, checked before any route runs.

`RequestGuard` decodes every body once (JSON, or the fields of a multipart form) and calls
`check_request` with the result, so these rules hold for every content type and field alike:
- list caps: each top-level list field (`ServerSettings.list_caps`, e.g. `queries`, `labels`, `texts`,
  `messages`, `input`) and any list anywhere (`max_list_items`); a 413 names the field, its count and
  the setting;
- work estimates: a route's cost from its list counts (text prompts to encode, LM scorings), checked
  against its budget before the work starts. Each model has one worker thread, so one request that
  held it for minutes would starve every other request of that model.
The numbers live in `ServerSettings`, once; the counting lives here, once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from zeroshot.errors import UserError
from zeroshot.server.settings import ServerSettings

# Fields that may hold one sequence of token ids (a list of ints is one prompt, not many items).
TOKEN_ID_FIELDS = frozenset({"prompt", "input"})


def item_count(name: str, value: Any) -> int:
    """How many items the top-level field `name` carries: a string is one, a list its length (a flat
    list of token ids in a field that takes them is one sequence), anything else none."""
    if isinstance(value, str):
        return 1
    if isinstance(value, list):
        if name in TOKEN_ID_FIELDS and value and all(type(item) is int for item in value):
            return 1
        return len(value)
    return 0


def check_request(settings: ServerSettings, path: str, data: Any) -> None:
    """Refuse (413 `UserError`) a decoded request body to `path` that carries more than this server
    allows: too many items in a list, or more work than the route's budget."""
    _check_every_list(data, settings.max_list_items)
    if not isinstance(data, Mapping):
        return
    caps = settings.list_caps(path)
    counts = {name: item_count(name, value) for name, value in data.items() if isinstance(name, str)}
    for name, count in counts.items():
        if name in caps and count > caps[name][0]:
            limit, option = caps[name]
            raise UserError(f"{count:,} {name} in one request; this server accepts at most {limit:,} "
                            f"(its {option})", 413)
    estimate = WORK_ESTIMATES.get(path)
    if estimate is not None:
        estimate(settings, data, counts)


def _check_every_list(data: Any, limit: int) -> None:
    stack = [data]
    while stack:  # iterative: the guard bounds depth, but a walk should not lean on that
        item = stack.pop()
        if isinstance(item, list):
            if len(item) > limit:
                raise UserError(f"a list of {len(item):,} items in one request; this server accepts at "
                                f"most {limit:,} (its max_list_items)", 413)
            stack.extend(value for value in item if isinstance(value, list | dict))
        elif isinstance(item, Mapping):
            stack.extend(value for value in item.values() if isinstance(value, list | dict))


def label_prompts(settings: ServerSettings, labels: int, templates: int, what: str = "labels",
                  extra: str = "") -> None:
    """Refuse a request whose `labels` x `templates` text prompts (CLIP encodings) exceed
    `max_label_prompts`: the cost of a classifier's or detector's class weights."""
    prompts = labels * templates
    if prompts > settings.max_label_prompts:
        raise UserError(f"{labels:,} {what}{extra} x {templates} templates = {prompts:,} prompts to "
                        f"encode; this server encodes at most {settings.max_label_prompts:,} per request "
                        f"(its max_label_prompts: give fewer {what} or templates)", 413)


def _template_count(data: Mapping[str, Any]) -> int:
    templates = data.get("templates")
    if isinstance(templates, list) and templates:
        return len(templates)
    from zeroshot.vision.templates import get_templates

    return len(get_templates(None))  # the default set (CLIP's 80)


def _classify_image(settings: ServerSettings, data: Mapping[str, Any], counts: Mapping[str, int]) -> None:
    label_prompts(settings, counts.get("labels", 0), _template_count(data))


def _detect(settings: ServerSettings, data: Mapping[str, Any], counts: Mapping[str, int]) -> None:
    from zeroshot.detect.detector import DEFAULT_BACKGROUND_PROMPTS

    queries = counts.get("queries", 0)
    if queries:  # the detector encodes its queries and background prompts with every default template
        background = len(DEFAULT_BACKGROUND_PROMPTS)
        label_prompts(settings, queries + background, _template_count({}), "queries",
                      f" (with {background} background prompts)")


def _classify_text(settings: ServerSettings, data: Mapping[str, Any], counts: Mapping[str, int]) -> None:
    texts, labels = counts.get("texts", 0), counts.get("labels", 0)
    if texts * labels > settings.max_text_label_pairs:  # one LM scoring per (text, label)
        raise UserError(f"{texts:,} texts x {labels:,} labels = {texts * labels:,} scorings; this server "
                        f"scores at most {settings.max_text_label_pairs:,} per request (its "
                        "max_text_label_pairs: send fewer texts per request)", 413)


WORK_ESTIMATES: dict[str, Callable[[ServerSettings, Mapping[str, Any], Mapping[str, int]], None]] = {
    "/v1/classify/image": _classify_image,
    "/v1/detect": _detect,
    "/v1/classify/text": _classify_text,
}
