"""Answer extraction and metrics for free-form tasks, as lm-evaluation-harness's filters do.

A task file sets them in its config line:

    {"config": {"filters": ["first_line", "strip", {"regex": "([A-Z]{3})"}],
                "ignore_case": true, "ignore_punctuation": true,
                "metrics": ["exact_match", "contains"]}}

Filters run in order on the greedy generation: ``first_line`` keeps the text before the first newline,
``strip`` removes surrounding white space, ``{"regex": PATTERN, "group": N}`` keeps capture group N
(default 1, or the whole match when the pattern has no group) of the first match, and an empty string
when nothing matches. The metrics then compare the extracted answer with the target after the same
case and punctuation folding: ``exact_match`` (equal) and ``contains`` (the target appears in the
answer). Every metric is reported under its name.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import Any

from zeroshot.errors import UserError

METRICS = ("exact_match", "contains")
DEFAULT_FILTERS = ("first_line", "strip")
_PUNCT = str.maketrans("", "", string.punctuation)


@dataclass(frozen=True)
class Filter:
    """One step: "first_line", "strip" or "regex" (with its compiled pattern and group)."""

    name: str
    pattern: re.Pattern | None = None
    group: int = 1

    def apply(self, text: str) -> str:
        if self.name == "first_line":
            return text.split("\n", 1)[0]
        if self.name == "strip":
            return text.strip()
        match = self.pattern.search(text)
        if match is None:
            return ""
        return match.group(self.group) if self.pattern.groups else match.group(0)

    def to_json(self) -> Any:
        if self.name == "regex":
            return {"regex": self.pattern.pattern, "group": self.group}
        return self.name


@dataclass(frozen=True)
class AnswerExtractor:
    """Filters, folding options and metrics of a free-form task."""

    filters: tuple[Filter, ...] = field(default_factory=lambda: tuple(Filter(n) for n in DEFAULT_FILTERS))
    ignore_case: bool = False
    ignore_punctuation: bool = False
    metrics: tuple[str, ...] = METRICS

    def extract(self, generation: str) -> str:
        """The answer the filters keep from `generation`."""
        for step in self.filters:
            generation = step.apply(generation)
        return generation

    def fold(self, text: str) -> str:
        """`text` as the metrics compare it (case and punctuation folded as configured)."""
        if self.ignore_case:
            text = text.lower()
        if self.ignore_punctuation:
            text = text.translate(_PUNCT)
        return " ".join(text.split())

    def score(self, answer: str, target: str) -> dict[str, bool]:
        """Each metric's verdict for one extracted answer."""
        a, t = self.fold(answer), self.fold(target)
        verdicts = {"exact_match": a == t, "contains": bool(t) and t in a}
        return {name: verdicts[name] for name in self.metrics}

    def to_json(self) -> dict:
        return {"filters": [f.to_json() for f in self.filters], "ignore_case": self.ignore_case,
                "ignore_punctuation": self.ignore_punctuation, "metrics": list(self.metrics)}


def parse_extractor(config: dict[str, Any], where: str) -> AnswerExtractor:
    """The extractor a task config asks for; `UserError` (naming `where`) for anything malformed."""
    raw_filters = config.get("filters", list(DEFAULT_FILTERS))
    if not isinstance(raw_filters, list):
        raise UserError(f"{where}: filters must be a list, e.g. [\"first_line\", \"strip\"]")
    filters = []
    for item in raw_filters:
        if item in ("first_line", "strip"):
            filters.append(Filter(item))
        elif isinstance(item, dict) and isinstance(item.get("regex"), str):
            try:
                pattern = re.compile(item["regex"])
            except re.error as exc:
                raise UserError(f"{where}: the filter regex {item['regex']!r} does not compile: {exc}") \
                    from None
            group = item.get("group", 1)
            if not isinstance(group, int) or group < 0 or (pattern.groups and group > pattern.groups):
                raise UserError(f"{where}: regex group {group!r} does not exist in {item['regex']!r}")
            filters.append(Filter("regex", pattern, group))
        else:
            raise UserError(f"{where}: unknown filter {item!r}: use \"first_line\", \"strip\" or "
                            "{\"regex\": PATTERN, \"group\": N}")
    metrics = config.get("metrics", list(METRICS))
    if not isinstance(metrics, list) or not metrics or any(m not in METRICS for m in metrics):
        raise UserError(f"{where}: metrics must be a non-empty list from {', '.join(METRICS)}, "
                        f"got {metrics!r}")
    for key in ("ignore_case", "ignore_punctuation"):
        if not isinstance(config.get(key, False), bool):
            raise UserError(f"{where}: {key} must be true or false")
    return AnswerExtractor(tuple(filters), config.get("ignore_case", False),
                           config.get("ignore_punctuation", False), tuple(metrics))
