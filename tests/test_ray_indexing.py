"""`zeroshot index --engine ray`: the Ray Data path writes the index the single-process path writes.

One local Ray instance (2 CPUs) serves the whole module: starting Ray takes several seconds.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from zeroshot.errors import UserError
from zeroshot.optional import RAY
from zeroshot.search.index import ImageIndex
from zeroshot.search.stores.catalog import Catalog

pytestmark = pytest.mark.slow  # Ray starts in several seconds; each job starts its actors
needs_ray = pytest.mark.skipif(not RAY.available(), reason="ray not installed (pip install 'zeroshot[ray]')")

sys.path.insert(0, str(Path(__file__).parent))
from test_search import make_images  # noqa: E402


@pytest.fixture(scope="module")
def ray_session():
    import ray

    from zeroshot.search import ray_indexing

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # Workers unpickle the test's actor class by value: this file is not importable there.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray_indexing
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("ray-photos") / "photos"
    paths = make_images(folder, 10)
    (folder / "copy.jpg").write_bytes(paths[1].read_bytes())  # same content: one vector, two files
    (folder / "notes.jpg").write_text("not a picture")
    return paths


def _contents(db: Path) -> tuple[dict[str, int], dict[int, np.ndarray]]:
    catalog = Catalog(db / "catalog.sqlite", create=False)
    try:
        files, vectors = catalog.contents()
    finally:
        catalog.close()
    assert all(row.size for row in vectors.values())  # an empty row would make every comparison vacuous
    return files, vectors


@needs_ray
def test_same_vectors_and_ids_as_the_single_process_path(tmp_path, photos, tiny_clip, ray_session):
    folder = photos[0].parent
    local = ImageIndex(tmp_path / "local", tiny_clip, batch_size=4).add([folder])
    index = ImageIndex(tmp_path / "ray", tiny_clip, batch_size=4)
    report = index.add([folder], engine=ray_session.RayEngine(workers=2))

    assert sorted(report.added) == sorted(local.added) and len(report.added) == 11
    assert report.embedded == local.embedded == 10  # the copy is linked, not embedded
    assert report.failed == local.failed and "not an image" in report.failed[0][1]
    local_files, local_vectors = _contents(tmp_path / "local")
    ray_files, ray_vectors = _contents(tmp_path / "ray")
    assert ray_files == local_files  # same paths, same vector ids
    for vector_id, vector in local_vectors.items():
        np.testing.assert_allclose(ray_vectors[vector_id], vector, atol=1e-5)
    hit = index.search(image=photos[3], k=1)[0]
    assert hit.path == str(photos[3]) and hit.score == pytest.approx(1.0, abs=1e-5)

    again = index.add([folder], engine=ray_session.RayEngine(workers=2))  # nothing new: Ray not even asked
    assert again.embedded == 0 and len(again.skipped) == 11


@needs_ray
def test_an_interrupted_job_resumes_and_indexes_every_image_once(tmp_path, photos, tiny_clip, ray_session,
                                                                 monkeypatch):
    folder = photos[0].parent
    commit = ray_session._RayRun.commit_rows
    calls = []

    def stop_after_two(self, batch):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the driver killed between batches
        calls.append(len(batch["path"]))
        commit(self, batch)

    monkeypatch.setattr(ray_session._RayRun, "commit_rows", stop_after_two)
    index = ImageIndex(tmp_path / "db", tiny_clip, batch_size=3)
    with pytest.raises(KeyboardInterrupt):
        index.add([folder], engine=ray_session.RayEngine(workers=1))
    index.close()
    assert calls == [3, 3]
    files, _ = _contents(tmp_path / "db")
    assert len(files) == 6  # both finished batches were kept, nothing of the third

    monkeypatch.setattr(ray_session._RayRun, "commit_rows", commit)
    index = ImageIndex(tmp_path / "db", tiny_clip, batch_size=3)
    report = index.add([folder], engine=ray_session.RayEngine(workers=1))
    assert len(report.skipped) == 6 and len(report.added) == 5 and len(report.failed) == 1
    files, vectors = _contents(tmp_path / "db")
    assert len(files) == 11 and len(vectors) == 10 == len(set(files.values()))
    assert len(index._synced_store(durable=False)) == 10


def kill_once(marker: Path) -> type:
    """An embedding actor whose process dies on the batch holding `img0005.jpg`, the first time only."""
    from zeroshot.search.ray_indexing import Embedder

    class KillOnce(Embedder):
        def __call__(self, batch):
            if any(str(p).endswith("img0005.jpg") for p in batch["path"]) and not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)  # no cleanup, no exception: as the OOM killer would
            return super().__call__(batch)

    return KillOnce


@needs_ray
def test_a_worker_killed_mid_batch_is_replaced_and_every_image_indexed_once(tmp_path, photos, tiny_clip_dir,
                                                                            ray_session, monkeypatch):
    from zeroshot.models.clip import load_clip

    monkeypatch.chdir(tiny_clip_dir.parent)  # the model named by a relative path: workers find it too
    model = load_clip(tiny_clip_dir.name, device="cpu")
    marker = tmp_path / "killed"
    engine = ray_session.RayEngine(workers=1, embedder=kill_once(marker))  # the one actor dies: restarted
    index = ImageIndex(tmp_path / "db", model, batch_size=2)
    report = index.add([photos[0].parent], engine=engine)
    assert marker.exists() and int(marker.read_text()) != os.getpid()  # a worker process really died
    assert len(report.added) == 11 and report.embedded == 10 and len(report.failed) == 1
    files, vectors = _contents(tmp_path / "db")
    assert len(files) == 11 and len(vectors) == 10 == len(set(files.values()))


@needs_ray
def test_a_cluster_that_does_not_answer_is_one_line_and_exit_2(tmp_path, photos, tiny_clip_dir, capsys):
    from zeroshot.cli import main

    start = time.monotonic()
    code = main(["index", str(photos[0].parent), "--db", str(tmp_path / "db"), "--clip-model",
                 str(tiny_clip_dir), "--engine", "ray", "--ray-address", "127.0.0.1:1", "-q"])
    assert code == 2 and time.monotonic() - start < 30
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "127.0.0.1:1 does not answer" in err[0]
    assert not (tmp_path / "db").exists() or not any((tmp_path / "db").iterdir())


@needs_ray
def test_a_bad_address_is_refused(ray_session):
    with pytest.raises(UserError, match="host:port"):
        ray_session._bootstrap_address("no-port-here")


def test_without_ray_the_cli_says_how_to_install_it(tmp_path, photos, tiny_clip_dir, capsys, monkeypatch):
    from zeroshot.cli import main
    from zeroshot.optional import OptionalDependency
    from zeroshot.search import ray_indexing

    monkeypatch.setattr(ray_indexing, "RAY", OptionalDependency("ray_is_not_installed", "ray", RAY.purpose))
    code = main(["index", str(photos[0].parent), "--db", str(tmp_path / "db"), "--clip-model",
                 str(tiny_clip_dir), "--engine", "ray", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pip install 'zeroshot[ray]'" in err[0]
    assert not (tmp_path / "db").exists()  # refused before anything was created


@needs_ray
def test_ray_into_milvus_matches_the_single_process_faiss_index_and_resumes(tmp_path, photos, tiny_clip,
                                                                            ray_session, monkeypatch):
    pytest.importorskip("milvus_lite")
    folder = photos[0].parent
    local = ImageIndex(tmp_path / "local", tiny_clip, batch_size=3)
    local.add([folder])
    commit = ray_session._RayRun.commit_rows
    calls = []

    def stop_after_one(self, batch):
        if calls:
            raise KeyboardInterrupt  # the driver killed after the first batch reached the catalog
        calls.append(len(batch["path"]))
        commit(self, batch)

    monkeypatch.setattr(ray_session._RayRun, "commit_rows", stop_after_one)
    index = ImageIndex(tmp_path / "milvus-db", tiny_clip, batch_size=3, store="milvus")
    with pytest.raises(KeyboardInterrupt):
        index.add([folder], engine=ray_session.RayEngine(workers=1))
    index.close()

    monkeypatch.setattr(ray_session._RayRun, "commit_rows", commit)
    index = ImageIndex(tmp_path / "milvus-db", tiny_clip, batch_size=3, store="milvus")
    report = index.add([folder], engine=ray_session.RayEngine(workers=1))
    assert len(report.skipped) == 3 and len(report.added) == 8 and len(report.failed) == 1
    store = index._synced_store(durable=False)
    assert len(store) == 10 and sorted(store.ids()) == sorted(_contents(tmp_path / "local")[1])
    for query in ({"text": "a photo of a cat"}, {"image": photos[7]}):
        expected = local.search(**query, k=5)
        got = index.search(**query, k=5)
        assert [h.path for h in got] == [h.path for h in expected]
        assert [h.score for h in got] == pytest.approx([h.score for h in expected], abs=1e-4)
    index.close()
    local.close()
