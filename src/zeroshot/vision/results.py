"""Reading labels and writing classification results (CSV, JSONL, a rich table) for the CLI and scripts."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from zeroshot.errors import UserError
from zeroshot.validation import check_labels

OUTPUT_SUFFIXES = (".csv", ".jsonl")


def read_labels(labels: str | None, labels_file: str | os.PathLike | None) -> list[str]:
    """Class names from "a,b,c" or from a file (one per line, `#` comments; or a JSON list)."""
    if (labels is None) == (labels_file is None):
        raise UserError("give the class names with exactly one of --labels a,b,c or --labels-file FILE")
    if labels is not None:
        return check_labels(labels, minimum=1, what="class names")
    return check_labels(read_string_list(Path(labels_file).expanduser(), "class names"), minimum=1,
                        what="class names")


def read_string_list(path: Path, what: str, json_key: str | None = None) -> list[str]:
    """Strings from a file: one per line (`#` starts a comment line), or a JSON list (`.json`), or, with
    `json_key`, a JSON object holding that list under the key. Anything else is a `UserError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {what} from {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    if path.suffix.lower() != ".json":
        lines = (line.strip() for line in text.splitlines())
        return [line for line in lines if line and not line.startswith("#")]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if json_key and isinstance(data, dict):
        data = data.get(json_key)
    if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
        raise UserError(f"{path}: expected a JSON list of {what}")
    return data


def check_output_path(path: str | os.PathLike) -> Path:
    """`path` if results can be written there (a .csv or .jsonl name, not a folder); else `UserError`."""
    path = Path(path).expanduser()
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise UserError(f"{path}: the output must end in .csv or .jsonl")
    if path.is_dir():
        raise UserError(f"{path} is a folder")
    return path


class ResultWriter:
    """Streams one row per image to `path` (.csv or .jsonl) through a `.partial` file, renamed on close.

    An interrupted run leaves its rows in `<path>.partial` and never a half-written `path`.
    """

    def __init__(self, path: str | os.PathLike, top_k: int) -> None:
        self.path = check_output_path(path)
        self.format = self.path.suffix.lower()
        self.top_k = top_k
        self.partial = self.path.with_name(self.path.name + ".partial")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.handle = open(self.partial, "w", encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as exc:
            raise UserError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        self.csv = None
        if self.format == ".csv":
            self.csv = csv.writer(self.handle)
            header = ["path", "label", "probability"]
            for rank in range(2, top_k + 1):
                header += [f"label_{rank}", f"probability_{rank}"]
            self.csv.writerow(header + ["error"])

    def write(self, source: str, best: list[tuple[str, float]], error: str | None) -> None:
        """One image's row: its best labels with probabilities, or its error."""
        if self.csv is not None:
            cells: list[object] = [source]
            for rank in range(self.top_k):
                cells += [best[rank][0], f"{best[rank][1]:.6f}"] if rank < len(best) else ["", ""]
            self.csv.writerow(cells + [error or ""])
        else:
            record = {"path": source, "label": best[0][0] if best else None,
                      "probability": best[0][1] if best else None,
                      "top_k": [{"label": label, "probability": p} for label, p in best], "error": error}
            self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    def close(self) -> None:
        """Finish the file and move it into place."""
        self.handle.close()
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        """Stop writing; the rows so far stay in the `.partial` file."""
        self.handle.close()


def results_table(rows: list[tuple[str, list[tuple[str, float]], str | None]], top_k: int):
    """A rich table: one row per image with its best label, probability and runners-up (or its error)."""
    from rich.table import Table
    from rich.text import Text  # file names and reasons are shown as typed, never read as markup

    table = Table(show_lines=False)
    table.add_column("image", overflow="fold")
    table.add_column("label")
    table.add_column("probability", justify="right")
    if top_k > 1:
        table.add_column("next best")
    for source, best, error in rows:
        if error is not None:
            reason = error.removeprefix(f"{source}: ")
            table.add_row(Text(source), Text("unreadable", style="red"), "",
                          *([Text(reason)] if top_k > 1 else []))
            continue
        cells = [Text(source), Text(best[0][0]), f"{best[0][1]:.3f}"]
        if top_k > 1:
            cells.append(Text(", ".join(f"{label} {p:.3f}" for label, p in best[1:])))
        table.add_row(*cells)
    return table
