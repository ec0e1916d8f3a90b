"""The architecture contract (docs/design.md): the layers hold on this tree, and a wrong import breaks them.

`lint-imports` reads the contracts from pyproject.toml and the imports from src/; the second test proves
the contract is not vacuous by adding one upward import to a copy of the tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lint_imports_command() -> str:
    beside_python = Path(sys.executable).parent / "lint-imports"
    found = str(beside_python) if beside_python.is_file() else shutil.which("lint-imports")
    if found is None:
        pytest.skip("lint-imports is not installed (the `dev` extra: import-linter)")
    return found


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the tree at `root` (its pyproject.toml, its src/), without grimp's cache."""
    environment = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run([lint_imports_command(), "--no-cache", "--no-logo"], cwd=root, env=environment,
                          capture_output=True, text=True, timeout=120)


def test_the_source_tree_keeps_the_import_contracts():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_upward_import_breaks_the_layers(tmp_path):
    lint_imports_command()
    shutil.copytree(ROOT / "src", tmp_path / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    prompts = tmp_path / "src" / "zeroshot" / "text" / "prompts.py"
    upward = "\nimport zeroshot.train  # noqa\n"  # text sits below train: this import goes up a layer
    prompts.write_text(prompts.read_text(encoding="utf-8") + upward, encoding="utf-8")

    result = lint_imports(tmp_path)
    report = result.stdout + result.stderr
    assert result.returncode != 0, report
    assert "zeroshot.text is not allowed to import zeroshot.train" in report
    assert "zeroshot.text.prompts -> zeroshot.train" in report


def test_every_top_level_module_is_in_a_layer():
    """A new wing (or ground-floor module) that no layer names would escape the contract unnoticed."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    layers = next(contract["layers"] for contract in contracts if contract["type"] == "layers")
    in_layers = {name.strip() for layer in layers for name in layer.replace(":", "|").split("|")}
    package = ROOT / "src" / "zeroshot"
    modules = {path.stem for path in package.glob("*.py")} | {
        path.parent.name for path in package.glob("*/__init__.py")}
    # `testing` is for tests and users' tests; the "never imports" contract keeps the library off it.
    exempt = {"__init__", "testing"}
    assert modules - exempt - in_layers == set(), "name these in the layers contract in pyproject.toml"
