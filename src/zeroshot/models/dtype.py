"""Number formats of frozen encoders: an explicit one (fp32, bf16, fp16, int8) or `auto`, measured once.

`auto` (the default of `load_clip` and `load_sentence_encoder`) measures, on the first use of a model on
a machine, each candidate this CPU can run well: fp32; bf16 only where the CPU has native bf16 dot
products (the `avx512_bf16` or `amx_bf16` flag in /proc/cpuinfo); int8 dynamic quantisation of every
`nn.Linear` (weights int8, activations quantised per batch). It keeps the fastest candidate whose
embeddings agree with fp32's on a small synthetic probe by the FIXED bar below, and caches the choice
as JSON under `$ZEROSHOT_CACHE/dtype`, keyed by the model's fp32 fingerprint, the CPU (model name and a
hash of its flags) and the torch version. A second load reads the choice back and measures nothing.

What "agreement" means here: on the probe (a few seeded synthetic inputs, so it takes seconds), the
smallest cosine between a candidate's embedding and fp32's over every probe input, and the share of
probe queries whose nearest probe label (top-1) is the same as with fp32. The bar is the one the
benchmark applies to real work (`bench/clip_classify.py`: 500 photos x 100 classes; `bench/dtype_text.py`:
MiniLM on BBC News); the probe is a quick proxy for it, stricter in one way (with fewer than 100
queries, a single changed top-1 fails the 99 % bar) and weaker in another (synthetic inputs).

One rule in one place: both encoders (`load_clip`, `load_sentence_encoder`) load through `load_in_dtype`
(check, explicit or auto, a recorded fingerprint, conversion) and tag fingerprints with `dtype_fingerprint`.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import logging
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol, Self, TypeVar

from zeroshot.cache import cache_dir
from zeroshot.errors import UserError, first_line
from zeroshot.files import write_atomic

if TYPE_CHECKING:  # torch and numpy load on first use, so that the CLI can read the choices cheaply
    import numpy as np
    import torch

logger = logging.getLogger(__name__)

DTYPE_CHOICES = ("auto", "fp32", "bf16", "fp16", "int8")
DTYPE_HELP = ("Number format: auto (the fastest of fp32, bf16 and int8 that agrees with fp32, measured once "
              "per model and CPU), fp32, bf16, fp16 or int8.")
_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "qint8": "int8"}
FLOAT_DTYPES = ("fp32", "bf16", "fp16")  # a plain cast; the others (int8) change the modules
AUTO_CANDIDATES = ("fp32", "bf16", "int8")
MIN_COSINE = 0.999  # smallest embedding cosine with fp32 over the probe
MIN_TOP1 = 0.99  # share of probe queries whose best label is fp32's
DTYPE_ENV = "ZEROSHOT_DTYPE"  # the default when no dtype is given (tests pin it to fp32)
CACHE_FORMAT = 1
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def check_dtype(value: str | None) -> str:
    """`value` as one of `DTYPE_CHOICES` (None means the default: `$ZEROSHOT_DTYPE`, else auto)."""
    if value is None:
        value = os.environ.get(DTYPE_ENV) or "auto"
    name = _ALIASES.get(str(value).lower(), str(value).lower())
    if name not in DTYPE_CHOICES:
        raise UserError(f"unknown dtype {value!r}: choose one of {', '.join(DTYPE_CHOICES)}")
    return name


# --- the CPU -----------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = "", frozenset()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = frozenset(value.split())
                if model and flags:
                    break  # the first processor's block is enough
    except OSError:  # not Linux: no flags, so no bf16 candidate and a key from the platform alone
        pass
    return model or platform.processor() or platform.machine(), flags


def cpu_flags() -> frozenset[str]:
    """The first CPU's flags in /proc/cpuinfo (empty where there is no such file)."""
    return _cpuinfo()[1]


def cpu_key() -> str:
    """This CPU in a cache key: its model name and a short hash of its flags."""
    model, flags = _cpuinfo()
    return f"{model}|flags:{hashlib.sha256(' '.join(sorted(flags)).encode()).hexdigest()[:12]}"


