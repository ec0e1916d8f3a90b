"""The embedded default vector store: FAISS in memory, cached on disk, laid out by collection size.

- Up to `FLAT_LIMIT` vectors: exact search (`IndexFlatIP`). At 50,000 x 512 a query reads 100 MB
  and takes a few milliseconds; there is nothing to tune and nothing approximate.
- More: FAISS `PQ{d/2}x4fs,RFlat` — 4-bit fast-scan product quantization with one sub-quantizer per
  2 dimensions (d/2 bytes a vector, scanned with SIMD), whose best `k_factor * k` candidates are then
  re-ranked exactly against the full vectors kept beside the codes. On 1,000,000 random 512-d unit
  vectors this gives recall@10 0.993 at a p50 of 16-22 ms on 2 cores, depending on their load
  (`python -m bench.search_1m`), where IVF gave 0.18 at 27 ms (random points have no clusters to
  partition). The PQ pass still touches every vector, but as 4 bits per 2 dims: 128 bytes for
  d = 512, so 1M vectors are 128 MB of codes.
  The 16-centroid codebooks are trained on a seeded sample (`stores.TRAINING_SAMPLE`); the layout is
  rebuilt when the collection outgrows that training (4x) or shrinks back under half the flat limit.
  An odd dimension cannot be split into 2-d sub-quantizers, so such collections stay exact.

FAISS cannot remove vectors from this index (`remove_ids` is not implemented for fast-scan PQ nor for
the re-ranking wrapper), so `remove` re-encodes the remaining vectors, read back from the exact copy,
with the already trained codebooks: one pass over the collection (seconds per 100k vectors), done once
per write session since the catalog removes orphans in one batch.

The index file is a cache of the catalog (`vectors.faiss` + `vectors.json` with the catalog version it
matches), written to a temporary file and renamed into place, so a crash leaves the old cache or the
new one, never half of one; an unreadable cache, or one of a layout this version does not build (the
former IVF layout), is simply rebuilt. FAISS reads damaged bytes without complaint (a scribbled page
gave scores of 1e37), so the SHA-256 of each cache file is recorded in the catalog when it is saved
and checked when it is opened: a cache without a matching checksum is rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import faiss
import numpy as np

from zeroshot.errors import UserError, storage_error

FLAT_LIMIT = 50_000
REGROW_FACTOR = 4
# Candidates re-ranked exactly = K_FACTOR * k. Measured on 1M random 512-d vectors (bench.search_1m):
# 20 -> recall@10 ~0.97, 50 -> ~0.996, 100 -> ~0.999, all at about the same latency, because the
# fast-scan pass over every code dominates; 50 buys margin for data harder than random.
DEFAULT_K_FACTOR = 50
# Queries in one call below which training and search run on one OpenMP thread: FAISS parallelises a
# single query poorly, and on a busy 2-core machine the thread hand-offs cost 5-8x (measured: PQ
# training 6 s vs 50 s, a 200k-vector query 6 ms vs 32 ms with load ~6).
SMALL_BATCH = 20


class FaissStore:
    """FAISS behind the `VectorStore` interface (see the module docstring).

    `k_factor` (default `DEFAULT_K_FACTOR`) sets how many PQ candidates per result are re-ranked
    exactly on large collections; `threads` is the OpenMP thread count for training and for small query
    batches (None leaves FAISS's own setting).
    """

    def __init__(self, folder: Path, dim: int, k_factor: int | None = None, cache: bool = True,
                 threads: int | None = 1, checksums: Checksums | None = None) -> None:
        if k_factor is not None and (not isinstance(k_factor, int) or k_factor < 1):
            raise UserError(f"k_factor must be a positive integer, not {k_factor!r}")
        self.folder = Path(folder)
        self.dim = dim
        self.k_factor = k_factor
        self.cache = cache
        self.threads = threads
        self.checksums = checksums
        self._index_path = self.folder / "vectors.faiss"
        self._state_path = self.folder / "vectors.json"
        self._version: int | None = None
        self._trained_on = 0
        self._index: faiss.IndexIDMap2 = (self._load() if cache else None) or _flat(dim)

    # --- layout -----------------------------------------------------------------------------------

    @property
    def layout(self) -> str:
        """"flat" or "pq<m>x4fs,rflat" (m = dim/2)."""
        layout = _layout_of(self._index)
        assert layout is not None  # only indexes this class builds get in (see `_load`)
        return layout

    def needs_rebuild(self, count: int) -> bool:
        if self.layout == "flat":
            return count > FLAT_LIMIT and self.dim % 2 == 0
        return count < FLAT_LIMIT // 2 or count > REGROW_FACTOR * self._trained_on

    def reset(self, count: int, training: np.ndarray) -> None:
        self._version = None
        if count <= FLAT_LIMIT or len(training) == 0 or self.dim % 2:
            self._index = _flat(self.dim)
            self._trained_on = 0
            return
        # index_factory builds IndexIDMap2 -> IndexRefineFlat -> (IndexPQFastScan, IndexFlat) with each
        # wrapper owning its parts, so nothing is freed under the outer index by Python's GC.
        factory = f"IDMap2,PQ{self.dim // 2}x4fs,RFlat"
        index = faiss.index_factory(self.dim, factory, faiss.METRIC_INNER_PRODUCT)
        with _omp_threads(self.threads):
            index.train(np.ascontiguousarray(training, dtype=np.float32))
        self._index = index
        self._trained_on = count

    # --- VectorStore --------------------------------------------------------------------------------

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self._version = None
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                     np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if not len(ids):
            return
        self._version = None
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self.layout == "flat":
            self._index.remove_ids(ids)
            return
        # No remove_ids here (see the module docstring): rebuild the contents from the exact copy the
        # re-ranking keeps, in insertion order, keeping the trained codebooks (`reset` keeps training).
        have = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        keep = ~np.isin(have, ids)
        if keep.all():
            return
        refine = faiss.downcast_index(faiss.downcast_index(self._index.index).refine_index)
        vectors = refine.reconstruct_n(0, refine.ntotal)
        self._index.reset()
        self._index.add_with_ids(np.ascontiguousarray(vectors[keep]), np.ascontiguousarray(have[keep]))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, len(self)))
        if len(self) == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if self.layout == "flat":
            return self._index.search(queries, k)
        # IndexIDMap2 hands these parameters through to the re-ranking index.
        params = faiss.IndexRefineSearchParameters(k_factor=float(self.k_factor or DEFAULT_K_FACTOR))
        with _omp_threads(self.threads if len(queries) < SMALL_BATCH else None):
            return self._index.search(queries, k, params=params)

    def ids(self) -> np.ndarray:
        return np.sort(faiss.vector_to_array(self._index.id_map).astype(np.int64))

    def synced_version(self) -> int | None:
        return self._version

    def save(self, version: int, durable: bool = True) -> None:
        self._version = version
        if not (self.cache and durable):
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        # The index first, then the state naming its version: a crash between the two leaves a state
        # that under-claims, which only costs a re-check by id. The checksums go last: a crash before
        # them leaves files that fail the check, which only costs a rebuild.
        digests = {self._index_path.name: _write_atomically(
            self._index_path, lambda tmp: faiss.write_index(self._index, str(tmp)))}
        state = {"version": version, "count": len(self), "dim": self.dim, "layout": self.layout,
                 "trained_on": self._trained_on}
        digests[self._state_path.name] = _write_atomically(
            self._state_path, lambda tmp: tmp.write_text(json.dumps(state)))
        if self.checksums is not None:
            self.checksums.record_checksums(digests)

    def close(self) -> None:
        self._index = _flat(self.dim)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def _load(self) -> faiss.IndexIDMap2 | None:
        try:
            if self.checksums is not None and not all(
                    _sha256(path) == self.checksums.checksum(path.name)
                    for path in (self._index_path, self._state_path)):
                return None  # changed since it was saved (or saved before checksums were recorded)
            state = json.loads(self._state_path.read_text())
            index = faiss.read_index(str(self._index_path))
        except (OSError, ValueError, RuntimeError):
            return None  # no cache yet, or a damaged one: `sync` rebuilds it from the catalog
        if index.d != self.dim or state.get("count") != index.ntotal or _layout_of(index) is None:
            return None  # another dimension, a torn pair of files, or an older layout (IVF): rebuild
        self._version = int(state["version"])
        self._trained_on = int(state.get("trained_on", 0))
        return index


def _flat(dim: int) -> faiss.IndexIDMap2:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def _layout_of(index: faiss.Index) -> str | None:
    """The layout name of an index this module builds, None for anything else."""
    if not isinstance(index, faiss.IndexIDMap2):
        return None
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexFlat):
        return "flat"
    if isinstance(inner, faiss.IndexRefine) and isinstance(faiss.downcast_index(inner.base_index),
                                                           faiss.IndexPQFastScan):
        return f"pq{faiss.downcast_index(inner.base_index).pq.M}x4fs,rflat"
    return None


@contextmanager
def _omp_threads(count: int | None) -> Iterator[None]:
    # OpenMP's thread count is per calling thread, so setting and restoring it here does not affect
    # searches running in other Python threads.
    if count is None:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class Checksums(Protocol):
    """Where the checksums of the cache files are kept (the index's catalog)."""

    def checksum(self, name: str) -> str | None: ...

    def record_checksums(self, checksums: dict[str, str]) -> None: ...


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _write_atomically(path: Path, write: Callable[[Path], object]) -> str:
    """Write `path` through a temporary file renamed into place; return the SHA-256 of what was written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        digest = _sha256(tmp)
        os.replace(tmp, path)
        return digest
    except (OSError, RuntimeError) as exc:  # FAISS reports a failed fwrite as a RuntimeError
        error = storage_error(exc, path, "saving the search cache")
        if error is None:
            raise
        raise error from exc
    finally:
        tmp.unlink(missing_ok=True)
