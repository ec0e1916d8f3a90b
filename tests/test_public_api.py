"""The package root: every public name resolves, lazily, and `import zeroshot` loads no model library."""

from __future__ import annotations

import subprocess
import sys

import zeroshot


def test_every_public_name_resolves_to_the_object_its_module_defines():
    import importlib

    for name, module in zeroshot._PUBLIC.items():
        assert getattr(zeroshot, name) is getattr(importlib.import_module(module), name), name
    assert zeroshot.__version__
    assert set(zeroshot.__all__) == {"__version__", *zeroshot._PUBLIC}
    assert set(dir(zeroshot)) >= set(zeroshot._PUBLIC)


def test_import_is_lazy_and_fast():
    code = ("import sys, time; t = time.perf_counter(); import zeroshot; dt = time.perf_counter() - t; "
            "heavy = [m for m in ('torch', 'transformers', 'llama_cpp', 'fastapi') if m in sys.modules]; "
            "print(heavy, dt)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    heavy, seconds = out.rsplit(" ", 1)
    assert heavy == "[]", out
    assert float(seconds) < 1.0, out


def test_unknown_names_are_attribute_errors():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        zeroshot.nope  # noqa: B018
