"""`zeroshot.testing`: its factories make what the real loaders load, and the old names still work."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from zeroshot import testing
from zeroshot.errors import UserError


def test_save_random_clip_writes_what_load_clip_loads(tiny_clip_dir, tmp_path):
    from zeroshot.models.clip import load_clip

    model = load_clip(tiny_clip_dir, device="cpu", dtype="fp32")
    images = model.encode_images(np.zeros((2, 3, 224, 224), np.float32))
    texts = model.encode_texts(["a photo of a cat.", "a dog"])
    assert images.shape == (2, 16) and texts.shape == (2, 16)
    assert np.allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    again = load_clip(testing.save_random_clip(tmp_path / "same", seed=0), device="cpu", dtype="fp32")
    other = load_clip(testing.save_random_clip(tmp_path / "other", seed=1), device="cpu", dtype="fp32")
    assert again.fingerprint == model.fingerprint != other.fingerprint  # the seed decides the weights
    with pytest.raises(UserError, match="unknown random CLIP size"):
        testing.save_random_clip(tmp_path / "x", size="huge")


def test_save_random_lm_writes_what_load_lm_loads(tmp_path):
    from zeroshot.models.lm import GenerationConfig
    from zeroshot.models.loader import load_lm

    lm = load_lm(testing.save_random_lm(tmp_path / "lm", arch="gpt2"), backend="transformers")
    assert lm.backend == "transformers" and lm.context_length == 512
    assert lm.detokenize(lm.tokenize("Topic: sport")) == "Topic: sport"  # any text round-trips
    assert isinstance(lm.generate("Once", GenerationConfig(max_new_tokens=3)), str)
    with pytest.raises(UserError, match="unknown random LM architecture"):
        testing.save_random_lm(tmp_path / "x", arch="mamba")


@pytest.mark.parametrize(("module", "name"), [
    ("zeroshot.models.clip", "save_random_clip"), ("zeroshot.models.clip", "RANDOM_CLIP_SIZES"),
    ("zeroshot.models.lm_transformers", "save_random_lm"),
    ("zeroshot.models.lm_transformers", "RANDOM_LM_ARCHS"),
])
def test_the_old_names_warn_and_still_work(module, name):
    import importlib

    old = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=f"{module}.{name} moved to zeroshot.testing.{name}"):
        found = getattr(old, name)
    assert found is getattr(testing, name)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        old.nope  # noqa: B018


def test_an_old_name_still_makes_a_loadable_model(tmp_path):
    from zeroshot.models.clip import load_clip

    with pytest.warns(DeprecationWarning):
        from zeroshot.models.clip import save_random_clip
    assert load_clip(save_random_clip(tmp_path / "clip"), device="cpu", dtype="fp32").embedding_dim == 16


def test_the_library_never_imports_the_test_helpers():
    code = ("import sys, zeroshot.models.clip, zeroshot.models.lm_transformers, zeroshot.search.index, "
            "zeroshot.server.app, zeroshot.cli; print('zeroshot.testing' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_fake_lm_scores_are_its_bigram_table():
    lm = testing.FakeLM(seed=3)
    context, continuation = lm.tokenize("ab", add_bos=True), lm.tokenize("cd")
    [scores] = lm.continuation_logprobs(context, [continuation])
    by_hand = [lm.logprob(ord("b"), ord("c")), lm.logprob(ord("c"), ord("d"))]
    assert context[0] == testing.FakeLM.BOS and np.allclose(scores, by_hand)
    assert np.allclose(np.exp(lm.table).sum(axis=1), 1.0)  # each row is a distribution
    assert lm.detokenize(context) == "ab"


def test_random_images_and_class_folders(tmp_path):
    from zeroshot.train.clip import read_pairs
    from zeroshot.vision.images import expand_paths

    first = testing.save_random_images(tmp_path / "photos", 3, size=20)
    more = testing.save_random_images(tmp_path / "photos", 2, seed=1, start=3, suffix=".jpg")
    assert [p.name for p in first + more] == ["img0000.png", "img0001.png", "img0002.png", "img0003.jpg",
                                              "img0004.jpg"]
    assert sorted(expand_paths([tmp_path / "photos"])) == sorted(first + more)
    assert Image.open(first[0]).size == (20, 20)
    assert len({Image.open(p).tobytes() for p in first}) == 3  # distinct images

    root = testing.save_class_folders(tmp_path / "classes", ["cat", "dog"], per_class=3)
    pairs = read_pairs(root)
    assert len(pairs.images) == 6 and sorted(set(pairs.labels)) == ["cat", "dog"]
    means = {name: np.mean([np.asarray(Image.open(p)).mean(axis=(0, 1)) for p in (root / name).iterdir()],
                           axis=0) for name in ("cat", "dog")}
    assert np.abs(means["cat"] - means["dog"]).max() > 50  # the classes differ by colour
    with pytest.raises(UserError):
        testing.save_class_folders(tmp_path / "none", [])


def test_sentiment_task_and_jsonl(tmp_path):
    from zeroshot.eval.tasks import load_task

    task = load_task(testing.save_sentiment_task(tmp_path / "task.jsonl", pool_per_label=2, docs=4))
    assert (task.kind, task.labels, len(task.pool), len(task.docs)) == (
        "classification", ["negative", "positive"], 4, 4)
    rows = [{"a": 1}, [1, 2], "text"]
    path = testing.write_jsonl(tmp_path / "rows.jsonl", rows)
    assert path.read_text(encoding="utf-8") == '{"a": 1}\n[1, 2]\n"text"\n'
