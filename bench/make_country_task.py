"""Build the free-form task `country-alpha3` from Debian's iso-codes (ISO 3166-1): country name -> code.

    python -m bench.make_country_task            # writes bench/tasks/country-alpha3{,-dev}.jsonl

Real data from the Debian package `iso-codes` (/usr/share/iso-codes/json/iso_3166-1.json, 249
countries). A seeded shuffle (seed 3166) puts 60 countries in the demonstration pool (split "train"),
49 in a dev split (prompts and options are chosen on it, in `country-alpha3-dev.jsonl`, whose evaluation
documents are those 49) and 140 in the test split. The answer is extracted from the generation's first
line by a regex capture of a three-letter word, compared case- and punctuation-insensitively.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SOURCE = Path("/usr/share/iso-codes/json/iso_3166-1.json")
OUT = Path(__file__).resolve().parent / "tasks"
CONFIG = {
    "name": "country-alpha3",
    "description": "Give the three-letter ISO 3166-1 alpha-3 code of each country.",
    "doc_to_text": "Country: {name}\nCode:",
    "doc_to_target": "{alpha_3}",
    "filters": ["first_line", "strip", {"regex": "\\b([A-Za-z]{3})\\b", "group": 1}],
    "ignore_case": True,
    "ignore_punctuation": True,
    "metrics": ["exact_match", "contains"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=OUT, help="where the two task files go")
    args = parser.parse_args()
    out = args.output_dir
    if not SOURCE.is_file():
        raise SystemExit(f"{SOURCE} is missing: install Debian's iso-codes package")
    countries = json.loads(SOURCE.read_text(encoding="utf-8"))["3166-1"]
    rows = [{"name": c["name"], "alpha_3": c["alpha_3"]} for c in countries]
    random.Random(3166).shuffle(rows)
    pool, dev, test = rows[:60], rows[60:109], rows[109:]
    out.mkdir(parents=True, exist_ok=True)
    for name, evaluated in (("country-alpha3", test), ("country-alpha3-dev", dev)):
        config = dict(CONFIG, name=name)
        lines = [{"config": config}] + [dict(r, split="train") for r in pool]
        lines += [dict(r, split="test") for r in evaluated]
        path = out / f"{name}.jsonl"
        text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}: {len(pool)} demonstrations, {len(evaluated)} evaluated")


if __name__ == "__main__":
    main()
