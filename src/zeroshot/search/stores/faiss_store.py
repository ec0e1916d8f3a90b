"""The embedded default vector store: FAISS in memory, cached on disk, laid out by collection size.

- Up to `FLAT_LIMIT` vectors: exact search (`IndexFlatIP`). At 50,000 x 512 a query reads 100 MB
  and takes a few milliseconds; there is nothing to tune and nothing approximate.
- Up to `IVF_LIMIT`: FAISS `PQ{d/2}x4fs` — 4-bit fast-scan product quantization with one sub-quantizer
  per 2 dimensions (d/2 bytes a vector, scanned with SIMD), whose best `k_factor * k` candidates are then
  re-ranked exactly against the catalog's own copy of the vectors (`vectors`, the catalog: a memory-mapped
  float16 file, see `vector_file.py`). Every code is scanned, so no assumption about the data is made:
  on 1,000,000 random 512-d unit vectors, recall@10 0.99 at a p50 of 12-22 ms on 2 cores with the
  exact copy in RAM (issue 4); re-ranking from the file instead measured 1.4x that, side by side, on
  1M clustered vectors (issue 18). The scan grows linearly with the collection, hence IVF beyond.
- More: FAISS `IVF{nlist},PQ{d/8}` — an inverted file of `nlist` k-means cells (about sqrt(n), a power
  of two, at most 1,024: see `ivf_cells`) holding 8-bit PQ codes (d/8 bytes a vector: 64 for d = 512);
  a query scans the `nprobe` nearest cells and re-ranks the best `k_factor * k` exactly, as above. It
  relies on the data having clusters, as image embeddings do (random points defeat it).
  In memory: codes and ids, 72 bytes a vector at d = 512 (720 MB at 10M); exact vectors stay on disk.
  Codebooks are trained on a seeded sample (`training_size`); the layout is rebuilt when the collection
  outgrows its training (4x) or crosses a limit (with hysteresis). An odd dimension stays exact.

Without a `vectors` source to re-rank from (a store used on its own), every size stays exact.

FAISS cannot remove vectors from a fast-scan index, so there `remove` re-encodes the remaining
vectors, read back from the catalog, with the already trained codebooks: one pass over the collection,
done once per write session since the catalog removes orphans in one batch. The IVF layout removes in
place.

The index file is a cache of the catalog (`vectors.faiss` + `vectors.json` with the catalog version it
matches), written to a temporary file and renamed into place, so a crash leaves the old cache or the
new one, never half of one; an unreadable cache, or one of a layout this version does not build (the
former IVF-flat and `PQ..x4fs,RFlat` layouts), is simply rebuilt. A long build saves checkpoints
(version -1, never a real one) so an interrupted build resumes with what it had added. FAISS reads
damaged bytes without complaint (a scribbled page gave scores of 1e37), so the SHA-256 of each cache
file is recorded in the catalog when it is saved and checked when it is opened: a cache without a
matching checksum is rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

# FAISS's OpenMP threads spin while they wait for work. On a machine whose cores other processes also
# use, that spinning starves the thread doing the work: a 256-centroid k-means took 1.9 s spinning and
# 0.1 s with PASSIVE waiting (load ~9 on 2 cores). Read once, when FAISS's own OpenMP runtime loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from zeroshot.errors import UserError, storage_error
from zeroshot.files import write_atomic

FLAT_LIMIT = 50_000
IVF_LIMIT = 2_000_000
REGROW_FACTOR = 4
SMALL_TRAINING, LARGE_TRAINING = 65_536, 262_144
# Candidates re-ranked exactly = K_FACTOR * k. Measured on 1M random 512-d vectors (bench.search_1m):
# 20 -> recall@10 ~0.97, 50 -> ~0.996, 100 -> ~0.999, all at about the same latency, because the
# fast-scan pass over every code dominates; 50 buys margin for data harder than random.
DEFAULT_K_FACTOR = 50
# Queries in one call below which search runs on `threads` OpenMP threads (training and adding always
# do): FAISS parallelises a single query poorly, and on a busy 2-core machine the thread hand-offs cost
# 5-8x (measured: PQ training 6 s vs 50 s, a 200k-vector query 6 ms vs 32 ms with load ~6; assigning
# vectors to 4,096 IVF cells 13,077 vectors/s on 1 thread against 7,722 on 2, load 5.9).
SMALL_BATCH = 20


class FaissStore:
    """FAISS behind the `VectorStore` interface (see the module docstring).

    `vectors` is where exact vectors are read for re-ranking (the catalog); without it every size stays
    exact. `k_factor` (default `DEFAULT_K_FACTOR`) sets how many candidates per result are re-ranked;
    `nprobe` how many IVF cells a query scans (default `default_nprobe(nlist)`); `threads` is the OpenMP
    thread count for training, adding and small query batches (None leaves FAISS's own setting);
    `layout` ("flat", "pq", "ivf") forces a layout for every size, for benchmarks.
    """

    def __init__(self, folder: Path, dim: int, k_factor: int | None = None, cache: bool = True,
                 threads: int | None = 1, checksums: Checksums | None = None,
                 vectors: VectorSource | None = None, nprobe: int | None = None,
                 layout: str | None = None) -> None:
        for name, value in (("k_factor", k_factor), ("nprobe", nprobe)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise UserError(f"{name} must be a positive integer, not {value!r}")
        if layout not in (None, "flat", "pq", "ivf"):
            raise UserError(f"unknown FAISS layout {layout!r}: choose flat, pq or ivf")
        self.folder = Path(folder)
        self.dim = dim
        self.k_factor = k_factor
        self.nprobe = nprobe
        self.cache = cache
        self.threads = threads
        self.checksums = checksums
        self.vectors = vectors
        self.forced_layout = layout
        self._index_path = self.folder / "vectors.faiss"
        self._state_path = self.folder / "vectors.json"
        self._version: int | None = None
        self._trained_on = 0
        self._index: faiss.Index = (self._load() if cache else None) or _flat(dim)

    # --- layout -----------------------------------------------------------------------------------

    @property
    def layout(self) -> str:
        """"flat", "pq<m>x4fs" (m = dim/2) or "ivf<nlist>,pq<m>" (m = dim/8)."""
        layout = _layout_of(self._index)
        assert layout is not None  # only indexes this class builds get in (see `_load`)
        return layout

    def kind_for(self, count: int) -> str:
        """The layout kind ("flat", "pq", "ivf") a collection of `count` vectors gets."""
        if self.vectors is None or self.dim % 2:
            return "flat"
        if self.forced_layout is not None:
            return "ivf" if self.forced_layout == "ivf" and self.dim % 8 else self.forced_layout
        if count <= FLAT_LIMIT:
            return "flat"
        return "ivf" if count > IVF_LIMIT and self.dim % 8 == 0 else "pq"

    def training_size(self, count: int) -> int:
        """How many vectors `reset` wants to train on for a collection of `count`."""
        return LARGE_TRAINING if self.kind_for(count) == "ivf" else SMALL_TRAINING

    def needs_rebuild(self, count: int) -> bool:
        layout = self.layout
        kind = "flat" if layout == "flat" else "ivf" if layout.startswith("ivf") else "pq"
        wanted = self.kind_for(count)
        if kind == wanted:
            return kind != "flat" and count > REGROW_FACTOR * self._trained_on
        if self.forced_layout is not None or self.vectors is None:
            return True
        # Hysteresis: a collection hovering at a limit is not rebuilt back and forth.
        if kind == "pq" and wanted == "flat":
            return count < FLAT_LIMIT // 2
        if kind == "ivf" and wanted == "pq":
            return count < IVF_LIMIT // 2
        return True

    def reset(self, count: int, training: np.ndarray) -> None:
        self._version = None
        kind = self.kind_for(count)
        if kind == "flat" or len(training) == 0:
            self._index = _flat(self.dim)
            self._trained_on = 0
            return
        training = np.ascontiguousarray(training, dtype=np.float32)
        if kind == "pq":
            # index_factory builds IndexIDMap2 -> IndexPQFastScan with the wrapper owning its part, so
            # nothing is freed under the outer index by Python's GC.
            index = faiss.index_factory(self.dim, f"IDMap2,PQ{self.dim // 2}x4fs", faiss.METRIC_INNER_PRODUCT)
            with _omp_threads(self.threads):
                index.train(training)
        else:
            nlist = ivf_cells(count)
            index = faiss.index_factory(self.dim, f"IVF{nlist},PQ{self.dim // 8}", faiss.METRIC_INNER_PRODUCT)
            # On by default for IVF-PQ; it only serves Hamming-distance filtering, which this store does
            # not use, and took 50 of the 65 s of training on 3,000 vectors.
            index.do_polysemous_training = False
            with _omp_threads(self.threads):
                index.train(training)
        self._index = index
        self._trained_on = count

    # --- VectorStore --------------------------------------------------------------------------------

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self._version = None
            with _omp_threads(self.threads):
                self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                         np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if not len(ids):
            return
        self._version = None
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not self.layout.startswith("pq"):
            self._index.remove_ids(ids)
            return
        # No remove_ids for fast-scan PQ (see the module docstring): re-encode the remaining vectors,
        # read back from the catalog in insertion order, keeping the trained codebooks.
        have = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        keep = have[~np.isin(have, ids)]
        if len(keep) == len(have):
            return
        self._index.reset()
        for start in range(0, len(keep), 100_000):
            part = keep[start:start + 100_000]
            self._index.add_with_ids(self.vectors.vectors(part), part)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, len(self)))
        if len(self) == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        layout = self.layout
        if layout == "flat":
            return self._index.search(queries, k)
        depth = min(len(self), k * (self.k_factor or DEFAULT_K_FACTOR))
        params = None
        if layout.startswith("ivf"):
            nlist = faiss.extract_index_ivf(self._index).nlist
            params = faiss.SearchParametersIVF(nprobe=min(nlist, self.nprobe or default_nprobe(nlist)))
        with _omp_threads(self.threads if len(queries) < SMALL_BATCH else None):
            _, candidates = self._index.search(queries, depth, params=params)
        return self._rerank(queries, candidates, k)

    def _rerank(self, queries: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores of each query's candidates, read from the catalog; the best `k`, best first."""
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        for row, (query, found) in enumerate(zip(queries, candidates, strict=True)):
            found = found[found >= 0]
            # Not `@`: OpenBLAS threads a (1000, 512) x (512,) product, and on the busy 2-core machine
            # that took 0.48 ms against 0.014 ms at 500 rows (20+ ms under load); einsum stays on one.
            exact = np.einsum("ij,j->i", self.vectors.vectors(found), query)
            best = np.argsort(-exact, kind="stable")[:k]
            scores[row, :len(best)], ids[row, :len(best)] = exact[best], found[best]
        return scores, ids

    def ids(self) -> np.ndarray:
        if isinstance(self._index, faiss.IndexIDMap2):
            return np.sort(faiss.vector_to_array(self._index.id_map).astype(np.int64))
        lists = faiss.extract_index_ivf(self._index).invlists
        parts = [faiss.rev_swig_ptr(lists.get_ids(cell), lists.list_size(cell)).copy()
                 for cell in range(lists.nlist) if lists.list_size(cell)]
        return np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)

    def synced_version(self) -> int | None:
        return self._version

    def save(self, version: int, durable: bool = True) -> None:
        self._version = version if version >= 0 else None
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

    def _load(self) -> faiss.Index | None:
        try:
            if self.checksums is not None and not all(
                    _sha256(path) == self.checksums.checksum(path.name)
                    for path in (self._index_path, self._state_path)):
                return None  # changed since it was saved (or saved before checksums were recorded)
            state = json.loads(self._state_path.read_text())
            index = faiss.read_index(str(self._index_path))
        except (OSError, ValueError, RuntimeError):
            return None  # no cache yet, or a damaged one: `sync` rebuilds it from the catalog
        layout = _layout_of(index)
        if index.d != self.dim or state.get("count") != index.ntotal or layout is None:
            return None  # another dimension, a torn pair of files, or an older layout: rebuild
        if layout != "flat" and self.vectors is None:
            return None  # nothing to re-rank from here: this store stays exact
        version = int(state["version"])
        self._version = version if version >= 0 else None  # -1: a checkpoint of an unfinished build
        self._trained_on = int(state.get("trained_on", 0))
        return index


