"""Inference cost table of the LM backends: `python -m bench.lm_cost` (same as `zeroshot bench-lm`).

Writes bench/results/bench_lm.json unless `-o/--output` says otherwise.
"""

from __future__ import annotations

import sys

from zeroshot.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if not any(a in ("-o", "--output") or a.startswith("--output=") for a in args):
        args += ["--output", "bench/results/bench_lm.json"]
    sys.exit(main(["bench-lm", *args]))
