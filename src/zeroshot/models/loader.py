"""`load_lm`: from a model name to a loaded `LanguageModel` on the best backend that runs here.

A name is None (the default model: `$ZEROSHOT_MODEL`, else the catalogue's), a name from the catalogue
(`zeroshot models`: `gemma-3-270m`), a Hugging Face id, a local folder or a `.gguf` file. Backends register
themselves by name (`zeroshot.models.registry`); this module imports a built-in backend's file only
once it is chosen, so `llama.cpp` users never pay for importing torch.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from zeroshot.errors import UserError
from zeroshot.models.catalogue import MODEL_ENV, resolve_name
from zeroshot.models.lm import LanguageModel, builtin_model_path, default_model_path, logger
from zeroshot.models.registry import backend_class, registered_backends
from zeroshot.optional import LLAMA_CPP

BACKENDS = ("transformers", "llama.cpp")


def _import_builtin_backend(name: str) -> None:
    """Import the file of a built-in backend, which registers it."""
    if name == "llama.cpp":
        import zeroshot.models.lm_llamacpp  # noqa: F401
    elif name == "transformers":
        import zeroshot.models.lm_transformers  # noqa: F401


def llama_cpp_available() -> bool:
    """Whether the optional `llama-cpp-python` backend is installed."""
    return LLAMA_CPP.available()


def _looks_like_path(name: str) -> bool:
    # A hub id is "name" or "owner/name"; anything else that is not on disk was meant as a path.
    return (name.endswith(".gguf") or name.startswith(("/", "./", "../", "~", "\\")) or name.count("/") > 1
            or os.sep != "/" and os.sep in name)


def resolve_model(model: str | os.PathLike | None) -> tuple[str, str]:
    """Classify `model` as ("gguf", file), ("folder", dir) or ("hub", id); `UserError` if it cannot be.

    None (or "default") means `$ZEROSHOT_MODEL` if it is set (anything this function takes), else the
    catalogue's default model. A file or folder on disk comes first; then a catalogue name (`zeroshot
    models`), which must be pulled (`UserError` saying how if not); then a hub id. A bare word close to
    a catalogue name is taken as its misspelling (`UserError` with the close names).
    """
    if model is None or str(model).strip().lower() == "default":
        chosen = os.environ.get(MODEL_ENV, "").strip()
        if chosen and chosen.lower() != "default":
            try:
                return resolve_model(chosen)
            except UserError as error:  # say where the name came from: it was not typed on this command
                raise UserError(f"${MODEL_ENV}={chosen!r}: {error}", error.status_code) from None
        return "gguf", str(default_model_path())
    name = str(model)
    if not name.strip():
        raise UserError("the model name is empty: pass a name from `zeroshot models`, a hub id, a local "
                        "folder or a .gguf file")
    path = Path(name).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise UserError(f"{path} is a file but not a .gguf model: pass a .gguf file or a model folder")
        return "gguf", str(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) == 1:
                return "gguf", str(ggufs[0])
            raise UserError(f"{path} is not a model folder (no config.json in it): pass a Hugging Face model "
                            "folder or a .gguf file")
        return "folder", str(path)
    pulled = resolve_name(name)
    if pulled is not None:
        return "gguf", str(pulled)
    if _looks_like_path(name):
        raise UserError(f"model file or folder not found: {path}")
    return "hub", name


def check_backend_name(backend: str) -> str:
    """`backend` if it names a backend (auto, a built-in or one registered by name), else `UserError`:
    the one rule for the name, which `serve` checks at start-up and `choose_backend` at load."""
    if backend in ("auto", *BACKENDS) or backend in registered_backends():
        return backend
    raise UserError(f"unknown backend {backend!r}: choose auto, transformers or llama.cpp")


def choose_backend(kind: str, backend: str = "auto", location: str | None = None) -> str:
    """The backend that will load a model of `kind` ("gguf", "folder", "hub").

    "auto" takes llama.cpp for GGUF files when it is installed (several times faster on CPU), and
    transformers otherwise; llama.cpp reads only GGUF files. Before llama.cpp is used in this
    process its build is checked once in a subprocess (`llamacpp_check`): a library that would die
    on this CPU makes "auto" fall back to transformers (said in one line) and an explicit
    "llama.cpp" a `UserError`, never a crash. `location` is the GGUF the check may load when the
    built-in model is not installed.
    """
    if check_backend_name(backend) not in ("auto", *BACKENDS):
        return backend  # a backend of the user's own, registered by name
    if backend == "llama.cpp":
        if kind != "gguf":
            raise UserError("the llama.cpp backend reads only .gguf files: pass one with --model, "
                            "or use --backend transformers")
        if not llama_cpp_available():
            raise UserError("the llama.cpp backend is not installed: run `pip install llama-cpp-python` "
                            "(or `pip install zeroshot[llama]`), or use --backend transformers")
        verdict = llama_cpp_verdict(location)
        if not verdict.ok:
            raise UserError(verdict.message())
        return "llama.cpp"
    if backend == "transformers" or kind != "gguf" or not llama_cpp_available():
        return "transformers"
    verdict = llama_cpp_verdict(location)
    if not verdict.ok:
        logger.warning("%s; using the transformers backend instead", verdict.message())
        return "transformers"
    return "llama.cpp"


def llama_cpp_verdict(location: str | None = None):
    """Whether the installed llama.cpp build runs on this CPU (checked once per build, then cached)."""
    from zeroshot.models.llamacpp_check import check_llama_cpp

    try:
        probe_model = str(builtin_model_path())  # the self-check runs on the smallest model
    except UserError:
        probe_model = location or ""
    return check_llama_cpp(probe_model)


def load_lm(model: str | os.PathLike | None = None, backend: str = "auto", **options) -> LanguageModel:
    """Load a causal LM for scoring and generation.

    `model`: None for the default model (`$ZEROSHOT_MODEL`, else the catalogue's default,
    Gemma-3-270M; `zeroshot models` marks it), a name from the catalogue
    (`zeroshot models`, e.g. "gemma-3-270m", once pulled), a Hugging Face id (downloaded or taken
    from the cache), a local Hugging Face folder, or a local `.gguf` file. `backend`: "auto" (the
    faster one installed), "transformers" or "llama.cpp"; the one chosen is in `lm.backend`.
    `options` go to the backend (`n_ctx`, `n_threads` for llama.cpp; `dtype`, `device` for
    transformers).
    """
    kind, location = resolve_model(model)
    chosen = choose_backend(kind, backend, location)
    started = time.perf_counter()
    _import_builtin_backend(chosen)
    lm: LanguageModel = backend_class(chosen).load(location, kind, **options)
    lm.load_seconds = time.perf_counter() - started
    return lm


