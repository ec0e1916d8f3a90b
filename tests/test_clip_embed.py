"""`iter_image_embeddings`: batches in order, every input accounted for, decoding beside the model."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

from zeroshot.vision.embed import embed_images, iter_image_embeddings
from zeroshot.vision.transforms import preprocess


def _sources(tmp_path):
    from skimage import data

    photo = Image.fromarray(data.coffee())
    path = tmp_path / "coffee.jpg"
    photo.save(path, quality=95)
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG")
    bad = tmp_path / "bad.jpg"
    bad.write_text("text")
    return [str(path), buffer.getvalue(), photo, str(bad), Image.fromarray(data.astronaut()), str(path)]


def test_batches_cover_every_input_in_order(tiny_clip, tmp_path):
    sources = _sources(tmp_path)
    batches = list(iter_image_embeddings(tiny_clip, sources, batch_size=4, progress=False))
    assert [len(b.indices) + len(b.failures) for b in batches] == [4, 2]
    assert batches[0].indices == [0, 1, 2] and [i for i, _ in batches[0].failures] == [3]
    assert batches[1].indices == [4, 5]
    assert "bad.jpg" in batches[0].failures[0][1]
    for batch in batches:
        assert batch.embeddings.dtype == np.float32
        assert batch.embeddings.shape == (len(batch.indices), tiny_clip.embedding_dim)
        assert np.allclose(np.linalg.norm(batch.embeddings, axis=1), 1.0, atol=1e-5)


def test_embeddings_equal_encoding_the_preprocessed_batch_directly(tiny_clip, tmp_path):
    from skimage import data

    images = [Image.fromarray(data.chelsea()), Image.fromarray(data.rocket())]
    indices, embeddings, failures = embed_images(tiny_clip, images, batch_size=1, progress=False)
    direct = tiny_clip.encode_images(preprocess(images, tiny_clip.image_spec))
    assert list(indices) == [0, 1] and failures == []
    assert np.abs(embeddings - direct).max() <= 1e-5


def test_paths_bytes_and_pil_images_of_one_photo_agree(tiny_clip, tmp_path):
    sources = _sources(tmp_path)
    png_bytes, pil = sources[1], sources[2]
    _, embeddings, _ = embed_images(tiny_clip, [png_bytes, pil], progress=False)
    assert np.abs(embeddings[0] - embeddings[1]).max() <= 1e-6  # PNG is lossless: same pixels


def test_a_batch_of_only_bad_images_still_yields(tiny_clip, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    sources = [str(bad), b"", str(tmp_path / "gone.jpg")]
    [batch] = list(iter_image_embeddings(tiny_clip, sources, progress=False))
    assert batch.indices == [] and batch.embeddings.shape == (0, tiny_clip.embedding_dim)
    assert [i for i, _ in batch.failures] == [0, 1, 2]


def test_generators_work_and_decoding_runs_on_worker_threads(tiny_clip, monkeypatch):
    import zeroshot.vision.embed as embed

    threads: set[str] = set()
    original = embed.prepare_image

    def spying(source, spec):
        threads.add(threading.current_thread().name)
        return original(source, spec)

    monkeypatch.setattr(embed, "prepare_image", spying)
    images = (Image.new("RGB", (64, 48), (i * 20, 0, 0)) for i in range(7))  # no len(): a stream
    batches = list(iter_image_embeddings(tiny_clip, images, batch_size=3, num_workers=2, progress=False))
    assert [b.indices for b in batches] == [[0, 1, 2], [3, 4, 5], [6]]
    assert threads and all(name.startswith("zeroshot-decode") for name in threads)


def test_stopping_early_does_not_hang(tiny_clip):
    images = [Image.new("RGB", (32, 32)) for _ in range(50)]
    stream = iter_image_embeddings(tiny_clip, images, batch_size=2, progress=False)
    first = next(stream)
    stream.close()
    assert first.indices == [0, 1]


def test_batch_size_must_be_positive(tiny_clip):
    with pytest.raises(ValueError):
        next(iter_image_embeddings(tiny_clip, [Image.new("RGB", (8, 8))], batch_size=0))
