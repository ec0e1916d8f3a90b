"""The training runtime's files: one checkpoint format, one resume rule, one swap into place, one loss plot.

Every trainer (CLIP/LiT, the captioner, soft prompts, recycling, and any later one) keeps its run in
`<output-dir>/checkpoint/`, as nanoGPT keeps model, optimizer, step and config together:

- `tensors.safetensors`: the trainer's tensors by group (`weights/<name>`, `best/<name>`, ...), the
  optimizer's tensor slots (`optimizer/<index>.<slot>`) and torch's random states (`rng/torch`, and
  `rng/cuda.<device>` when CUDA is in use);
- `state.json`: the format, the run's fingerprint (everything that determines it: data, settings,
  base model), the trainer's own JSON state (step, history, best, seconds), the optimizer's parameter
  groups and non-tensor slots, the scheduler's state, and the Python and NumPy random states.

A checkpoint is written whole into `checkpoint.new/` and then swapped in (`checkpoint` ->
`checkpoint.old`, `.new` -> `checkpoint`, `.old` removed), so a kill at any instant leaves one complete
checkpoint: `checkpoint/`, or `checkpoint.old/` when the kill fell between the two renames.

The resume rule, in one place (`Checkpoint.check_start`), is checked before any model loads:
- `resume=False` and a checkpoint is there: refuse (pass --resume, or choose another folder);
- `resume=False` and a finished model is there: refuse unless `overwrite`;
- `resume=True` and nothing is saved: refuse (and say so when the run already finished);
- `resume=True` and the checkpoint is from another run (its fingerprint differs): refuse.

What a checkpoint holds is validated once, here, when it is read back (`check_start`, `restore`,
`load_into`, `check_group`): `state.json`'s structure and the trainer's state fields (`state_types`),
then every tensor's name, shape, dtype and finiteness against the live model and optimizer
(`zeroshot.validation.check_tensors`). A truncated, emptied or tampered checkpoint is refused with one
line naming the folder and the fix, before a step runs, never turned into a NaN model or a traceback.

How a trainer uses it is told in `zeroshot.train`'s docstring.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from zeroshot.errors import UserError
from zeroshot.files import write_atomic
from zeroshot.validation import check_tensors

FORMAT = "zeroshot-checkpoint/1"
CHECKPOINT_DIR = "checkpoint"
TENSORS_FILE = "tensors.safetensors"
STATE_FILE = "state.json"


def _jsonable(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} cannot be written to {STATE_FILE}")


class Checkpoint:
    """The checkpoint of one training run writing to `out`, identified by `fingerprint`.

    A fingerprint of None means "not known yet" (it needs the model's weights): `check_start` then
    applies only the half of the resume rule that needs no model, so a trainer can refuse a wrong
    `--resume` before it loads anything, and check the fingerprint once the model is there.

    `what` names, for messages, what the fingerprint covers ("data or settings"); `option` is the
    command-line name of the output folder, so a message says what to change; `product` is what a
    finished run leaves there ("model", "captioner"). `name` is the checkpoint folder's name in `out`
    (`checkpoint`; the swap uses `<name>.new` and `<name>.old` beside it). `state_types` names the
    fields the trainer's saved state must have and their types (ints must be >= 0), so
    a tampered `state.json` is refused at `check_start` rather than failing mid-run.
    """

    def __init__(self, out: str | os.PathLike, fingerprint: str | None, what: str = "data or settings",
                 option: str = "--output-dir", product: str = "trained model",
                 name: str = CHECKPOINT_DIR,
                 state_types: Mapping[str, type | tuple[type, ...]] | None = None) -> None:
        self.out = Path(out).expanduser()
        self.fingerprint = fingerprint
        self.what = what
        self.option = option
        self.product = product
        self.name = name
        self.state_types = dict(state_types or {})

    # -- where ----------------------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        """Where the next checkpoint is written."""
        return self.out / self.name

    def find(self) -> Path | None:
        """The complete checkpoint on disk, if any (`.old`: killed between the two renames of a swap)."""
        for name in (self.name, self.name + ".old"):
            if (self.out / name / STATE_FILE).is_file():
                return self.out / name
        return None

    # -- the resume rule ------------------------------------------------------------------------------
    def check_start(self, resume: bool, finished: str | None = None, overwrite: bool = True,
                    overwrite_option: str | None = "--overwrite") -> dict | None:
        """Apply the resume rule; the saved trainer state when resuming, None for a fresh start.

        `finished` is the file a finished run leaves in `out` (its model's config or record): with it,
        `resume` on a finished run says so, and a fresh start refuses to replace it unless `overwrite`
        (the message names `overwrite_option`, when the command has one). Raises `UserError`; reads
        only `state.json`, so it is cheap enough to run before a model loads.
        """
        if self.out.exists() and not self.out.is_dir():  # before minutes of work that could not be saved
            raise UserError(f"{self.option} {self.out} is a file, not a folder: choose another {self.option}")
        folder = self.find()
        done = finished is not None and (self.out / finished).is_file()
        if not resume:
            if folder is not None:
                raise UserError(f"{self.out} holds an unfinished run: pass --resume to continue it, "
                                f"or choose another {self.option}")
            if done and not overwrite:
                alternative = f" or pass {overwrite_option}" if overwrite_option else ""
                raise UserError(f"{self.out} already holds a {self.product}: choose another {self.option}"
                                + alternative)
            return None
        if folder is None:
            if done:
                raise UserError(f"--resume: the run in {self.out} has already finished (nothing to resume)")
            raise UserError(f"nothing to resume: {self.out} holds no checkpoint")
        return self._read_meta(folder)["state"]

    def _read_meta(self, folder: Path) -> dict:
        try:
            meta = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"the checkpoint in {folder} cannot be read ({exc}); remove it to start over") \
                from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("state"),
                                                                                        dict):
            # older versions' checkpoints included: their fingerprints were computed otherwise
            raise UserError(f"the checkpoint in {folder} is not one this version writes; "
                            "remove it to start over")
        if self.fingerprint is not None and meta.get("fingerprint") != self.fingerprint:
            raise UserError(f"--resume: the checkpoint in {folder} is from another run (another "
                            f"{self.what}): resume with the same ones, or choose another {self.option}")
        self._check_state(folder, meta["state"])
        return meta

    def _check_state(self, folder: Path, state: dict) -> None:
        """The trainer's saved fields have the types it wrote: a tampered value fails here, not mid-run."""
        for key, kind in self.state_types.items():
            value = state.get(key)
            kinds = kind if isinstance(kind, tuple) else (kind,)
            # bool is an int to Python; a step of `true` is not a step
            ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
            if ok and isinstance(value, int) and not isinstance(value, bool):
                ok = 0 <= value < (1 << 53)  # (a float may be NaN: a one-image dev split's loss is)
            if not ok:
                raise UserError(f"the checkpoint in {folder} is damaged (state.json: {key} = {value!r}); "
                                "remove it to start over")

    # -- writing --------------------------------------------------------------------------------------
    def save(self, state: Mapping, tensors: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
             optimizer: torch.optim.Optimizer | None = None, scheduler=None,
             torch_rng: torch.Tensor | None = None) -> Path:
        """Write the run's state, its tensors by group, the optimizer, scheduler and random states; swap in.

        `state` is the trainer's JSON-able state (step, history, best score, seconds...). `torch_rng` is
        torch's random state to record (default: as it is now); a trainer saving on Ctrl-C in the middle
        of a step passes the state from the start of that step, so the redone step draws the same
        dropout masks and the resumed run equals an uninterrupted one.
        """
        from safetensors.torch import save_file

        flat: dict[str, torch.Tensor] = {}
        for group, named in (tensors or {}).items():
            for name, value in named.items():
                # clone: tied weights share storage, which safetensors refuses
                flat[f"{group}/{name}"] = value.detach().cpu().clone().contiguous()
        meta: dict = {"format": FORMAT, "fingerprint": self.fingerprint, "state": dict(state),
                      "written": time.strftime("%Y-%m-%d %H:%M:%S")}
        if optimizer is not None:
            saved = optimizer.state_dict()
            slots: dict = {}
            for index, named in saved["state"].items():
                for slot, value in named.items():
                    if isinstance(value, torch.Tensor):
                        flat[f"optimizer/{index}.{slot}"] = value.detach().cpu().clone().contiguous()
                    else:
                        slots.setdefault(str(index), {})[slot] = value
            meta["optimizer"] = {"param_groups": saved["param_groups"], "slots": slots}
        if scheduler is not None:
            meta["scheduler"] = scheduler.state_dict()
        flat["rng/torch"] = torch.get_rng_state() if torch_rng is None else torch_rng
        if torch.cuda.is_available() and torch.cuda.is_initialized():  # dropout on a GPU draws from these
            for index, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
                flat[f"rng/cuda.{index}"] = cuda_state
        python_state = random.getstate()
        meta["rng"] = {"python": [python_state[0], list(python_state[1]), python_state[2]],
                       "numpy": _numpy_state()}
        fresh = self.out / (self.name + ".new")
        old = self.out / (self.name + ".old")
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.mkdir(parents=True)
        save_file(flat, str(fresh / TENSORS_FILE))
        (fresh / STATE_FILE).write_text(json.dumps(meta, indent=1, default=_jsonable), encoding="utf-8")
        if self.path.exists():
            shutil.rmtree(old, ignore_errors=True)
            self.path.rename(old)
        fresh.rename(self.path)
        shutil.rmtree(old, ignore_errors=True)
        return self.path

    # -- reading --------------------------------------------------------------------------------------
    def restore(self, optimizer: torch.optim.Optimizer | None = None, scheduler=None,
                rng: bool = True) -> dict[str, dict[str, torch.Tensor]]:
        """Load the optimizer and scheduler states (and the random states, with `rng`) in place; return
        the trainer's tensors by group. Call `check_start(resume=True)` first."""
        from safetensors.torch import load_file

        folder = self.find()
        if folder is None:
            raise UserError(f"nothing to resume: {self.out} holds no checkpoint")
        meta = self._read_meta(folder)
        damaged = f"the checkpoint in {folder} is damaged"
        try:
            flat = load_file(str(folder / TENSORS_FILE))
        except Exception as exc:  # safetensors' own error type for a truncated, empty or foreign file
            raise UserError(f"the checkpoint in {folder} cannot be read ({_first(exc)}); remove it to start "
                            "over") from None
        groups: dict[str, dict[str, torch.Tensor]] = {}
        for key, value in flat.items():
            group, _, name = key.partition("/")
            groups.setdefault(group, {})[name] = value
        saved_rng = groups.pop("rng", {})
        try:
            if optimizer is not None:
                self._restore_optimizer(folder, meta, groups.pop("optimizer", {}), optimizer)
            if scheduler is not None:
                if "scheduler" not in meta:
                    raise UserError(f"the checkpoint in {folder} lacks the scheduler state; "
                                    "remove it to start over")
                scheduler.load_state_dict(meta["scheduler"])
            if rng:
                self._restore_rng(folder, meta, saved_rng)
        except UserError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, RuntimeError, AttributeError) as exc:
            # a state.json edited by hand: the shapes of its parts are torch's, checked by torch
            raise UserError(f"{damaged} ({_first(exc)}); remove it to start over") from None
        return groups

    def _restore_optimizer(self, folder: Path, meta: dict, slots: dict[str, torch.Tensor],
                           optimizer: torch.optim.Optimizer) -> None:
        saved = meta.get("optimizer")
        if not isinstance(saved, dict) or not isinstance(saved.get("slots"), dict):
            raise UserError(f"the checkpoint in {folder} lacks the optimizer state; remove it to start over")
        # The optimizer's state is indexed by the parameters' order over its groups; a slot such as
        # Adam's exp_avg has its parameter's shape, which torch's load_state_dict does not check.
        params = [param for group in optimizer.param_groups for param in group["params"]]
        state: dict = {}
        expected: dict[str, object] = {}
        for key, value in slots.items():
            index, _, slot = key.partition(".")
            if not index.isdigit() or int(index) >= len(params):
                raise UserError(f"the checkpoint in {folder} holds optimizer/{key}, which this model's "
                                "optimizer has no parameter for; remove it to start over")
            param = params[int(index)]
            expected[key] = ((), None) if slot == "step" else (tuple(param.shape), None)
            state.setdefault(int(index), {})[slot] = value
        check_tensors(slots, expected, f"the checkpoint in {folder} (optimizer)", "remove it to start over")
        for index, named in saved["slots"].items():
            state.setdefault(int(index), {}).update(named)
        try:
            optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
        except (ValueError, KeyError) as exc:
            raise UserError(f"the checkpoint in {folder} does not fit this model's optimizer ({exc})") \
                from None
        for group in optimizer.param_groups:  # rates feed every step: one NaN there is a NaN model
            for key in ("lr", "base_lr", "weight_decay"):
                value = group.get(key, 0.0)
                if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                    raise UserError(f"the checkpoint in {folder} is damaged (optimizer {key} = {value!r}); "
                                    "remove it to start over")

    def _restore_rng(self, folder: Path, meta: dict, saved_rng: dict[str, torch.Tensor]) -> None:
        if "torch" in saved_rng:
            current = torch.get_rng_state()
            value = saved_rng["torch"]
            if value.dtype != current.dtype or value.shape != current.shape:
                raise UserError(f"the checkpoint in {folder} is damaged (rng/torch is {value.dtype} "
                                f"{tuple(value.shape)}); remove it to start over")
            torch.set_rng_state(value)
        cuda_states = [saved_rng[f"cuda.{i}"] for i in range(len(saved_rng)) if f"cuda.{i}" in saved_rng]
        if cuda_states and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda_states):
            torch.cuda.set_rng_state_all(cuda_states)
        python_state = meta["rng"]["python"]
        random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
        np.random.set_state(tuple(meta["rng"]["numpy"]))

    def check_group(self, targets: Mapping[str, torch.Tensor], saved: Mapping[str, torch.Tensor],
                    group: str = "weights") -> None:
        """Refuse a saved group (as `restore` returned it) that does not match `targets` exactly: the
        same names, no others, the same shapes and dtypes, and finite values."""
        check_tensors(saved, targets, f"the checkpoint in {self.out} ({group})", "remove it to start over")

    def load_into(self, targets: Mapping[str, torch.Tensor], saved: Mapping[str, torch.Tensor]) -> None:
        """Copy `saved` tensors (a group `restore` returned) into the live ones of the same names, in
        place and on their device: parameters, or a module's `state_dict()`. Everything is checked
        first (`check_group`), so a refused checkpoint leaves the live tensors untouched."""
        self.check_group(targets, saved)
        with torch.no_grad():
            for name, target in targets.items():
                target.copy_(saved[name])

    def remove(self) -> None:
        """Delete the checkpoint once the finished model is written (the run is then over)."""
        for name in (self.name, self.name + ".new", self.name + ".old"):
            shutil.rmtree(self.out / name, ignore_errors=True)


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _numpy_state() -> list:
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    return [kind, keys.tolist(), int(position), int(has_gauss), float(gauss)]


