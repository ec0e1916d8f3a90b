"""Issue 20, few-shot files: a tampered file is refused on load with one `UserError`, whole.

Before, such files raised KeyError/TypeError/OverflowError, set arbitrary attributes from the header,
or loaded and then predicted NaN, failed at predict time, or silently mislabelled.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from zeroshot.errors import UserError
from zeroshot.fewshot import KernelAdapter, LinearProbe, TipAdapter, ZeroShotHead
from zeroshot.fewshot.persistence import load_estimator, save_estimator


def _fitted(kind: str):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8))
    X = np.concatenate([centre + 0.1 * rng.normal(size=(6, 8)) for centre in centres])
    y = np.repeat(["a", "b", "c"], 6)
    prior = ZeroShotHead(centres, ["a", "b", "c"]).fit(X[:1])
    return {"head": prior, "linear": LinearProbe(C=1.0).fit(X, y),
            "kernel": KernelAdapter(prior=prior, early_stopping=None, max_steps=5).fit(X, y),
            "tip": TipAdapter(prior=prior).fit(X, y)}[kind]


def _tampered(tmp_path, kind: str, header_change=None, tensor_change=None):
    path = save_estimator(_fitted(kind), tmp_path / f"{kind}.safetensors")
    with safe_open(str(path), framework="numpy") as handle:
        metadata = dict(handle.metadata())
    header = json.loads(metadata["estimator"])
    tensors = load_file(str(path))
    if header_change:
        header_change(header)
    if tensor_change:
        tensor_change(tensors)
    metadata["estimator"] = json.dumps(header)
    save_file(tensors, str(path), metadata=metadata)
    return path


def _set(key, value):
    return lambda header: header.__setitem__(key, value)


@pytest.mark.parametrize("kind, header_change, tensor_change, words", [
    ("head", lambda h: h.pop("classes"), None, "keys"),                            # was KeyError
    ("linear", _set("params", 5), None, "not parameters"),                          # was TypeError
    ("linear", lambda h: h["params"].update(evil=1), None, "not parameters"),       # was TypeError
    ("kernel", _set("n_features_in", float("inf")), None, "n_features_in"),        # was OverflowError
    ("kernel", lambda h: h["fitted"].update(predict_proba=1.0), None, "fitted"),   # set any attribute
    ("linear", lambda h: h["fitted"].update(C_=float("nan")), None, "C_"),
    ("head", lambda h: h["classes"].extend(["d", "e"]), None, "shape"),            # silently mislabelled
    ("tip", None, lambda t: t.__setitem__("support_", t["support_"][:, :4].copy()), "shape"),
    ("kernel", None, lambda t: t.__setitem__("dual_coef_", np.full_like(t["dual_coef_"], np.nan)), "finite"),
    ("head", None, lambda t: t.__setitem__("weights_", t["weights_"][:2].copy()), "shape"),
    ("tip", None, lambda t: t.__setitem__("extra", np.zeros(2, np.float32)), "unexpected arrays"),
    ("tip", lambda h: h["prior"].__setitem__("classes", ["x", "y", "z"]), None, "prior"),
    ("linear", _set("classes", ["a", "a", "b"]), None, "distinct"),
])
def test_tampered_files_are_refused_on_load(tmp_path, kind, header_change, tensor_change, words):
    path = _tampered(tmp_path, kind, header_change, tensor_change)
    with pytest.raises(UserError, match=words):
        load_estimator(path)


@pytest.mark.parametrize("kind", ["head", "linear", "kernel", "tip"])
def test_untouched_files_still_load(tmp_path, kind):
    estimator = _fitted(kind)
    loaded = load_estimator(save_estimator(estimator, tmp_path / "ok.safetensors"))
    X = np.random.default_rng(1).normal(size=(4, 8))
    np.testing.assert_allclose(loaded.predict_proba(X), estimator.predict_proba(X), atol=1e-5)
