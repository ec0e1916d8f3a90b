"""Vector stores: FAISS layouts and its on-disk cache, Milvus (Lite) giving the embedded store's answers."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from test_search import make_images
from zeroshot.search.index import ImageIndex
from zeroshot.search.stores import faiss_store, sync
from zeroshot.search.stores.catalog import Catalog
from zeroshot.search.stores.faiss_store import FaissStore


def unit_vectors(count: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def filled_catalog(folder, vectors: np.ndarray) -> Catalog:
    catalog = Catalog(folder / "catalog.sqlite")
    catalog.set_info({"embedding_dim": str(vectors.shape[1])})
    with catalog.transaction() as db:
        for i, vector in enumerate(vectors):
            vector_id = catalog.insert_vector(db, f"sha{i}", vector)
            catalog.put_file(db, f"/img/{i}.jpg", vector_id, 1, 1, None, None)
    return catalog


def recall_at_10(found: np.ndarray, queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray) -> float:
    exact = ids[np.argsort(-(queries @ vectors.T), axis=1)[:, :10]]
    return float(np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact, strict=True)]))


def test_large_collections_switch_to_pq_rerank_keep_recall_and_remove(tmp_path, monkeypatch):
    monkeypatch.setattr(faiss_store, "FLAT_LIMIT", 1_000)
    # Random vectors, the hard case: no clusters for an index to exploit, so recall comes from the
    # exact re-ranking of k_factor * k PQ candidates, not from the data being easy.
    vectors = unit_vectors(2_000, 64, seed=0)
    catalog = filled_catalog(tmp_path, vectors)
    store = FaissStore(tmp_path, 64, vectors=catalog)
    sync(store, catalog)
    assert store.layout == "pq32x4fs" and len(store) == 2_000
    queries = unit_vectors(50, 64, seed=1)
    ids = np.arange(1, 2_001)  # catalog ids start at 1
    _, found = store.search(queries, 10)
    assert recall_at_10(found, queries, vectors, ids) >= 0.95

    # FAISS cannot remove_ids from this index: the store re-encodes the rest from the catalog.
    with catalog.transaction() as db:
        for i in range(0, 2_000, 2):
            catalog.delete_file(db, f"/img/{i}.jpg")
        catalog.delete_orphans(db)
    assert sync(store, catalog) == (0, 1_000)
    assert store.layout == "pq32x4fs" and len(store) == 1_000
    assert np.array_equal(store.ids(), catalog.vector_ids())
    kept = np.arange(1, 2_000, 2)
    _, found = store.search(queries, 10)
    assert not set(found.ravel()) - set(ids[kept])  # no removed id comes back, ids still map right
    assert recall_at_10(found, queries, vectors[kept], ids[kept]) >= 0.95
    _, own = store.search(vectors[kept[:20]], 1)
    assert np.array_equal(own[:, 0], ids[kept[:20]])  # each vector finds itself under its own id

    reloaded = FaissStore(tmp_path, 64, vectors=catalog)  # the saved cache is this layout and is trusted
    assert reloaded.layout == "pq32x4fs" and sync(reloaded, catalog) == (0, 0)
    assert np.array_equal(reloaded.search(queries, 10)[1], found)


def test_a_cache_of_a_former_layout_is_rebuilt(tmp_path, monkeypatch):
    vectors = unit_vectors(300, 16, seed=0)
    catalog = filled_catalog(tmp_path, vectors)
    old = faiss.index_factory(16, "IVF4,Flat", faiss.METRIC_INNER_PRODUCT)
    old.train(vectors)
    old.add_with_ids(vectors, np.arange(1, 301))
    faiss.write_index(old, str(tmp_path / "vectors.faiss"))
    (tmp_path / "vectors.json").write_text(json.dumps({"version": catalog.version, "count": 300}))
    store = FaissStore(tmp_path, 16)
    assert len(store) == 0 and sync(store, catalog) == (300, 0) and store.layout == "flat"

    # The PQ layout with a float32 copy inside the index (before issue 18) is not trusted either.
    monkeypatch.setattr(faiss_store, "FLAT_LIMIT", 100)
    old = faiss.index_factory(16, "IDMap2,PQ8x4fs,RFlat", faiss.METRIC_INNER_PRODUCT)
    old.train(vectors)
    old.add_with_ids(vectors, np.arange(1, 301))
    faiss.write_index(old, str(tmp_path / "vectors.faiss"))
    (tmp_path / "vectors.json").write_text(json.dumps({"version": catalog.version, "count": 300}))
    store = FaissStore(tmp_path, 16, vectors=catalog)
    assert len(store) == 0 and sync(store, catalog) == (300, 0) and store.layout == "pq8x4fs"


def test_cache_is_reused_and_a_stale_one_is_repaired(tmp_path):
    vectors = unit_vectors(300, 16, seed=0)
    catalog = filled_catalog(tmp_path, vectors)
    store = FaissStore(tmp_path, 16)
    assert sync(store, catalog) == (300, 0)
    assert FaissStore(tmp_path, 16).synced_version() == catalog.version  # the saved cache is trusted
    assert sync(FaissStore(tmp_path, 16), catalog) == (0, 0)

    with catalog.transaction() as db:  # another writer: the cache is now behind
        catalog.delete_file(db, "/img/0.jpg")
        catalog.delete_orphans(db)
        catalog.put_file(db, "/img/new.jpg", catalog.insert_vector(db, "new", vectors[5]), 1, 1, None, None)
    stale = FaissStore(tmp_path, 16)
    assert sync(stale, catalog) == (1, 1)
    assert np.array_equal(stale.ids(), catalog.vector_ids())

    (tmp_path / "vectors.faiss").write_bytes(b"half a file")  # damaged cache: rebuilt, not trusted
    damaged = FaissStore(tmp_path, 16)
    assert len(damaged) == 0 and sync(damaged, catalog) == (300, 0)


def test_milvus_gives_the_same_top_k_as_faiss(tmp_path, tiny_clip):
    pytest.importorskip("milvus_lite")
    images = make_images(tmp_path / "photos", 16)
    embedded = ImageIndex(tmp_path / "faiss-db", tiny_clip)
    embedded.add([images[0].parent])
    distributed = ImageIndex(tmp_path / "milvus-db", tiny_clip, store="milvus")
    distributed.add([images[0].parent])
    for query in ({"text": "a photo of a cat"}, {"text": "red rocket"}, {"image": images[7]}):
        expected = embedded.search(**query, k=5)
        got = distributed.search(**query, k=5)
        assert [h.path for h in got] == [h.path for h in expected]
        assert [h.score for h in got] == pytest.approx([h.score for h in expected], abs=1e-4)

    images[3].unlink()
    distributed.add([images[0].parent])
    assert str(images[3]) not in {h.path for h in distributed.search(text="cat", k=16)}
    assert len(distributed._synced_store(durable=False)) == 15
    distributed.close()

    # A collection that missed writes (a crash before Milvus got them) is repaired from the catalog.
    (tmp_path / "milvus-db" / "milvus.json").unlink()
    reopened = ImageIndex(tmp_path / "milvus-db", tiny_clip, store="milvus")
    store = reopened._synced_store(durable=True)
    store.remove(store.ids()[:4])
    (tmp_path / "milvus-db" / "milvus.json").unlink()
    store._version = None
    assert sync(store, reopened.catalog) == (4, 0)
    assert len(reopened.search(text="cat", k=16)) == 15
    reopened.close()
