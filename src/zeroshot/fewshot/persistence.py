"""Save and load fitted few-shot estimators as one `.safetensors` file: arrays plus JSON metadata.

safetensors holds only tensors and a string-to-string header, so loading a file cannot run code (unlike
pickle or joblib). The header carries the estimator's type, its parameters and its classes as JSON;
the tensors are its learned arrays (a 16-shot, 5-class MiniLM KernelAdapter is about 130 kB).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from zeroshot.errors import UserError
from zeroshot.fewshot.kernel_adapter import KernelAdapter
from zeroshot.fewshot.linear_probe import LinearProbe
from zeroshot.fewshot.tip_adapter import TipAdapter
from zeroshot.fewshot.zero_shot_head import ZeroShotHead

FORMAT = "zeroshot.fewshot"
VERSION = "1"
# The learned arrays of each estimator type (the prior's are saved under "prior.").
_ARRAYS = {
    "ZeroShotHead": ("weights_",),
    "LinearProbe": ("coef_", "intercept_"),
    "KernelAdapter": ("support_", "dual_coef_"),
    "TipAdapter": ("support_", "cache_values_"),
}
_TYPES = {cls.__name__: cls for cls in (ZeroShotHead, LinearProbe, KernelAdapter, TipAdapter)}


def save_estimator(estimator, path: str | os.PathLike) -> Path:
    """Write a fitted `ZeroShotHead`, `LinearProbe`, `KernelAdapter` or `TipAdapter` to `path`."""
    from safetensors.numpy import save_file

    kind = type(estimator).__name__
    if kind not in _ARRAYS:
        raise UserError(f"cannot save a {kind}: only {', '.join(_ARRAYS)} are supported")
    check_is_fitted(estimator)
    tensors, header = _describe(estimator, prefix="")
    prior = getattr(estimator, "prior_", None)
    if prior is not None:
        if not isinstance(prior, ZeroShotHead):
            raise UserError(
                f"cannot save an adapter whose prior is a {type(prior).__name__}: "
                "only a ZeroShotHead prior can be saved"
            )
        prior_tensors, header["prior"] = _describe(prior, prefix="prior.")
        tensors.update(prior_tensors)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        tensors, str(path), metadata={"format": FORMAT, "version": VERSION, "estimator": json.dumps(header)}
    )
    return path


def _describe(estimator, prefix: str) -> tuple[dict[str, np.ndarray], dict]:
    kind = type(estimator).__name__
    params = {
        k: v for k, v in estimator.get_params(deep=False).items() if k not in ("prior", "class_embeddings")
    }
    params = {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
    if kind == "ZeroShotHead":
        params["labels"] = None  # restored from classes_
    extra = {name: float(getattr(estimator, name)) for name in ("gamma_", "C_") if hasattr(estimator, name)}
    header = {
        "type": kind,
        "params": params,
        "classes": estimator.classes_.tolist(),
        "n_features_in": int(estimator.n_features_in_),
        "fitted": extra,
    }
    tensors = {
        prefix + name: np.ascontiguousarray(getattr(estimator, name), dtype=np.float32)
        for name in _ARRAYS[kind]
    }
    return tensors, header


def load_estimator(path: str | os.PathLike):
    """Read an estimator written by `save_estimator`; it predicts exactly as the saved one did."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_file():
        raise UserError(f"no adapter file at {path}")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
        header = json.loads(metadata.get("estimator", "null"))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise UserError(f"{path} is not a readable safetensors file: {exc}") from exc
    if metadata.get("format") != FORMAT or not isinstance(header, dict):
        raise UserError(f"{path} is not a zeroshot few-shot estimator file")
    if metadata.get("version") != VERSION:
        raise UserError(f"{path} has format version {metadata.get('version')}; this zeroshot reads {VERSION}")
    return _rebuild(header, tensors, prefix="")


def _rebuild(header: dict, tensors: dict[str, np.ndarray], prefix: str):
    kind = header.get("type")
    if kind not in _TYPES:
        raise UserError(f"unknown estimator type {kind!r} in the file")
    params = dict(header["params"])
    if "C_grid" in params:
        params["C_grid"] = tuple(params["C_grid"])
    classes = np.asarray(header["classes"])
    arrays = {name: tensors[prefix + name].astype(np.float64) for name in _ARRAYS[kind]}
    if kind == "ZeroShotHead":
        estimator = ZeroShotHead(
            arrays["weights_"], labels=classes.tolist(), **{k: v for k, v in params.items() if k != "labels"}
        )
        return estimator.fit(arrays["weights_"][:1])
    if "prior" in header:
        params["prior"] = _rebuild(header["prior"], tensors, prefix="prior.")
    estimator = _TYPES[kind](**params)
    if "prior" in header:
        estimator.prior_ = params["prior"]
    elif kind in ("KernelAdapter", "TipAdapter"):
        estimator.prior_ = None
    estimator.classes_ = classes
    estimator.n_features_in_ = int(header["n_features_in"])
    for name, value in header.get("fitted", {}).items():
        setattr(estimator, name, value)
    for name, value in arrays.items():
        setattr(estimator, name, value)
    if kind == "LinearProbe":
        model = LogisticRegression(C=estimator.C_, max_iter=estimator.max_iter)
        model.coef_, model.intercept_, model.classes_ = arrays["coef_"], arrays["intercept_"], classes
        model.n_features_in_ = estimator.n_features_in_
        estimator.model_ = model
    return estimator
