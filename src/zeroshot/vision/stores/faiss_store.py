"""The embedded default vector store: FAISS in memory, cached on disk, laid out by collection size.

- Fewer than `FLAT_LIMIT` vectors: exact search (`IndexFlatIP`). At 50,000 x 512 a query reads 100 MB
  and takes a few milliseconds; there is nothing to tune and nothing approximate.
- More: `IndexIVFFlat` with `nlist` ~ sqrt(n) lists (a power of two, 256..4096) trained with k-means on a
  seeded sample of 65,536 vectors; a query scans the `nprobe` nearest lists. Unlike FAISS's HNSW it
  supports removing vectors, which incremental re-indexing needs. The layout is rebuilt when the
  collection outgrows the training (4x) or shrinks back under half the flat limit.

The index file is a cache of the catalog (`vectors.faiss` + `vectors.json` with the catalog version it
matches), written to a temporary file and renamed into place, so a crash leaves the old cache or the
new one, never half of one; an unreadable cache is simply rebuilt.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import faiss
import numpy as np

FLAT_LIMIT = 50_000
REGROW_FACTOR = 4


def choose_nlist(count: int) -> int:
    """Inverted lists for `count` vectors: the power of two nearest sqrt(count), within 256..4096."""
    return int(min(4096, max(256, 2 ** round(math.log2(max(1.0, math.sqrt(count)))))))


def default_nprobe(nlist: int) -> int:
    """Lists scanned per query: 1/16 of them, at least 16 (chosen with `python -m bench.search_1m`)."""
    return max(16, nlist // 16)


class FaissStore:
    """FAISS behind the `VectorStore` interface (see the module docstring)."""

    def __init__(self, folder: Path, dim: int, nprobe: int | None = None, cache: bool = True) -> None:
        self.folder = Path(folder)
        self.dim = dim
        self.nprobe = nprobe
        self.cache = cache
        self._index_path = self.folder / "vectors.faiss"
        self._state_path = self.folder / "vectors.json"
        self._version: int | None = None
        self._trained_on = 0
        self._index = self._load() if cache else None
        if self._index is None:
            self._index = _flat(dim)

    # --- layout -----------------------------------------------------------------------------------

    @property
    def layout(self) -> str:
        """"flat" or "ivf<nlist>"."""
        if isinstance(self._index, faiss.IndexIDMap2):
            return "flat"
        return f"ivf{faiss.extract_index_ivf(self._index).nlist}"

    def needs_rebuild(self, count: int) -> bool:
        if self.layout == "flat":
            return count > FLAT_LIMIT
        return count < FLAT_LIMIT // 2 or count > REGROW_FACTOR * self._trained_on

    def reset(self, count: int, training: np.ndarray) -> None:
        self._version = None
        if count <= FLAT_LIMIT or len(training) == 0:
            self._index = _flat(self.dim)
            self._trained_on = 0
            return
        nlist = min(choose_nlist(count), max(1, len(training) // 39))  # k-means wants >= 39 points a list
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = 0
        index.train(np.ascontiguousarray(training, dtype=np.float32))
        index.own_fields = True
        quantizer.this.disown()
        self._index = index
        self._trained_on = count

    # --- VectorStore --------------------------------------------------------------------------------

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self._version = None
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                     np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self._version = None
            self._index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, len(self)))
        if len(self) == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        params = None
        if self.layout != "flat":
            nlist = faiss.extract_index_ivf(self._index).nlist
            params = faiss.SearchParametersIVF(nprobe=min(nlist, self.nprobe or default_nprobe(nlist)))
        return self._index.search(queries, k, params=params)

    def ids(self) -> np.ndarray:
        if self.layout == "flat":
            return faiss.vector_to_array(self._index.id_map).astype(np.int64)
        invlists = faiss.extract_index_ivf(self._index).invlists
        parts = []
        for list_no in range(invlists.nlist):
            size = invlists.list_size(list_no)
            if size:
                parts.append(faiss.rev_swig_ptr(invlists.get_ids(list_no), size).copy())
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    def synced_version(self) -> int | None:
        return self._version

    def save(self, version: int, durable: bool = True) -> None:
        self._version = version
        if not (self.cache and durable):
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        # The index first, then the state naming its version: a crash between the two leaves a state
        # that under-claims, which only costs a re-check by id.
        _write_atomically(self._index_path, lambda tmp: faiss.write_index(self._index, str(tmp)))
        state = {"version": version, "count": len(self), "dim": self.dim, "layout": self.layout,
                 "trained_on": self._trained_on}
        _write_atomically(self._state_path, lambda tmp: tmp.write_text(json.dumps(state)))

    def close(self) -> None:
        self._index = _flat(self.dim)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def _load(self):
        try:
            state = json.loads(self._state_path.read_text())
            index = faiss.read_index(str(self._index_path))
        except (OSError, ValueError, RuntimeError):
            return None  # no cache yet, or a damaged one: `sync` rebuilds it from the catalog
        if index.d != self.dim or state.get("count") != index.ntotal:
            return None
        self._version = int(state["version"])
        self._trained_on = int(state.get("trained_on", 0))
        return index


def _flat(dim: int) -> faiss.Index:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def _write_atomically(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
