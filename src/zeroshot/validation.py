"""Checks of what users type, written once for the CLI, the server and Python callers alike.

Each raises `UserError` with a message that names the problem and the fix. `check_tensors` is the one
check of a trained artefact's tensors when it is read back (a file is user input too). The CLI turns
it into one line and exit code 2, the server into a 4xx response, so the same input fails the same
way everywhere.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from zeroshot.errors import UserError


def split_list(text: str | Iterable[str] | None, what: str = "list") -> list[str]:
    """The items of a comma-separated option (`"a, b,c"` -> `["a", "b", "c"]`), stripped, empties dropped.

    A list is accepted as it is (each item stripped), so one function serves CLI strings and JSON lists.
    """
    if text is None:
        return []
    parts = text.split(",") if isinstance(text, str) else list(text)
    if not all(isinstance(part, str) for part in parts):
        raise UserError(f"the {what} must be strings")
    return [part.strip() for part in parts if part.strip()]


def split_ints(text: str | Iterable[int], what: str, minimum: int | None = None) -> list[int]:
    """The distinct integers of an option such as `--shots 0,1,4`, sorted, each at least `minimum`."""
    if isinstance(text, str):
        try:
            values = [int(part) for part in split_list(text, what)]
        except ValueError:
            raise UserError(f"{what} must be comma-separated whole numbers, got {text!r}") from None
    else:
        values = [int(value) for value in text]
    if not values:
        raise UserError(f"{what} is empty: give at least one number")
    if minimum is not None and min(values) < minimum:
        raise UserError(f"{what} must be at least {minimum}, got {min(values)}")
    return sorted(set(values))


def check_labels(labels: str | Iterable[str] | None, minimum: int = 2, what: str = "labels") -> list[str]:
    """Class names as every task takes them: stripped, none empty, no repeats, at least `minimum`.

    A comma-separated string is split first. Classification needs two labels (one label always gets
    probability 1); detection, which scores each query on its own, takes one.
    """
    if isinstance(labels, str):
        items = labels.split(",")
    else:
        items = list(labels or [])
    if not all(isinstance(item, str) for item in items):
        raise UserError(f"{what} must be strings")
    stripped = [item.strip() for item in items]
    if any(not item for item in stripped) and len(stripped) > 1:
        raise UserError(f"{what} must not be empty: check for a stray comma")
    stripped = [item for item in stripped if item]
    repeated = sorted({item for item in stripped if stripped.count(item) > 1})
    if repeated:
        raise UserError(f"{what} must be distinct; repeated: {', '.join(repeated)}")
    if not stripped:
        raise UserError(f"no {what} given: pass at least {minimum} {what}, e.g. sport,politics,business")
    if len(stripped) < minimum:
        raise UserError(f"only {len(stripped)} {what[:-1] if what.endswith('s') else what} given "
                        f"({stripped[0]!r}): pass at least {minimum} {what}")
    return stripped


CALIBRATE_MODES = ("auto", "on", "off")
# The default everywhere (CLI, Python, server): on the BBC dev split it picked the better scoring in 15
# of 16 runs across the four catalogue models (docs/lm.md, "The default model").
DEFAULT_CALIBRATE = "auto"


def check_calibrate(value: bool | str, option: str = "--calibrate") -> str:
    """The calibration mode `value` names: "auto", "on" or "off" (True and False, the old boolean
    spelling, are "on" and "off"); anything else is a `UserError` naming `option` and the choices."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value not in CALIBRATE_MODES:
        raise UserError(f"{option} must be one of {', '.join(CALIBRATE_MODES)}, not {value!r}")
    return value


def check_exactly_one(what: str, **given: object) -> str:
    """The name of the one argument in `given` that is set; `UserError` unless exactly one is.

    `check_exactly_one("query", text=text, image=image)` is the rule for a search query.
    """
    present = [name for name, value in given.items() if value is not None and value != ""]
    if len(present) != 1:
        names = " or ".join(given)
        found = f"got {' and '.join(present)}" if present else "got neither"
        raise UserError(f"give exactly one {what}: {names} ({found})")
    return present[0]


def read_jsonl(path: str | os.PathLike, fields: dict[str, type | tuple[type, ...]]) -> list[tuple[int, dict]]:
    """The rows of a JSON-lines file a user gave, each with its line number; blank lines are skipped.

    Every row must be an object whose `fields` have the given types; anything else (not UTF-8, not
    JSON, a missing field) is a `UserError` naming the file and the line.
    """
    path = Path(path)
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise UserError(f"{path.name} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    except OSError as exc:
        raise UserError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    shape = "{" + ", ".join(f'"{name}": ...' for name in fields) + "}"
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path.name} line {number} is not JSON: {exc.msg}") from None
        if not isinstance(row, dict) or not all(isinstance(row.get(k), kind) for k, kind in fields.items()):
            raise UserError(f"{path.name} line {number} needs {shape}")
        rows.append((number, row))
    return rows


def check_tensors(tensors: Mapping[str, object], expected: Mapping[str, object], where: str,
                  fix: str = "remove it and train again", extra_ok: bool = False) -> None:
    """The one check of a trained artefact's tensors on load: names, shapes, dtypes, finite values.

    `tensors` are what a file held (torch tensors or NumPy arrays); `expected` maps each name to what it
    must look like: a live tensor or array (same shape and dtype), or a `(shape, dtype)` pair whose
    dtype may be None for "any floating-point type". Every trainer's files go through here when they
    are read back, so a truncated, tampered or half-written file fails with one line naming the file
    and the fix instead of loading silently into a NaN model or crashing later in a matmul.
    Raises `UserError` ("<where>: ...; <fix>").
    """
    missing = [name for name in expected if name not in tensors]
    if missing:
        raise UserError(f"{where}: {missing[0]} is missing"
                        + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "") + f"; {fix}")
    extra = sorted(name for name in tensors if name not in expected)
    if extra and not extra_ok:
        raise UserError(f"{where}: unexpected tensor {extra[0]}"
                        + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
                        + f", not a file this version wrote; {fix}")
    for name, want in expected.items():
        value = tensors[name]
        shape, dtype = (tuple(want.shape), want.dtype) if hasattr(want, "shape") else want
        found = tuple(getattr(value, "shape", ()))
        if shape is not None and found != tuple(shape):
            raise UserError(f"{where}: {name} has shape {found}, not {tuple(shape)}; {fix}")
        if not _is_float(value):
            raise UserError(f"{where}: {name} holds {getattr(value, 'dtype', type(value).__name__)} values, "
                            f"not floating-point numbers; {fix}")
        if dtype is not None and value.dtype != dtype:
            raise UserError(f"{where}: {name} is {value.dtype}, not {dtype}; {fix}")
        if not _all_finite(value):
            raise UserError(f"{where}: {name} holds NaN or infinite values; {fix}")


def _is_float(value: object) -> bool:
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return False
    if hasattr(dtype, "is_floating_point"):  # a torch dtype
        return bool(dtype.is_floating_point)
    return getattr(dtype, "kind", "") == "f"  # NumPy


def _all_finite(value) -> bool:
    if hasattr(value, "isfinite"):  # torch
        return bool(value.isfinite().all())
    import numpy as np

    return bool(np.isfinite(value).all())
