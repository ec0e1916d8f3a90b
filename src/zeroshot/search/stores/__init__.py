"""Vector stores behind one small interface: the embedded default (FAISS) and a distributed one (Milvus).

A store only holds (id, vector) pairs and answers inner-product top-k queries; the SQLite catalog
(`catalog.py`) holds the truth — metadata and every embedding — so a store can always be brought back
in step with it (`sync`) after a crash, a copy, or a change made by another process.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

import numpy as np

from zeroshot.errors import UserError
from zeroshot.search.stores.catalog import Catalog

STORE_KINDS = ("faiss", "milvus")


class VectorStore(Protocol):
    """Inner-product top-k over (int64 id, float32 vector) pairs."""

    dim: int

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> None: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (len(queries), k), best first; missing slots have id -1."""
        ...

    def ids(self) -> np.ndarray: ...

    def synced_version(self) -> int | None:
        """The catalog version this store was last saved in step with (None: unknown)."""
        ...

    def save(self, version: int, durable: bool = True) -> None:
        """Record that the contents match catalog `version`; with `durable`, persist them first.

        `version` -1 saves a checkpoint of an unfinished build: kept, but in step with no version.

        Only the process holding the index's write lock saves durably, so two processes never race to
        write one cache.
        """
        ...

    def needs_rebuild(self, count: int) -> bool:
        """Whether an index of `count` vectors should be built afresh (e.g. a different FAISS layout)."""
        ...

    def reset(self, count: int, training: np.ndarray) -> None:
        """Empty the store and lay it out for `count` vectors, trained on the `training` sample."""
        ...

    def close(self) -> None: ...

    def __len__(self) -> int: ...


def open_store(kind: str, folder: Path, dim: int, catalog: Catalog | None = None, **options) -> VectorStore:
    """The store `kind` ("faiss" or "milvus") for the index in `folder`.

    With `catalog`, the FAISS store's cache files are checked against the checksums recorded there.
    """
    if kind == "faiss":
        from zeroshot.search.stores.faiss_store import FaissStore

        return FaissStore(folder, dim, checksums=catalog, vectors=catalog, **options)
    if kind == "milvus":
        from zeroshot.search.stores.milvus_store import MilvusStore

        return MilvusStore(folder, dim, **options)
    raise UserError(f"unknown vector store {kind!r}: choose one of {', '.join(STORE_KINDS)}")


def sync(store: VectorStore, catalog: Catalog, durable: bool = True, progress: bool = False
         ) -> tuple[int, int]:
    """Bring `store` in step with `catalog` by id: add what it lacks, drop what the catalog dropped.

    Catalog ids are never reused and a vector never changes under its id, so comparing id sets is
    exact. Returns (added, removed); cheap when the versions already match.
    """
    version = catalog.version
    if store.synced_version() == version:
        # Checked before anything else: a query calls this, and counting 10M rows costs a second.
        return 0, 0
    count = catalog.count_vectors()
    if store.needs_rebuild(count):
        size = getattr(store, "training_size", lambda _: TRAINING_SAMPLE)(count)
        store.reset(count, _training_sample(catalog, count, size))
    have = store.ids()
    want = catalog.vector_ids()
    extra = np.setdiff1d(have, want, assume_unique=True)
    missing = np.setdiff1d(want, have, assume_unique=True)
    if len(extra):
        store.remove(extra)
    if len(missing):
        from tqdm.auto import tqdm

        with tqdm(total=len(missing), unit="vec", desc="rebuilding vector index", disable=not progress,
                  leave=False) as bar:
            chunk = None if len(missing) == len(want) else missing.tolist()
            saved = time.monotonic()
            for ids, vectors in catalog.iter_vectors(chunk):
                store.add(ids, vectors)
                bar.update(len(ids))
                if durable and time.monotonic() - saved > CHECKPOINT_SECONDS:
                    # A long build (millions of vectors) keeps what it added if it is interrupted: the
                    # next sync finds these ids present and adds only the rest. -1 is no catalog version.
                    store.save(-1, durable)
                    saved = time.monotonic()
    store.save(version, durable)
    return int(len(missing)), int(len(extra))


TRAINING_SAMPLE = 65_536
CHECKPOINT_SECONDS = 300.0


def _training_sample(catalog: Catalog, count: int, size: int = TRAINING_SAMPLE, seed: int = 0) -> np.ndarray:
    # A seeded random sample, not the first rows: ids follow insertion order, often one folder at a time.
    ids = catalog.vector_ids()
    if len(ids) > size:
        ids = np.sort(np.random.default_rng(seed).choice(ids, size, replace=False))
    parts = [vectors for _, vectors in catalog.iter_vectors(ids.tolist())]
    dim = int(catalog.info().get("embedding_dim", "0"))
    return np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)
