"""Build the free-form task `arith-2d-add`: GPT-3's two-digit addition (Brown et al. 2020, §3.9.1).

    python -m bench.make_arithmetic_task          # writes bench/tasks/arith-2d-add{,-dev}.jsonl

Each item asks "Q: What is 48 plus 76?" and expects the sum, in GPT-3's own prompt format ("Q: What is
48 plus 76? A: 124"). Both addends are drawn uniformly from 0-99, as in the paper's "2D+" task. It is a
skill, not a fact: no model can have memorised every pair, so it separates models by what they do
with the prompt and its demonstrations, where a knowledge task (country codes) separates them by what
they remember. A seeded draw (seed 2020) of 700 distinct ordered pairs puts 100 in the demonstration
pool (split "train"), 300 in a dev split (`arith-2d-add-dev.jsonl`: choose models, prompts and options
on it) and 300 in the test split (`arith-2d-add.jsonl`). The answer is the first integer of the
generation's first line.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent / "tasks"
POOL, DEV, TEST = 100, 300, 300
CONFIG = {
    "name": "arith-2d-add",
    "description": "Answer each addition question with the sum.",
    "doc_to_text": "Q: What is {a} plus {b}?\nA:",
    "doc_to_target": "{sum}",
    "filters": ["first_line", "strip", {"regex": "(-?\\d+)", "group": 1}],
    "metrics": ["exact_match", "contains"],
}


def pairs(n: int, seed: int = 2020) -> list[tuple[int, int]]:
    """`n` distinct ordered pairs of addends in 0-99, in a seeded random order."""
    return random.Random(seed).sample([(a, b) for a in range(100) for b in range(100)], n)


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)  # --help, nothing else
    rows = [{"a": a, "b": b, "sum": str(a + b)} for a, b in pairs(POOL + DEV + TEST)]
    pool, dev, test = rows[:POOL], rows[POOL:POOL + DEV], rows[POOL + DEV:]
    OUT.mkdir(exist_ok=True)
    for name, evaluated in (("arith-2d-add", test), ("arith-2d-add-dev", dev)):
        config = dict(CONFIG, name=name)
        lines = [{"config": config}] + [dict(r, split="train") for r in pool]
        lines += [dict(r, split="test") for r in evaluated]
        path = OUT / f"{name}.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
        print(f"wrote {path}: {len(pool)} demonstrations, {len(evaluated)} evaluated")


if __name__ == "__main__":
    main()