MAX_CELLS = 1_024


def ivf_cells(count: int) -> int:
    """IVF cells for `count` vectors: about sqrt(count), a power of two, at most `MAX_CELLS`.

    More cells make each query cheaper but every vector's assignment dearer: a build compares each
    vector with every cell centre. At 10M x 512 and 4,096 cells that is 4e13 FLOPs, over an hour on the
    busy 2-core machine (assignment ran at 13k vectors/s on one idle core, far less under load); 1,024
    cells cost a quarter, and a query then scans 16/1,024 of 10M = 160k codes of 64 bytes, a few ms.
    """
    return int(2 ** np.clip(round(np.log2(max(count, 1)) / 2), 4, np.log2(MAX_CELLS)))


def default_nprobe(nlist: int) -> int:
    """Cells a query scans by default: 1/64 of them, at least 16 (16 of 1,024 from 1M vectors on)."""
    return max(16, nlist // 64)


def _flat(dim: int) -> faiss.IndexIDMap2:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def _layout_of(index: faiss.Index) -> str | None:
    """The layout name of an index this module builds, None for anything else."""
    if isinstance(index, faiss.IndexIVFPQ) and not isinstance(index, faiss.IndexIVFPQR):
        return f"ivf{index.nlist},pq{index.pq.M}"
    if not isinstance(index, faiss.IndexIDMap2):
        return None
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexFlat):
        return "flat"
    if isinstance(inner, faiss.IndexPQFastScan):
        return f"pq{inner.pq.M}x4fs"
    return None


class VectorSource(Protocol):
    """Where exact vectors are read by id for re-ranking (the catalog)."""

    def vectors(self, ids: np.ndarray) -> np.ndarray: ...


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
    """`write_atomic` (synced to disk) with the SHA-256 of what was written, and a full or read-only disk
    as a one-line `UserError`."""
    digest = []

    def write_and_hash(tmp: Path) -> None:
        write(tmp)
        digest.append(_sha256(tmp))  # of the temporary file: what the rename puts in place

    try:
        write_atomic(path, write_and_hash, fsync=True)
    except (OSError, RuntimeError) as exc:  # FAISS reports a failed fwrite as a RuntimeError
        error = storage_error(exc, path, "saving the search cache")
        if error is None:
            raise
        raise error from exc
    return digest[0]
