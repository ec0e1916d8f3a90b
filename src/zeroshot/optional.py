"""The optional dependencies, each named once with the extra that installs it and what it is for.

`LLAMA_CPP.available()` answers without importing; `MILVUS.load()` imports or raises one `UserError`
that says which `pip install` line adds it.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType

from zeroshot.errors import UserError


@dataclass(frozen=True)
class OptionalDependency:
    """A module zeroshot uses when it is installed."""

    module: str
    extra: str  # the pyproject extra that installs it: pip install 'zeroshot[extra]'
    purpose: str

    def available(self) -> bool:
        """Whether it is installed (found without importing it)."""
        return importlib.util.find_spec(self.module) is not None

    def load(self) -> ModuleType:
        """The imported module, or a `UserError` saying how to install it."""
        try:
            return importlib.import_module(self.module)
        except ImportError as exc:
            raise UserError(f"{self.purpose} needs {self.module}: pip install 'zeroshot[{self.extra}]' "
                            f"({exc})") from None


LLAMA_CPP = OptionalDependency("llama_cpp", "llama", "the llama.cpp backend")
MILVUS = OptionalDependency("pymilvus", "milvus", "the Milvus vector store")
RAY = OptionalDependency("ray", "ray", "indexing on a Ray cluster (--engine ray)")
OPTIONAL = (LLAMA_CPP, MILVUS, RAY)
