"""Inference cost of the LM backends: load time and time to generate N tokens (the GPT-J table).

Every timed generation really produces N tokens: end-of-sequence is banned (`ignore_eos`), and the
count is checked. Backends run one after another in the same process, so their ratios are comparable.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from zeroshot.errors import UserError
from zeroshot.models.lm import GenerationConfig
from zeroshot.models.loader import BACKENDS, load_lm

PROMPT = "The history of the printing press begins"


@dataclass
class CostRow:
    """One backend's cost: load seconds, and seconds / tokens per second per generation length."""

    backend: str
    model: str
    load_seconds: float
    new_tokens: int
    generate_seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.generate_seconds


def run_bench_lm(model: str | None, backends: list[str], lengths: list[int]) -> tuple[list[CostRow], dict]:
    """Time each backend in `backends` on `model`; returns the rows and {backend: why it was skipped}."""
    from tqdm import tqdm

    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise UserError(f"unknown backend(s) {', '.join(unknown) or '(none)'}: "
                        f"choose from {', '.join(BACKENDS)}")
    if not lengths or any(n < 1 for n in lengths):
        raise UserError("generation lengths must be positive integers")
    rows: list[CostRow] = []
    skipped: dict[str, str] = {}
    progress = tqdm(total=len(backends) * (len(lengths) + 1), desc="bench-lm", unit="step")
    for backend in backends:
        try:
            lm = load_lm(model, backend=backend)
        except UserError as exc:
            skipped[backend] = str(exc)
            progress.update(len(lengths) + 1)
            continue
        progress.update(1)
        lm.generate(PROMPT, GenerationConfig(max_new_tokens=4, ignore_eos=True))  # warm-up, not timed
        for n in lengths:
            config = GenerationConfig(max_new_tokens=n, ignore_eos=True)
            started = time.perf_counter()
            produced = _count_tokens(lm, config)
            elapsed = time.perf_counter() - started
            if produced != n:
                skipped[f"{backend}@{n}"] = f"produced {produced} tokens instead of {n}"
            rows.append(CostRow(backend, Path(lm.name).name, lm.load_seconds, produced, elapsed))
            progress.update(1)
        del lm
    progress.close()
    return rows, skipped


def _count_tokens(lm, config: GenerationConfig) -> int:
    lm.generate(PROMPT, config)
    return int(lm.last_num_tokens)


def format_table(rows: list[CostRow]) -> str:
    """The cost table as aligned text."""
    lines = [f"{'backend':<13}{'model':<36}{'load s':>8}{'tokens':>8}{'gen s':>9}{'tokens/s':>10}"]
    for r in rows:
        lines.append(f"{r.backend:<13}{r.model[:35]:<36}{r.load_seconds:>8.2f}{r.new_tokens:>8d}"
                     f"{r.generate_seconds:>9.2f}{r.tokens_per_second:>10.1f}")
    return "\n".join(lines)


def write_results(rows: list[CostRow], skipped: dict, path: Path) -> Path:
    """Write the rows (with tokens/s) and the machine description as JSON; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"machine": {"python": platform.python_version(),
                        "processor": platform.processor() or platform.machine(),
                        "cpus": os.cpu_count()},
            "prompt": PROMPT,
            "rows": [dict(asdict(r), tokens_per_second=r.tokens_per_second) for r in rows],
            "skipped": skipped}
    path.write_text(json.dumps(data, indent=2))
    return path