def run_fingerprint(*parts: object) -> str:
    """A short digest of everything that determines a run (settings, data, base-model identity)."""
    import hashlib

    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def plot_losses(path: Path, curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], xlabel: str,
                ylabel: str, title: str = "", kept_at: float | None = None,
                second: tuple[str, Sequence[float], Sequence[float]] | None = None) -> Path:
    """One loss plot for every trainer, written atomically as a PNG.

    `curves`: label -> (x, y); `kept_at`: the x whose weights were kept (a dashed line); `second`:
    (label, x, y) drawn on a second y axis (e.g. dev accuracy).
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (label, (xs, ys)), marker in zip(curves.items(), "osd^v", strict=False):
        if len(xs):
            # markers show where evaluations fell; on a per-step curve they would hide the line
            ax.plot(list(xs), list(ys), marker=marker if len(xs) <= 60 else None, label=label)
    if kept_at:
        ax.axvline(kept_at, color="grey", linestyle="--", linewidth=1, label=f"kept ({xlabel} {kept_at:g})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if second is not None:
        other = ax.twinx()
        other.plot(list(second[1]), list(second[2]), color="tab:green", alpha=0.6, label=second[0])
        other.set_ylabel(second[0])
        more = other.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    if handles:
        ax.legend(handles, labels, fontsize=8, loc="upper right")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
    return path
