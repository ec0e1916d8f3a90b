"""Evaluation tasks: JSONL files and the built-in BBC News task.

A task file keeps the prompt format apart from the scoring, as lm-evaluation-harness does. It is
JSON Lines, one document per line, with an optional first line ``{"config": {...}}``:

    {"config": {"description": "Classify the sentiment of each review.",
                "doc_to_text": "Review: {text}\\nSentiment:", "doc_to_target": "{label}",
                "doc_to_choice": ["negative", "positive"], "max_chars": 800}}
    {"text": "A delight from start to finish.", "label": "positive", "split": "train"}
    {"text": "Two hours I will not get back.", "label": "negative"}

- ``doc_to_text`` formats a document's fields into the query (``{field}`` placeholders);
  ``doc_to_target`` formats the correct answer; ``doc_to_choice`` is either a list (the label set of a
  classification task) or the name of a field holding each document's own choices (multiple choice;
  its target may be the choice text or its 0-based index). Without ``doc_to_choice`` the task is
  free-form: the greedy generation goes through the config's ``filters`` and is scored by its
  ``metrics`` (`zeroshot.eval.extract`: first line, strip, regex capture; case/punctuation folding;
  exact match and "contains"). ``stop`` (free-form: a list of up to 4 strings) ends each generation
  where one appears; without it an answer ends at a newline, or inside a chat template at the end of
  the turn. ``"chat_template": true`` puts the description, demonstrations and query into the model's
  own chat template (see `zeroshot.text.chat`).
- Without a config line the kind is inferred: a ``choices`` field means multiple choice, a ``label``
  field classification (labels = the distinct labels, sorted), else free-form on ``question``/``answer``.
- Documents with ``"split": "train"`` form the demonstration pool and the rest are evaluated. Without
  any split field, a fixed 20% of the documents (seeded shuffle with seed 0, so the same on every run)
  becomes the pool.
- ``max_chars`` (default none) shortens every string field to that many characters before
  formatting (see `zeroshot.text.prompts.truncate_text`), so long inputs never force a prompt to cut
  the query.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zeroshot.errors import UserError
from zeroshot.eval.extract import AnswerExtractor, parse_extractor
from zeroshot.text.prompts import Demonstration, PromptTemplate, truncate_text
from zeroshot.validation import check_labels

KINDS = ("classification", "multiple_choice", "free_form")
POOL_SPLITS = ("train", "validation", "dev")
BUILTIN_TASKS = ("bbc-news",)
_CONFIG_KEYS = {
    "description",
    "doc_to_text",
    "doc_to_target",
    "doc_to_choice",
    "target_delimiter",
    "example_separator",
    "max_chars",
    "name",
    "filters",
    "ignore_case",
    "ignore_punctuation",
    "metrics",
    "chat_template",
    "stop",
}


@dataclass(frozen=True)
class Doc:
    """One formatted document: its query, its correct answer and, unless free-form, its choices."""

    line: int  # line number in the file (1-based), or the article's position for built-in data
    query: str
    target: str
    choices: tuple[str, ...] | None = None

    def as_demonstration(self) -> Demonstration:
        return Demonstration(self.query, self.target)


@dataclass
class Task:
    """A task ready to evaluate: prompt format, demonstration pool and evaluation documents."""

    name: str
    kind: str
    description: str
    template: PromptTemplate
    pool: list[Doc]
    docs: list[Doc]
    labels: list[str] = field(default_factory=list)  # classification only
    extractor: AnswerExtractor = field(default_factory=AnswerExtractor)  # free-form only
    chat_template: bool = False  # put description, demonstrations and query in the model's chat template
    stop: tuple[str, ...] | None = None  # free-form: the task's stop sequences; None: the default

    def demonstration_pool(self) -> list[Demonstration]:
        """The pool as demonstrations (query, correct answer)."""
        return [doc.as_demonstration() for doc in self.pool]

    def check_shots(self, shots: list[int]) -> None:
        """`UserError` if any K is negative or larger than the demonstration pool."""
        for k in shots:
            if k < 0:
                raise UserError(f"--shots values must be 0 or more, got {k}")
            if k > len(self.pool):
                raise UserError(
                    f"K={k} demonstrations requested but task {self.name!r} has only "
                    f"{len(self.pool)} in its demonstration pool"
                )


def _format(template: str, doc: dict[str, Any], line: int, what: str) -> str:
    try:
        return template.format_map(doc)
    except KeyError as exc:
        raise UserError(
            f"line {line}: {what} needs the field {exc.args[0]!r}, which this line lacks"
        ) from None
    except (ValueError, IndexError) as exc:
        raise UserError(f"{what} template {template!r} is malformed: {exc}") from None


def _read_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise UserError(f"task file not found: {path} (or use a built-in task: {', '.join(BUILTIN_TASKS)})")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(
            f"{path} is not UTF-8 text (line {line}, byte {exc.start}): save it as UTF-8"
        ) from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(
                f"{path}, line {number}: not valid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        if not isinstance(row, dict):
            raise UserError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}")
        rows.append((number, row))
    return rows


def _infer_config(docs: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    first = docs[0][1]
    if "choices" in first:
        return {
            "doc_to_text": "Question: {question}\nAnswer:",
            "doc_to_target": "{answer}",
            "doc_to_choice": "choices",
        }
    if "label" in first:
        labels = sorted({str(row.get("label")) for _, row in docs if "label" in row})
        return {"doc_to_text": "Text: {text}\nLabel:", "doc_to_target": "{label}", "doc_to_choice": labels}
    return {"doc_to_text": "Question: {question}\nAnswer:", "doc_to_target": "{answer}"}


def _shorten(row: dict[str, Any], max_chars: int | None) -> dict[str, Any]:
    return {k: truncate_text(v, max_chars) if isinstance(v, str) and max_chars else v for k, v in row.items()}


def _mc_target(row: dict[str, Any], choices: list[str], target_template: str, line: int) -> str:
    field_name = target_template.strip("{}") if target_template.startswith("{") else None
    raw = row.get(field_name) if field_name else None
    if isinstance(raw, int) and not isinstance(raw, bool):
        if not 0 <= raw < len(choices):
            raise UserError(f"line {line}: answer index {raw} is outside the {len(choices)} choices")
        return choices[raw]
    target = _format(target_template, row, line, "doc_to_target")
    if target not in choices:
        raise UserError(f"line {line}: the answer {target!r} is not one of its choices")
    return target


def load_examples(path: str | Path) -> list[Demonstration]:
    """Labelled examples from a JSONL file of {"text": ..., "label": ...} lines (a config line is skipped)."""
    path = Path(path)
    examples = []
    for number, row in _read_lines(path):
        if "config" in row:
            continue
        if not isinstance(row.get("text"), str) or not isinstance(row.get("label"), str | int):
            raise UserError(f'{path}, line {number}: an example needs a "text" string and a "label"')
        examples.append(Demonstration(row["text"], str(row["label"])))
    if not examples:
        raise UserError(f"{path} holds no examples")
    return examples


def load_task(name_or_path: str | Path, max_chars: int | None = None) -> Task:
    """A built-in task by name (``bbc-news``) or a JSONL task file; `max_chars` overrides the file's."""
    if str(name_or_path) in BUILTIN_TASKS:
        return bbc_news_task(max_chars=max_chars or BBC_MAX_CHARS)
    path = Path(name_or_path)
    rows = _read_lines(path)
    config: dict[str, Any] = {}
    if rows and "config" in rows[0][1]:
        config = rows[0][1]["config"]
        if not isinstance(config, dict):
            raise UserError(f'{path}, line {rows[0][0]}: "config" must be a JSON object')
        unknown = sorted(set(config) - _CONFIG_KEYS)
        if unknown:
            raise UserError(
                f"{path}, line {rows[0][0]}: unknown config keys {', '.join(unknown)} "
                f"(known: {', '.join(sorted(_CONFIG_KEYS))})"
            )
        rows = rows[1:]
    if not rows:
        raise UserError(f"{path} holds no documents")
    config = {**_infer_config(rows), **config}
    if max_chars is None:
        max_chars = config.get("max_chars")
    choice_spec = config.get("doc_to_choice")
    if isinstance(choice_spec, list):
        kind, labels = "classification", check_labels(choice_spec)
    elif isinstance(choice_spec, str):
        kind, labels = "multiple_choice", []
    elif choice_spec is None:
        kind, labels = "free_form", []
    else:
        raise UserError(f"{path}: doc_to_choice must be a list of labels or the name of a field")

    pool, docs = [], []
    for number, raw_row in rows:
        row = _shorten(raw_row, max_chars)
        query = _format(config["doc_to_text"], row, number, "doc_to_text")
        if kind == "multiple_choice":
            choices = row.get(choice_spec)
            if not isinstance(choices, list):
                raise UserError(f"{path}, line {number}: field {choice_spec!r} must be a list of choices")
            try:
                choices = check_labels(str(c) for c in choices)
            except UserError as exc:
                raise UserError(f"{path}, line {number}: {exc}") from None
            doc = Doc(
                number, query, _mc_target(row, choices, config["doc_to_target"], number), tuple(choices)
            )
        else:
            target = _format(config["doc_to_target"], row, number, "doc_to_target")
            if kind == "classification" and target not in labels:
                raise UserError(f"{path}, line {number}: label {target!r} is not one of {', '.join(labels)}")
            doc = Doc(number, query, target, tuple(labels) if labels else None)
        (pool if raw_row.get("split") in POOL_SPLITS else docs).append(doc)

    if not pool and not any("split" in row for _, row in rows):
        order = list(range(len(docs)))
        random.Random(0).shuffle(order)
        pool_idx = set(order[: len(docs) // 5])
        pool = [d for i, d in enumerate(docs) if i in pool_idx]
        docs = [d for i, d in enumerate(docs) if i not in pool_idx]
    if not docs:
        raise UserError(f"{path}: every document is in the demonstration pool; none is left to evaluate")
    template = PromptTemplate(
        query="{text}",
        answer=config.get("target_delimiter", " ") + "{answer}",
        example_separator=config.get("example_separator", "\n\n"),
    )
    extractor = parse_extractor(config, str(path))
    if not isinstance(config.get("chat_template", False), bool):
        raise UserError(f"{path}: chat_template must be true or false")
    stop = config.get("stop")
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise UserError(f'{path}: stop must be a list of strings, e.g. ["\\n\\n"]')
    if stop is not None and kind != "free_form":
        raise UserError(f"{path}: stop is for free-form tasks; a {kind.replace('_', ' ')} task generates "
                        "nothing")
    return Task(
        config.get("name", path.stem), kind, config.get("description", ""), template, pool, docs, labels,
        extractor, config.get("chat_template", False), None if stop is None else tuple(stop),
    )


# ---------------------------------------------------------------------------------------------------
# The built-in BBC News task

BBC_MAX_CHARS = 400  # characters of title + body per article: ~90 tokens, so K=8 fits easily
BBC_TEST_FRACTION = 0.2
BBC_SPLIT_SEED = 2225  # fixed forever: the held-out split must not move between runs
BBC_DESCRIPTION = (
    "Classify each BBC News article by its topic: business, entertainment, politics, sport or technology."
)


def bbc_news_task(max_chars: int = BBC_MAX_CHARS) -> Task:
    """The BBC News corpus as a 5-way classification task with a fixed held-out split.

    Per topic, a seeded shuffle (seed 2225) puts 20% of the articles in the test split (444 in all)
    and the rest in the demonstration pool (1,781); the test split is then shuffled with the same
    seed, so ``--limit N`` evaluates a fixed, topic-mixed subset. Each article's title and body are
    shortened to `max_chars` characters.
    """
    from zeroshot.eval.datasets import load_bbc_news

    rng = random.Random(BBC_SPLIT_SEED)
    articles = load_bbc_news()
    labels = sorted({a.label for a in articles})
    template = PromptTemplate(query="Article: {text}\nTopic:", answer=" {answer}", example_separator="\n\n")
    pool, test = [], []
    for label in labels:
        topic = [a for a in articles if a.label == label]
        rng.shuffle(topic)
        n_test = round(len(topic) * BBC_TEST_FRACTION)
        test.extend(topic[:n_test])
        pool.extend(topic[n_test:])
    rng.shuffle(test)
    position = {a.id: i for i, a in enumerate(articles)}

    def doc(article) -> Doc:
        return Doc(position[article.id], truncate_text(article.text, max_chars), article.label, tuple(labels))

    # The query template is applied by the prompt builder, so docs hold the bare (shortened) article text.
    return Task(
        "bbc-news",
        "classification",
        BBC_DESCRIPTION,
        template,
        [doc(a) for a in pool],
        [doc(a) for a in test],
        labels,
    )
