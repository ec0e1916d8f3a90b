"""Lines of Python per wing of a `zeroshot` source tree, by folder and by the wing each file belongs to.

    python scripts/wing_lines.py /work/before/src/zeroshot     # the tree before issue 26
    python scripts/wing_lines.py src/zeroshot                  # this checkout

"by folder" counts each file where it lies (`vision/detect.py` counts for vision). "by wing" counts it
for the wing issue 26 gave it: before the split, search, detection, captioning and training lived in
`vision/` and `text/`, and the map below sends each of those old files to its new wing; the training
half of the old `text/soft_prompt.py` (every top-level statement not needed to attach a trained prompt)
counts for train. On a tree after the split the two columns agree, unless a file is still at an old path.

"lines" are physical lines (as `wc -l` counts them); "code" leaves out blank lines and lines that hold
only a comment (docstrings count as code). The ground floor is every top-level module (errors.py,
files.py, ...: the layers below models/) but the package's `__init__.py` and `testing.py`, which have
rows of their own.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import ast
from collections import defaultdict
from pathlib import Path

WINGS = ("models", "text", "vision", "search", "detect", "train", "caption", "eval", "audit", "fewshot",
         "server", "cli")

# old path (a file, or a folder ending in "/") -> the wing it moved to in issue 26
MOVED = {
    "vision/search.py": "search", "vision/indexing.py": "search", "vision/ray_indexing.py": "search",
    "vision/stores/": "search", "vision/contact_sheet.py": "search",
    "vision/detect.py": "detect", "vision/proposals.py": "detect", "vision/coco.py": "detect",
    "vision/detect_dataset.py": "detect",
    "vision/caption.py": "caption", "vision/caption_data.py": "caption",
    "vision/train.py": "train", "vision/losses.py": "train", "text/recycle.py": "train",
    "text/run_state.py": "train",
}
SPLIT_FILE = "text/soft_prompt.py"
# what `text/` keeps of the soft prompt: reading a trained one and attaching it to an LM
SOFT_PROMPT_INFERENCE = {"META_FILE", "WEIGHTS_FILE", "FORMAT", "model_fingerprint", "SoftPrompt",
                         "load_soft_prompt", "soft_prompt_model", "SoftPromptLM", "attach_soft_prompt"}


def folder_of(relative: str) -> str:
    """The row a file counts for by where it lies."""
    if "/" not in relative:  # a top-level module: the ground floor, but for the two with rows of their own
        return relative if relative in ("__init__.py", "testing.py") else "ground"
    return relative.split("/", 1)[0]


def wing_of(relative: str) -> str:
    """The row a file counts for by the wing it belongs to (old paths mapped to their new wing)."""
    for old, wing in MOVED.items():
        if relative == old or (old.endswith("/") and relative.startswith(old)):
            return wing
    return folder_of(relative)


def count(lines: list[str]) -> tuple[int, int]:
    """(physical lines, code lines) of `lines`."""
    code = sum(1 for line in lines if line.strip() and not line.lstrip().startswith("#"))
    return len(lines), code


def statement_names(node: ast.stmt) -> set[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name}
    if isinstance(node, ast.Assign):
        return {target.id for target in node.targets if isinstance(target, ast.Name)}
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return {node.target.id}
    return set()


def split_soft_prompt(text: str) -> tuple[list[str], list[str]]:
    """The lines of the old `text/soft_prompt.py` that stay in text/ and those that are training."""
    lines = text.splitlines()
    body = ast.parse(text).body
    training_names = {name for node in body for name in statement_names(node)} - SOFT_PROMPT_INFERENCE
    if "train_soft_prompt" not in training_names:  # the trainer has already moved: nothing to split
        return lines, []
    keep, train = [], []
    starts = [min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) for node in body]
    for index, node in enumerate(body):
        # a statement owns its lines and the blank or comment lines after it, up to the next statement
        start = 1 if index == 0 else starts[index]
        end = starts[index + 1] - 1 if index + 1 < len(body) else len(lines)
        names = statement_names(node)
        (train if names and names <= training_names else keep).extend(lines[start - 1:end])
    return keep, train


def tally(root: Path) -> tuple[dict, dict, dict]:
    by_folder: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_wing: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    files: dict[str, int] = defaultdict(int)
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8")
        lines, code = count(text.splitlines())
        by_folder[folder_of(relative)][0] += lines
        by_folder[folder_of(relative)][1] += code
        files[folder_of(relative)] += 1
        parts = {wing_of(relative): text.splitlines()}
        if relative == SPLIT_FILE:
            keep, train = split_soft_prompt(text)
            parts = {"text": keep, "train": train} if train else parts
        for wing, part in parts.items():
            part_lines, part_code = count(part)
            by_wing[wing][0] += part_lines
            by_wing[wing][1] += part_code
    return by_folder, by_wing, files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="the package folder, e.g. src/zeroshot")
    args = parser.parse_args()
    if not (args.root / "__init__.py").is_file():
        raise SystemExit(f"error: {args.root} is not a package folder (no __init__.py)")
    by_folder, by_wing, files = tally(args.root)
    rows = ["ground", "__init__.py", "testing.py", *WINGS]
    rows += sorted((set(by_folder) | set(by_wing)) - set(rows))
    print(f"Lines of Python under {args.root}\n")
    print("| row | files in folder | by folder: lines | code | by wing: lines | code |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        if row not in by_folder and row not in by_wing:
            continue
        folder, wing = by_folder.get(row, [0, 0]), by_wing.get(row, [0, 0])
        print(f"| {row} | {files.get(row, 0)} | {folder[0]} | {folder[1]} | {wing[0]} | {wing[1]} |")
    total = [sum(v[0] for v in by_folder.values()), sum(v[1] for v in by_folder.values())]
    assert total == [sum(v[0] for v in by_wing.values()), sum(v[1] for v in by_wing.values())]
    print(f"| total | {sum(files.values())} | {total[0]} | {total[1]} | {total[0]} | {total[1]} |")


if __name__ == "__main__":
    main()
