"""Old import paths that still work for one release (0.2), with a `DeprecationWarning`.

The wings issue moved search, detection, captioning and training out of `vision/` and `text/`. Rather
than leave a stub file at every old path, one finder on `sys.meta_path` answers each old module name
(and any name below it, such as `zeroshot.vision.stores.catalog`) with the module at its new path: the
same module object, so classes, `isinstance` and monkeypatching agree whichever path a user imported.
The imports are by name at run time, so the architecture contract (`lint-imports`) never sees an
upward import from here. Remove this file and its one call in `zeroshot/__init__.py` in 0.3.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings

# old module -> new module (everything below an old package moves with it)
MOVED = {
    "zeroshot.vision.search": "zeroshot.search.index",
    "zeroshot.vision.indexing": "zeroshot.search.indexing",
    "zeroshot.vision.ray_indexing": "zeroshot.search.ray_indexing",
    "zeroshot.vision.stores": "zeroshot.search.stores",
    "zeroshot.vision.contact_sheet": "zeroshot.search.contact_sheet",
    "zeroshot.vision.detect": "zeroshot.detect.detector",
    "zeroshot.vision.proposals": "zeroshot.detect.proposals",
    "zeroshot.vision.coco": "zeroshot.detect.coco",
    "zeroshot.vision.detect_dataset": "zeroshot.detect.dataset",
    "zeroshot.vision.caption": "zeroshot.caption.captioner",
    "zeroshot.vision.caption_data": "zeroshot.caption.data",
    "zeroshot.vision.train": "zeroshot.train.clip",
    "zeroshot.vision.losses": "zeroshot.train.losses",
    "zeroshot.text.recycle": "zeroshot.train.recycle",
}


def new_name(old: str) -> str | None:
    """The module that `old` now lives at, or None when `old` did not move."""
    for before, after in MOVED.items():
        if old == before or old.startswith(before + "."):
            return after + old[len(before):]
    return None


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec):
        warnings.warn(f"{spec.name} moved to {self.target}; the old path goes in zeroshot 0.3",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module(self.target)

    def exec_module(self, module) -> None:  # the target module is already executed
        return None


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        moved = new_name(fullname)
        if moved is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(moved))


def install() -> None:
    """Answer the old paths (idempotent: `zeroshot` may be imported again after a reload)."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())


def forward_names(module: str, moved: dict[str, str]):
    """A module `__getattr__` for names that moved out of `module` to another module (name -> module).

        __getattr__ = forward_names(__name__, {"train_soft_prompt": "zeroshot.train.soft_prompt"})

    The name is imported at run time, with a `DeprecationWarning`, so a lower wing can keep an old
    name for one release without importing a higher one.
    """

    def __getattr__(name: str):
        target = moved.get(name)
        if target is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(f"{module}.{name} moved to {target}.{name}; the old path goes in zeroshot 0.3",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(target), name)

    return __getattr__
