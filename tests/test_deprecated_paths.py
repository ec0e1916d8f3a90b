"""The import paths from before the wings (issue 26) still work for one release, with a warning."""

from __future__ import annotations

import importlib
import sys
import warnings

import pytest

from zeroshot import _deprecated


def _fresh_import(name: str):
    for key in [key for key in sys.modules if key == name or key.startswith(name + ".")]:
        del sys.modules[key]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(name)
    return module, [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]


@pytest.mark.parametrize("old, new", sorted(_deprecated.MOVED.items()))
def test_an_old_module_path_is_the_new_module_with_a_warning(old, new):
    module, messages = _fresh_import(old)
    assert module is importlib.import_module(new)  # the same object: classes and monkeypatching agree
    assert any(old in message and new in message for message in messages), messages


def test_a_module_below_a_moved_package_moves_with_it():
    module, messages = _fresh_import("zeroshot.vision.stores.catalog")
    from zeroshot.search.stores import catalog

    assert module is catalog
    assert module.Catalog is catalog.Catalog
    assert any("zeroshot.search.stores.catalog" in message for message in messages)


def test_old_from_imports_of_public_names_work():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from zeroshot.vision.detect import ZeroShotDetector as OldDetector
        from zeroshot.vision.search import ImageIndex as OldIndex
        from zeroshot.vision.train import train_clip as old_train_clip

        from zeroshot.detect.detector import ZeroShotDetector
        from zeroshot.search.index import ImageIndex
        from zeroshot.train.clip import train_clip

    assert (OldIndex, OldDetector, old_train_clip) == (ImageIndex, ZeroShotDetector, train_clip)


def test_names_that_moved_up_a_layer_warn_and_resolve():
    import zeroshot.text.soft_prompt as inference_half
    from zeroshot.train.soft_prompt import train_soft_prompt

    with pytest.warns(DeprecationWarning, match="zeroshot.train.soft_prompt"):
        assert inference_half.train_soft_prompt is train_soft_prompt
    with pytest.raises(AttributeError):
        inference_half.no_such_name  # noqa: B018 - the attribute access is the test


def test_paths_that_never_existed_are_not_invented():
    assert _deprecated.new_name("zeroshot.vision.classify") is None  # it did not move
    assert _deprecated.new_name("zeroshot.vision.detection") is None  # a prefix, not a module
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("zeroshot.vision.search_that_never_was")