def bf16_supported() -> bool:
    """Whether this CPU has native bf16 dot products (AVX512_BF16 or AMX); elsewhere bf16 is emulated."""
    return any(flag in cpu_flags() for flag in BF16_FLAGS)


def resolve_explicit(dtype: str, device: str) -> str:
    """An explicitly asked dtype as it will run on `device`: bf16 on a CPU without bf16 falls back to
    fp32 (one warning line); int8 dynamic quantisation exists only on CPU."""
    if dtype == "int8" and device != "cpu":
        raise UserError(f"--dtype int8 (dynamic quantisation) runs on the CPU only, not on {device}: "
                        "use fp16 or bf16 there")
    if dtype == "bf16" and device == "cpu" and not bf16_supported():
        logger.warning("bf16 asked for, but this CPU has no bf16 instructions (no avx512_bf16 or amx_bf16 "
                       "flag), where bf16 is emulated and slower: using fp32")
        return "fp32"
    return dtype


# --- conversion ----------------------------------------------------------------------------------------


def convert(module: torch.nn.Module, dtype: str, inplace: bool = False) -> torch.nn.Module:
    """`module` in `dtype`: a cast for fp32/bf16/fp16, dynamic int8 quantisation of `nn.Linear` for int8.

    Returns a copy unless `inplace`. Registered extra candidates (`CONVERTERS`) take precedence.
    """
    import torch

    if dtype in CONVERTERS:
        return CONVERTERS[dtype](module if inplace else copy.deepcopy(module))
    target = module if inplace else copy.deepcopy(module)
    if dtype in FLOAT_DTYPES:
        return target.to(torch_dtype(dtype))
    if dtype == "int8":
        with warnings.catch_warnings():  # torch.ao's deprecation notices: the API works in this torch
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(target, {torch.nn.Linear}, dtype=torch.qint8,
                                                          inplace=True)
    raise UserError(f"unknown dtype {dtype!r}: choose one of {', '.join(DTYPE_CHOICES)}")


# Extra candidates by name -> a function that converts a (copied) fp32 module. Empty in normal use;
# a test registers a deliberately bad one to check that the bar keeps it out.
CONVERTERS: dict[str, Callable[[torch.nn.Module], torch.nn.Module]] = {}


