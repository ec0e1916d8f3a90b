"""Save and load fitted few-shot estimators as one `.safetensors` file: arrays plus JSON metadata.

safetensors holds only tensors and a string-to-string header, so loading a file cannot run code (unlike
pickle or joblib). The header carries the estimator's type, its parameters and its classes as JSON;
the tensors are its learned arrays (a 16-shot, 5-class MiniLM KernelAdapter is about 130 kB).
"""

from __future__ import annotations

import json
import math
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
    extra = set(tensors) - _expected_tensors(header)
    if extra:
        raise UserError(f"{path}: unexpected arrays {', '.join(sorted(extra))}; not a file zeroshot wrote")
    try:
        _validate(header, tensors, prefix="")
        estimator = _rebuild(header, tensors, prefix="")
        _check_prediction_params(estimator)
        return estimator
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:  # a net under `_validate`
        raise UserError(f"{path}: the estimator described in it cannot be rebuilt ({exc!r})") from None


# The header's keys, and the types of their values (ints and floats are checked for range below).
_HEADER_KEYS = {"type", "params", "classes", "n_features_in", "fitted"}
_FITTED = {"ZeroShotHead": set(), "LinearProbe": {"C_"}, "KernelAdapter": {"gamma_"}, "TipAdapter": set()}
_MAX_FEATURES = 1 << 20
_MAX_INT = 1 << 31


def _expected_tensors(header: object) -> set[str]:
    kind = header.get("type") if isinstance(header, dict) else None
    if not isinstance(kind, str) or kind not in _ARRAYS:
        return set()
    names = set(_ARRAYS[header["type"]])
    prior = header.get("prior")
    if isinstance(prior, dict) and prior.get("type") == "ZeroShotHead":
        names |= {"prior." + name for name in _ARRAYS["ZeroShotHead"]}
    return names


def _validate(header: dict, tensors: dict[str, np.ndarray], prefix: str) -> None:
    """Check a header and its arrays against what `save_estimator` writes for that type, all of it.

    A file is only data: nothing in it may set an attribute the estimator does not declare, carry a
    parameter the estimator does not take, or hold arrays whose shapes or values would make it predict
    nonsense (NaN probabilities, classes beyond the arrays) later instead of failing here.
    """
    kind = header.get("type")
    if not isinstance(kind, str) or kind not in _TYPES:
        raise UserError(f"unknown estimator type {kind!r}")
    allowed = _HEADER_KEYS | ({"prior"} if kind in ("KernelAdapter", "TipAdapter") and not prefix else set())
    if not set(header) <= allowed or not _HEADER_KEYS <= set(header):
        raise UserError(f"the header of the {kind} has keys {sorted(header)}; expected {sorted(allowed)}")
    params = header["params"]
    declared = set(_TYPES[kind]._get_param_names()) - {"prior", "class_embeddings"}
    if not isinstance(params, dict) or not set(params) <= declared:
        unknown = sorted(set(params) - declared) if isinstance(params, dict) else params
        raise UserError(f"parameters {unknown!r} are not parameters of {kind}")
    for name, value in params.items():
        _check_value(value, f"parameter {name}")
    fitted = header["fitted"]
    if not isinstance(fitted, dict) or not set(fitted) <= _FITTED[kind]:
        raise UserError(f"fitted values {sorted(fitted) if isinstance(fitted, dict) else fitted!r} are not "
                        f"those of a {kind} ({sorted(_FITTED[kind]) or 'none'})")
    for name, value in fitted.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value)
                                                                                 and value > 0):
            raise UserError(f"fitted value {name} must be a positive finite number, not {value!r}")
    classes = header["classes"]
    if (not isinstance(classes, list) or len(classes) < 2 or len(set(map(repr, classes))) != len(classes)
            or not (all(isinstance(c, str) for c in classes)
                    or all(isinstance(c, int) and not isinstance(c, bool) for c in classes))):
        raise UserError("classes must be a list of at least two distinct names (or integers)")
    features = header["n_features_in"]
    if isinstance(features, bool) or not isinstance(features, int) or not 1 <= features <= _MAX_FEATURES:
        raise UserError(f"n_features_in must be an integer from 1 to {_MAX_FEATURES}, not {features!r}")
    n_classes = len(classes)
    arrays = {}
    for name in _ARRAYS[kind]:
        if prefix + name not in tensors:
            raise UserError(f"the array {prefix + name} is missing")
        array = tensors[prefix + name]
        if array.dtype.kind != "f" or not np.isfinite(array).all():
            raise UserError(f"the array {prefix + name} must hold finite floating-point numbers")
        arrays[name] = array
    for name, shape in _shapes(kind, arrays, n_classes, features).items():
        if arrays[name].shape != shape:
            raise UserError(f"the array {prefix + name} has shape {arrays[name].shape}; {n_classes} classes "
                            f"and {features} features need {shape}")
    if "prior" in header:
        prior = header["prior"]
        if not isinstance(prior, dict) or prior.get("type") != "ZeroShotHead":
            raise UserError("the prior must be a ZeroShotHead")
        _validate(prior, tensors, prefix="prior.")
        if prior["classes"] != classes or prior["n_features_in"] != features:
            raise UserError("the prior's classes and features must be the estimator's")


def _shapes(kind: str, arrays: dict[str, np.ndarray], n_classes: int, features: int) -> dict:
    if kind == "ZeroShotHead":
        return {"weights_": (n_classes, features)}
    if kind == "LinearProbe":
        rows = 1 if n_classes == 2 else n_classes  # scikit-learn keeps one row for two classes
        return {"coef_": (rows, features), "intercept_": (rows,)}
    support = arrays["support_"].shape[0] if arrays["support_"].ndim == 2 else -1
    if support < 1:
        return {"support_": ("n >= 1", features)}
    second = "dual_coef_" if kind == "KernelAdapter" else "cache_values_"
    return {"support_": (support, features), second: (support, n_classes)}


def _check_value(value: object, what: str) -> None:
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if abs(value) >= _MAX_INT:
            raise UserError(f"{what} is out of range ({value})")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UserError(f"{what} must be finite, not {value}")
        return
    if isinstance(value, list) and len(value) <= 1000:
        for item in value:
            if isinstance(item, list):
                raise UserError(f"{what} must not be nested")
            _check_value(item, what)
        return
    raise UserError(f"{what} has a value of an unexpected kind ({type(value).__name__})")


def _check_prediction_params(estimator) -> None:
    """The parameters `predict` reads, checked by the estimator's own rules: a file is refused on load,
    not at its first prediction (an unknown `kernel` string used to fail only there)."""
    if isinstance(estimator, KernelAdapter):
        estimator._check_params()  # kernel, early_stopping, learning_rate, beta, max_steps
    if isinstance(estimator, TipAdapter):
        for name in ("alpha", "beta"):
            value = getattr(estimator, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                    or (name == "beta" and value < 0):
                raise UserError(f"parameter {name} must be a finite number{' >= 0' * (name == 'beta')}, "
                                f"not {value!r}")
    prior = getattr(estimator, "prior_", None)
    if prior is not None:
        _check_prediction_params(prior)


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
