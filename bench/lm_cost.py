"""Inference cost table of the LM backends: `python -m bench.lm_cost` (same as `zeroshot bench-lm`)."""

from __future__ import annotations

import sys

from zeroshot.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench-lm", *sys.argv[1:]]))
