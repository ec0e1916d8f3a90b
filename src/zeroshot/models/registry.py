"""A small registry of language-model backends, as lm-evaluation-harness's `register_model` is.

A backend file decorates its `LanguageModel` subclass with `@register_backend("name")`; the loader finds
it by that name. A backend of your own registers the same way and is then chosen with
`load_lm(model, backend="name")`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from zeroshot.errors import UserError
from zeroshot.models.lm import LanguageModel

_BACKENDS: dict[str, type[LanguageModel]] = {}
Backend = TypeVar("Backend", bound=type[LanguageModel])


def register_backend(name: str) -> Callable[[Backend], Backend]:
    """Class decorator: make a `LanguageModel` subclass loadable as backend `name`.

    The class needs a `load(location, kind, **options)` classmethod, where `kind` is "gguf",
    "folder" or "hub" and `location` the file, folder or id.
    """

    def register(cls: Backend) -> Backend:
        if not (isinstance(cls, type) and issubclass(cls, LanguageModel)):
            raise TypeError(f"backend {name!r} must be a LanguageModel subclass, got {cls!r}")
        _BACKENDS[name] = cls
        cls.backend = name
        return cls

    return register


def backend_class(name: str) -> type[LanguageModel]:
    """The class registered as `name`; `UserError` naming the registered ones otherwise."""
    try:
        return _BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(_BACKENDS)) or "none imported yet"
        raise UserError(f"no language-model backend named {name!r} (registered: {known})") from None


def registered_backends() -> list[str]:
    """Names of the backends registered so far."""
    return sorted(_BACKENDS)
