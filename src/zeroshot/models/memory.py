"""How much memory a model may take, and the refusal (with the estimate) when a load would not fit."""

from __future__ import annotations

import os

from zeroshot.errors import UserError


def available_memory() -> int:
    """Bytes a model may use: `$ZEROSHOT_MEMORY_LIMIT` (e.g. "6G", "500M") if set, else MemAvailable."""
    limit = os.environ.get("ZEROSHOT_MEMORY_LIMIT", "").strip()
    if limit:
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
        try:
            unit = units.get(limit[-1].upper(), 1)
            return int(float(limit.rstrip("KMGTkmgtBb") if unit > 1 else limit) * unit)
        except ValueError:
            raise UserError(f"ZEROSHOT_MEMORY_LIMIT={limit!r} is not a size like 6G or 500M") from None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62  # unknown: do not refuse


def check_memory(estimate: dict[str, int], path: str) -> None:
    """`UserError` with the estimate if the load would not fit the memory available."""
    have = available_memory()
    if estimate["total"] > have:
        gib = 1 << 30
        parts = [(k, v) for k, v in estimate.items() if k != "total"]
        detail = ", ".join(f"{k.replace('_', ' ')} {v / gib:.2f}" for k, v in parts)
        raise UserError(f"{path} needs about {estimate['total'] / gib:.2f} GiB ({detail} GiB) but only "
                        f"{have / gib:.2f} GiB is available: refused before loading (a smaller model, "
                        "a smaller n_ctx, or more memory)")
