"""How every audit is written out: JSON with every number, a self-contained HTML page, PNG charts.

`<name>.json` holds the results, prompts and seeds and nothing that changes from run to run, so the
same seed gives the same file byte for byte. Wall-clock times go to `<name>.timing.json` (and the
page). Each chart is a PNG beside the page and is also inlined in it, so the page can be mailed alone.
Files are written under a temporary name and renamed: an interrupted run never leaves half a file.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zeroshot.files import write_atomic


class AuditInterrupted(KeyboardInterrupt):
    """Ctrl-C during an audit, carrying the result of the part that finished (`partial`)."""

    def __init__(self, partial: object) -> None:
        super().__init__("interrupted")
        self.partial = partial


def plain(value: object) -> object:
    """`value` with NumPy scalars and arrays made plain Python, and NaN/inf made None (valid JSON)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def dumps(data: object) -> str:
    """Deterministic JSON text: plain types, fixed key order as built, no NaN."""
    return json.dumps(plain(data), indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (no timestamp or version in it, so it is reproducible)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def new_figure(width: float = 7.0, height: float = 4.0):
    """A matplotlib figure and axes on the non-interactive backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def new_grid(rows: int, columns: int, width: float, height: float):
    """A matplotlib figure with a (rows, columns) array of axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(rows, columns, figsize=(width, height), squeeze=False)


def esc(value: object) -> str:
    return html.escape(str(value))


def fmt(value: object, digits: int = 3) -> str:
    """A number for a table cell ("–" for a missing one)."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return "–" if not math.isfinite(float(value)) else f"{float(value):.{digits}f}"
    return esc(value)


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f} %"


def interval(low: float | None, high: float | None, percent: bool = False) -> str:
    if low is None or high is None:
        return "–"
    return f"[{pct(low)}, {pct(high)}]" if percent else f"[{low:.3f}, {high:.3f}]"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], cls: str = "") -> str:
    """An HTML table; cells that are already strings are escaped unless they start with '<'."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            text = cell if isinstance(cell, str) and cell.startswith("<") else (
                esc(cell) if isinstance(cell, str) else fmt(cell))
            cells.append(f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1100px; color: #222;
       background: #fafafa; padding: 0 1rem; line-height: 1.4; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .85rem; background: white; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: left; vertical-align: top; }
td { font-variant-numeric: tabular-nums; } th { background: #f0f0f0; }
img.chart { max-width: 100%; border: 1px solid #ddd; background: white; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: .5rem .8rem; }
.warn { background: #fdecea; border-left: 4px solid #c62828; padding: .5rem .8rem; }
.meta { color: #555; font-size: .85rem; }
details { margin: .5rem 0; } summary { cursor: pointer; }
"""


@dataclass
class Report:
    """The pieces of one audit's page, added in reading order, and where they are written."""

    name: str  # file stem: lm-gender, lm-sentiment, typographic, denigration
    title: str
    parts: list[str] = field(default_factory=list)
    charts: list[tuple[str, bytes]] = field(default_factory=list)  # (file name, PNG bytes)

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{esc(text)}</h2>")

    def paragraph(self, text: str, cls: str = "") -> None:
        """A paragraph of already-safe HTML (callers escape what comes from users)."""
        self.parts.append(f'<p class="{cls}">{text}</p>' if cls else f"<p>{text}</p>")

    def html(self, fragment: str) -> None:
        self.parts.append(fragment)

    def chart(self, stem: str, png: bytes, alt: str) -> None:
        file_name = f"{self.name}-{stem}.png"
        self.charts.append((file_name, png))
        data = base64.b64encode(png).decode("ascii")
        self.parts.append(f'<p><img class="chart" alt="{esc(alt)}" src="data:image/png;base64,{data}"></p>')

    def render(self) -> str:
        return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(self.title)}'
                f"</title><style>{_STYLE}</style></head><body><h1>{esc(self.title)}</h1>\n"
                + "\n".join(self.parts) + "\n</body></html>\n")

    def write(self, out_dir: Path, data: dict, timing: dict | None = None) -> dict[str, Path]:
        """Write the JSON, timing JSON, charts and page into `out_dir`; returns their paths."""
        paths = {"json": out_dir / f"{self.name}.json", "html": out_dir / f"{self.name}.html"}
        write_atomic(paths["json"], dumps(data))
        if timing is not None:
            paths["timing"] = out_dir / f"{self.name}.timing.json"
            write_atomic(paths["timing"], dumps(timing))
        for file_name, png in self.charts:
            write_atomic(out_dir / file_name, png)
        write_atomic(paths["html"], self.render())
        return paths
