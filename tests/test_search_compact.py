"""Compact vector storage (issue 18): float16 rows beside the catalog, IVF-PQ re-ranked from them,
catalogs of the float32 format still working, interrupted builds resuming, damaged files refused."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from zeroshot.errors import UserError
from zeroshot.search import stores
from zeroshot.search.index import ImageIndex
from zeroshot.search.stores import faiss_store, sync, vector_file
from zeroshot.search.stores.catalog import FLOAT16_FILE, FLOAT32_SQLITE, VECTOR_FILE_NAME, Catalog
from zeroshot.search.stores.faiss_store import FaissStore

LEGACY = Path(__file__).parent / "fixtures" / "legacy-index"  # written by the code before issue 18


def unit(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def clustered(count: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim))
    return unit(centres[rng.integers(0, 20, count)] + 0.4 * rng.standard_normal((count, dim)))


def fill(catalog: Catalog, vectors: np.ndarray, start: int = 0) -> None:
    catalog.set_info({"embedding_dim": str(vectors.shape[1])})
    with catalog.transaction() as db:
        for i, vector in enumerate(vectors, start=start):
            vector_id = catalog.insert_vector(db, f"sha{i}", vector)
            catalog.put_file(db, f"/img/{i}.jpg", vector_id, 1, 1, None, None)


def exact_top(queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray, k: int = 10) -> np.ndarray:
    return ids[np.argsort(-(queries @ vectors.T), axis=1)[:, :k]]


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True)]))


def legacy_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "legacy"
    shutil.copytree(LEGACY, folder)
    return folder


def legacy_vectors() -> np.ndarray:
    # The fixture's vectors, as tests/fixtures/legacy-index was written (see test_legacy_fixture_...).
    return unit(np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32))


def test_new_catalogs_keep_float16_rows_beside_sqlite_that_agree_with_float32(tmp_path, monkeypatch):
    vectors = unit(np.random.default_rng(0).standard_normal((500, 64)))
    catalog = Catalog(tmp_path / "catalog.sqlite")
    fill(catalog, vectors)
    assert catalog.storage == FLOAT16_FILE and catalog.info()["schema"] == "2"
    assert (tmp_path / VECTOR_FILE_NAME).stat().st_size == 500 * 64 * 2  # 2 bytes a dimension
    ids = np.arange(1, 501)
    assert np.abs(catalog.vectors(ids[::-1]) - vectors[::-1]).max() < 1e-3  # any order, float16 exact
    got = np.concatenate([v for _, v in catalog.iter_vectors()])
    assert np.abs(got - vectors).max() < 1e-3
    with monkeypatch.context() as patch:  # a scan reads spans with plain reads, not through the map
        patch.setattr(vector_file, "BULK_ROWS", 8)
        assert np.array_equal(np.concatenate([v for _, v in catalog.iter_vectors(batch=64)]), got)
        assert np.array_equal(catalog.vectors(ids[100:300][::-1]), got[100:300][::-1])
    # Nothing of the vectors is in SQLite any more: its blobs are empty.
    assert catalog._db.execute("SELECT max(length(embedding)) FROM vectors").fetchone()[0] == 0

    # A batch whose transaction fails keeps nothing; the next batch reuses those rows, without a gap.
    with pytest.raises(RuntimeError), catalog.transaction() as db:
        catalog.insert_vector(db, "lost", vectors[0])
        raise RuntimeError("killed mid-batch")
    with catalog.transaction() as db:
        ids2 = catalog.insert_vectors(db, ["a", "b"], vectors[:2] * -1)
    assert ids2.tolist() == [501, 502] and catalog.count_vectors() == 502
    assert np.abs(catalog.vectors(ids2) + vectors[:2]).max() < 1e-3
    reopened = Catalog(tmp_path / "catalog.sqlite")
    assert np.abs(reopened.vectors([1, 502]) - vectors[[0, 1]] * [[1], [-1]]).max() < 1e-3


def test_legacy_fixture_is_the_float32_format(tmp_path):
    folder = legacy_copy(tmp_path)
    catalog = Catalog(folder / "catalog.sqlite")
    assert catalog.storage == FLOAT32_SQLITE and catalog.info()["schema"] == "1"
    assert catalog._db.execute("SELECT min(length(embedding)) FROM vectors").fetchone()[0] == 16 * 4
    assert np.array_equal(catalog.vectors(np.arange(1, 301)), legacy_vectors())  # bit for bit


def test_an_old_float32_catalog_opens_searches_as_before_and_stays_float32(tmp_path, monkeypatch):
    folder = legacy_copy(tmp_path)
    vectors, ids = legacy_vectors(), np.arange(1, 301)
    queries = unit(np.random.default_rng(5).standard_normal((20, 16)))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with ImageIndex(folder) as index:  # its saved flat cache is trusted and gives the exact answer
        hits = [index.search_vector(q, 5) for q in queries]
    found = [[int(h.path[5:8]) + 1 for h in row] for row in hits]  # /img/007.jpg is id 8
    assert found == exact_top(queries, vectors, ids, 5).tolist()
    best = hits[0][0]
    assert best.score == pytest.approx(float(queries[0] @ vectors[int(best.path[5:8])]), abs=1e-6)
    assert (folder / "catalog.sqlite").read_bytes() == before["catalog.sqlite"]  # a read changed nothing
    assert not (folder / VECTOR_FILE_NAME).exists()

    # Written to by this version, it stays in its own format (float32 blobs, schema 1), and a store
    # that re-ranks reads the vectors from SQLite.
    monkeypatch.setattr(faiss_store, "FLAT_LIMIT", 400)
    more = unit(np.random.default_rng(6).standard_normal((700, 16)))
    catalog = Catalog(folder / "catalog.sqlite")
    fill(catalog, more, start=300)
    assert catalog.storage == FLOAT32_SQLITE and catalog.info()["schema"] == "1"
    assert not (folder / VECTOR_FILE_NAME).exists()
    everything, all_ids = np.concatenate([vectors, more]), np.arange(1, 1001)
    store = FaissStore(folder / "store", 16, vectors=catalog)
    sync(store, catalog)
    assert store.layout == "pq8x4fs"
    assert recall(store.search(queries, 10)[1], exact_top(queries, everything, all_ids)) >= 0.95

    # Converted on request: same answers to float16 precision, and the catalog says schema 2.
    assert catalog.convert_to_float16() == 1000
    assert catalog.storage == FLOAT16_FILE and catalog.info()["schema"] == "2"
    assert np.abs(catalog.vectors(all_ids) - everything).max() < 1e-3
    again = Catalog(folder / "catalog.sqlite")
    assert again.storage == FLOAT16_FILE and np.abs(again.vectors([1000]) - more[-1]).max() < 1e-3
    store = FaissStore(folder / "store2", 16, vectors=again)
    sync(store, again)
    assert recall(store.search(queries, 10)[1], exact_top(queries, everything, all_ids)) >= 0.95


def test_ivf_pq_reranked_from_the_file_finds_the_exact_top_k(tmp_path, monkeypatch):
    monkeypatch.setattr(faiss_store, "FLAT_LIMIT", 500)
    monkeypatch.setattr(faiss_store, "IVF_LIMIT", 2_000)
    monkeypatch.setattr(faiss_store, "LARGE_TRAINING", 3_000)
    vectors = clustered(3_000, 64, seed=0)
    catalog = Catalog(tmp_path / "catalog.sqlite")
    fill(catalog, vectors)
    store = FaissStore(tmp_path, 64, vectors=catalog)
    sync(store, catalog)
    assert store.layout.startswith("ivf") and store.layout.endswith(",pq8") and len(store) == 3_000
    queries = clustered(40, 64, seed=1)
    scores, found = store.search(queries, 10)
    ids = np.arange(1, 3_001)
    assert recall(found, exact_top(queries, vectors, ids)) >= 0.95
    # Scores are exact (from the float16 rows), not PQ estimates.
    assert np.abs(scores[:, 0] - np.einsum("ij,ij->i", queries, vectors[found[:, 0] - 1])).max() < 1e-3

    # IVF removes in place; the cache reloads as this layout.
    with catalog.transaction() as db:
        for i in range(0, 3_000, 3):
            catalog.delete_file(db, f"/img/{i}.jpg")
        catalog.delete_orphans(db)
    assert sync(store, catalog) == (0, 1_000)
    assert np.array_equal(store.ids(), catalog.vector_ids())
    reloaded = FaissStore(tmp_path, 64, vectors=catalog)
    assert reloaded.layout == store.layout and sync(reloaded, catalog) == (0, 0)
    kept = np.setdiff1d(ids, np.arange(1, 3_001, 3))
    assert recall(reloaded.search(queries, 10)[1], exact_top(queries, vectors[kept - 1], kept)) >= 0.95


def test_an_interrupted_store_build_resumes_from_its_checkpoint_without_duplicates(tmp_path, monkeypatch):
    monkeypatch.setattr(faiss_store, "FLAT_LIMIT", 500)
    monkeypatch.setattr(stores, "CHECKPOINT_SECONDS", 0.0)  # a checkpoint after every chunk
    vectors = clustered(2_000, 32, seed=2)
    catalog = Catalog(tmp_path / "catalog.sqlite")
    fill(catalog, vectors)
    chunks = iter(range(99))
    real_iter = Catalog.iter_vectors

    def killed_after_two_chunks(self, ids=None, batch=20_000):
        for part in real_iter(self, ids, batch=500):
            if ids is None and next(chunks) == 2:  # the build's pass, not the training sample's
                raise KeyboardInterrupt  # Ctrl-C in the middle of the build
            yield part

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(Catalog, "iter_vectors", killed_after_two_chunks)
        sync(FaissStore(tmp_path, 32, vectors=catalog), catalog)
    partial = FaissStore(tmp_path, 32, vectors=catalog)
    assert len(partial) == 1_000 and partial.synced_version() is None  # kept, but not trusted as in step
    assert sync(partial, catalog) == (1_000, 0)  # only the rest is added
    ids = partial.ids()
    assert len(ids) == len(np.unique(ids)) == 2_000 and np.array_equal(ids, catalog.vector_ids())


def test_a_missing_or_truncated_vector_file_is_one_clear_error_and_nothing_changes(tmp_path):
    vectors = unit(np.random.default_rng(0).standard_normal((100, 16)))
    catalog = Catalog(tmp_path / "catalog.sqlite")
    fill(catalog, vectors)
    catalog.close()
    path = tmp_path / VECTOR_FILE_NAME
    data, db_bytes = path.read_bytes(), (tmp_path / "catalog.sqlite").read_bytes()

    path.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(UserError, match="holds 50 vectors, the catalog needs 100") as info:
        Catalog(tmp_path / "catalog.sqlite")
    assert "\n" not in str(info.value) and "nothing was changed" in str(info.value)
    path.unlink()  # missing
    with pytest.raises(UserError, match="missing or truncated"):
        ImageIndex(tmp_path)
    assert (tmp_path / "catalog.sqlite").read_bytes() == db_bytes and not path.exists()

    path.write_bytes(data)  # restored from a backup: everything is back
    assert np.abs(Catalog(tmp_path / "catalog.sqlite").vectors(np.arange(1, 101)) - vectors).max() < 1e-3


def test_scribbled_rows_are_refused_not_ranked(tmp_path, monkeypatch):
    monkeypatch.setattr(faiss_store, "FLAT_LIMIT", 50)
    vectors = unit(np.random.default_rng(0).standard_normal((100, 16)))
    catalog = Catalog(tmp_path / "catalog.sqlite")
    fill(catalog, vectors)
    store = FaissStore(tmp_path, 16, vectors=catalog)
    sync(store, catalog)
    path = tmp_path / VECTOR_FILE_NAME
    data = bytearray(path.read_bytes())
    top = int(store.search(vectors[:1], 1)[1][0, 0])
    data[(top - 1) * 32:top * 32] = b"\xff" * 32  # NaNs where the best match's vector was
    path.write_bytes(bytes(data))
    catalog = Catalog(tmp_path / "catalog.sqlite")
    store = FaissStore(tmp_path, 16, vectors=catalog)
    with pytest.raises(UserError, match=f"the vector of id {top} is damaged") as info:
        store.search(vectors[:1], 5)
    assert "\n" not in str(info.value)
    assert catalog.count_files() == 100  # nothing of the metadata was touched


def test_a_vector_that_does_not_fit_float16_is_refused_before_anything_is_written(tmp_path):
    catalog = Catalog(tmp_path / "catalog.sqlite")
    fill(catalog, unit(np.ones((2, 4))))
    with pytest.raises(UserError, match="float16"), catalog.transaction() as db:
        catalog.insert_vector(db, hashlib.sha256(b"x").hexdigest(), np.array([1e6, 0, 0, 0]))
    assert catalog.count_vectors() == 2


def test_a_scattered_read_announces_its_rows_once_in_file_order_and_reads_them_right(tmp_path, monkeypatch):
    vectors = clustered(400, 16, seed=5)
    catalog = Catalog(tmp_path / "catalog.sqlite")
    fill(catalog, vectors)
    announced = []
    real = vector_file.os.posix_fadvise

    def advise(fd: int, offset: int, length: int, advice: int) -> None:
        announced.append(offset)
        real(fd, offset, length, advice)

    monkeypatch.setattr(vector_file.os, "posix_fadvise", advise)
    ids = np.array([300, 7, 7, *range(100, 160), 1], dtype=np.int64)  # scattered, one repeated
    rows = catalog.vectors(ids)
    assert announced == sorted({(int(i) - 1) * 16 * 2 for i in ids})  # once each, ascending
    np.testing.assert_allclose(rows, vectors[ids - 1], atol=1e-3)  # float16 storage
    announced.clear()
    catalog.vectors(np.array([3, 9]))  # a few rows: read at once, nothing announced
    assert announced == []
    catalog.close()