def torch_dtype(dtype: str) -> torch.dtype:
    """The torch dtype of the floating-point inputs a model in `dtype` takes (an int8 model takes fp32)."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype, torch.float32)


def dtype_name(value: torch.dtype) -> str:
    """fp32, bf16 or fp16 for a torch dtype (its own name for any other)."""
    names = {str(torch_dtype(name)): name for name in FLOAT_DTYPES}
    return names.get(str(value), str(value))


# --- the auto choice -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    """One candidate measured on the probe: best seconds per probe run, and its agreement with fp32."""

    dtype: str
    seconds: float
    min_cosine: float
    top1_agreement: float
    passed: bool
    error: str | None = None


@dataclass
class DtypeChoice:
    """What `auto` chose and why: the trials (empty when read back from the cache)."""

    dtype: str
    cached: bool
    key: dict[str, str]
    trials: list[Trial] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"dtype": self.dtype, "cached": self.cached, "key": self.key,
                "trials": [asdict(trial) for trial in self.trials]}


# A probe run: the embeddings of every probe input (n, d) and the query-by-label scores (queries, labels).
ProbeRun = Callable[[], "tuple[np.ndarray, np.ndarray]"]


def auto_candidates(device: str) -> tuple[str, ...]:
    """The candidates worth measuring on `device`: fp32, bf16 where native, int8; plus any registered."""
    if device != "cpu":
        return ("fp32",)
    names = [name for name in AUTO_CANDIDATES if name != "bf16" or bf16_supported()]
    return tuple(names) + tuple(name for name in CONVERTERS if name not in names)


def _timed(run: ProbeRun) -> float:
    """Wall time of one call of `run`."""
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def agreement(embeddings: np.ndarray, scores: np.ndarray, reference: tuple[np.ndarray, np.ndarray]
              ) -> tuple[float, float]:
    """(smallest row cosine with the reference embeddings, share of rows of `scores` whose argmax is the
    reference's)."""
    import numpy as np

    ref_embeddings, ref_scores = reference
    a = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(1e-12)
    b = ref_embeddings / np.linalg.norm(ref_embeddings, axis=1, keepdims=True).clip(1e-12)
    cosine = float(np.min(np.sum(a.astype(np.float64) * b, axis=1)))
    top1 = float(np.mean(np.argmax(scores, axis=1) == np.argmax(ref_scores, axis=1)))
    return cosine, top1


def measure(build: Callable[[str], ProbeRun], candidates: Sequence[str], repeats: int = 2) -> list[Trial]:
    """Time each candidate's probe run (best of `repeats`) and compare its answer with fp32's.

    `build(dtype)` returns the probe run of the model converted to `dtype`. Every candidate is built and
    warmed up first (that first call is the answer compared with fp32's), then the timed calls go round
    the candidates in turn, so that a shared machine's changing load falls on all of them alike. fp32 is
    the reference, and it always passes.
    """
    from tqdm.auto import tqdm

    order = ["fp32"] + [name for name in candidates if name != "fp32"]
    runs, outputs, failed = {}, {}, {}
    bar = tqdm(total=len(order) * (1 + repeats), desc="choosing the dtype (once per model and CPU)",
               leave=False, disable=None)
    with bar:
        for name in order:
            try:
                run = build(name)
                outputs[name] = run()
                runs[name] = run
            except (RuntimeError, NotImplementedError, ValueError) as exc:  # a kernel missing on this CPU
                if name == "fp32":
                    raise
                failed[name] = first_line(exc, 200)
            bar.update(1 + (repeats if name in failed else 0))
        best = dict.fromkeys(runs, float("inf"))
        for _ in range(repeats):
            for name, run in runs.items():
                best[name] = min(best[name], _timed(run))
                bar.update()
    trials = []
    for name in order:
        if name in failed:
            trials.append(Trial(name, float("inf"), float("nan"), float("nan"), False, failed[name]))
            continue
        cosine, top1 = agreement(*outputs[name], outputs["fp32"])
        trials.append(Trial(name, best[name], cosine, top1, cosine >= MIN_COSINE and top1 >= MIN_TOP1))
    return trials


def pick(trials: Sequence[Trial]) -> str:
    """The fastest trial that passes the bar (fp32 always does)."""
    passing = [trial for trial in trials if trial.passed]
    return min(passing, key=lambda trial: trial.seconds).dtype if passing else "fp32"


def choice_key(model_fingerprint: str, device: str) -> dict[str, str]:
    """What the auto choice depends on: the model (its fp32 fingerprint), the device, the CPU, torch."""
    import torch

    return {"format": str(CACHE_FORMAT), "model": model_fingerprint, "device": device, "cpu": cpu_key(),
            "torch": torch.__version__, "candidates": ",".join(auto_candidates(device)),
            "bar": f"cos>={MIN_COSINE},top1>={MIN_TOP1}"}


def _record_path(key: dict[str, str]):
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return cache_dir("dtype") / f"{digest}.json"


def auto_dtype(model_fingerprint: str, build: Callable[[str], ProbeRun], device: str = "cpu",
               repeats: int = 2) -> DtypeChoice:
    """The dtype `auto` means for this model on this machine: read from the cache, else measured once.

    Off the CPU there is nothing to measure (int8 dynamic quantisation is CPU-only): fp32.
    """
    key = choice_key(model_fingerprint, device)
    candidates = auto_candidates(device)
    if candidates == ("fp32",):
        return DtypeChoice("fp32", cached=False, key=key)
    path = _record_path(key)
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("key") == key and saved.get("dtype") in candidates:
            return DtypeChoice(saved["dtype"], cached=True, key=key)
    except (OSError, ValueError, AttributeError):
        pass  # no record yet, or an unreadable one: measure again
    trials = measure(build, candidates, repeats=repeats)
    choice = DtypeChoice(pick(trials), cached=False, key=key, trials=trials)
    _save(path, choice)
    logger.info("dtype auto: %s (%s)", choice.dtype, ", ".join(
        f"{t.dtype} {t.seconds * 1000:.0f} ms cos {t.min_cosine:.5f} top1 {t.top1_agreement:.2f}"
        for t in trials))
    return choice


def _save(path, choice: DtypeChoice) -> None:
    """Write the record whole or not at all; a cache we cannot write is only slower."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(choice.to_dict(), indent=2, default=str) + "\n")
    except OSError as exc:
        logger.warning("could not cache the dtype choice in %s: %s", path, exc)


# --- fingerprints and loading: the one rule for every encoder ---------------------------------------------


def dtype_fingerprint(fp32_fingerprint: str, dtype: str) -> str:
    """The fingerprint of a model in `dtype`, from the fingerprint of its fp32 weights.

    fp32 adds nothing, so the caches and indexes made before dtypes existed stay valid. Any other dtype
    is a short hash of the fp32 fingerprint and the dtype's name: embeddings of two dtypes never share
    a cache or an index, and no fp32 fingerprint can be taken for another dtype's.
    """
    if dtype == "fp32":
        return fp32_fingerprint
    return hashlib.sha256(f"{fp32_fingerprint}|{dtype}".encode()).hexdigest()[:16]


def _tags(fp32_fingerprint: str, dtype: str) -> tuple[str, ...]:
    # Today's tag, then the sentence encoder's before one rule served both encoders (the dtype's name
    # appended), so a cache key or a captioner recorded then is still recognised.
    return (dtype_fingerprint(fp32_fingerprint, dtype), f"{fp32_fingerprint}|{dtype}")


def recorded_dtype(recorded: str | None, fp32_fingerprints: Iterable[str]) -> str | None:
    """The dtype in which the model gives the `recorded` fingerprint (an index's, a cache's, a saved
    model's), or None when it gives it in none.

    `fp32_fingerprints` are the model's fp32 fingerprints by today's rule first, then by any earlier
    rule (read lazily: an earlier rule is computed only when today's does not match).
    """
    if not recorded:
        return None
    for fp32 in fp32_fingerprints:
        for name in DTYPE_CHOICES[1:]:
            if recorded in _tags(fp32, name):
                return name
    return None


class Encoder(Protocol):
    """What `load_in_dtype` needs of a loaded encoder (`ImageTextModel`, `SentenceEncoder`)."""

    dtype_name: str
    dtype_choice: DtypeChoice | None

    def fp32_fingerprints(self) -> Iterator[str]:
        """The fingerprints of its fp32 weights: today's rule first, then earlier rules'."""
        ...

    def converted(self, dtype: str, inplace: bool = False) -> Self:
        """The encoder in another dtype (converted from fp32)."""
        ...


E = TypeVar("E", bound=Encoder)


def load_in_dtype(load: Callable[[], E], dtype: str | None, device: str, probe: Callable[[E, str], ProbeRun],
                  match_fingerprint: str | None = None) -> E:
    """Load an encoder in a number format: the one path of `load_clip` and `load_sentence_encoder`.

    1. `dtype` is checked (None is `$ZEROSHOT_DTYPE`, else auto) and an explicit one resolved for
       `device` (`resolve_explicit`) before anything loads, so a bad value costs no load;
    2. `load()` loads the model in fp32 (every fingerprint is of the fp32 weights);
    3. with auto, a `match_fingerprint` that is this model in some dtype (`recorded_dtype`) takes that
       dtype: an index or a cache made in bf16 keeps embedding in bf16 wherever it is opened, even where
       bf16 is emulated. Otherwise `auto_dtype` picks (measured once per model and CPU with
       `probe(model, dtype)`), and the result's `dtype_choice` says what it measured;
    4. the model is converted in place to the dtype (fp32 stays as loaded).
    """
    asked = check_dtype(dtype)
    if asked != "auto":
        asked = resolve_explicit(asked, device)
    model = load()
    choice = None
    if asked == "auto":
        fingerprints = model.fp32_fingerprints()
        fp32 = next(fingerprints)
        recorded = recorded_dtype(match_fingerprint, itertools.chain([fp32], fingerprints))
        if recorded is not None:
            asked = resolve_explicit(recorded, device) if recorded == "int8" else recorded
        else:
            choice = auto_dtype(fp32, lambda candidate: probe(model, candidate), device)
            asked = choice.dtype
    result = model if asked == "fp32" else model.converted(asked, inplace=True)
    result.dtype_choice = choice
    return result
