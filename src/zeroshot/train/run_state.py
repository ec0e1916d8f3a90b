"""The resume rule of frozen-body training runs (`soft_prompt`, `recycle`): a run continues only from
the state its own settings wrote, and a finished or foreign run is never silently overwritten."""

from __future__ import annotations

import json
from pathlib import Path

from zeroshot.errors import UserError


def read_run_state(folder: Path, run_key: str, out: Path, meta_file: str, inputs: str) -> dict | None:
    """The saved state in `folder` (`state.json`) of the run `run_key` writing to `out`; None when
    nothing was saved yet. `UserError` when `out` holds a finished run (its `meta_file`), the state is
    unreadable, or it belongs to a run with other `inputs` (named in the message)."""
    path = folder / "state.json"
    if not path.is_file():
        if (out / meta_file).is_file():
            raise UserError(f"--resume: the run in {out} has already finished (nothing to resume)")
        return None  # nothing saved yet: start from the beginning
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UserError(f"--resume: {path} is unreadable; remove {folder} to start over") from None
    if state.get("run_key") != run_key:
        raise UserError(
            f"--resume: {out} holds a run with another {inputs} (run {state.get('run_key')}, this one "
            f"{run_key}): choose another --output-dir"
        )
    return state
