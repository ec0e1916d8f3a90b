"""Zero-shot classification: equal to the transformers pipeline, ensembling by hand, the on-disk cache."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from zeroshot.errors import UserError
from zeroshot.models.clip import load_clip
from zeroshot.testing import save_random_clip
from zeroshot.vision.classify import ZeroShotImageClassifier, cache_key, default_cache_dir, text_classifier
from zeroshot.vision.images import ImageError
from zeroshot.vision.templates import IMAGENET_TEMPLATES, get_templates, template_set_names

LABELS = ["cat", "dog", "rocket", "cup of coffee", "astronaut"]


def _photos() -> list[Image.Image]:
    from skimage import data

    return [Image.fromarray(data.chelsea()), Image.fromarray(data.rocket()), Image.fromarray(data.coffee()),
            Image.fromarray(data.astronaut()), Image.fromarray(data.camera())]


def _pipeline_probabilities(model, images, labels, template) -> np.ndarray:
    from transformers import pipeline

    classify = pipeline("zero-shot-image-classification", model=model.model, tokenizer=model.tokenizer,
                        image_processor=model.image_processor, device="cpu")
    rows = []
    for image in images:
        scores = {out["label"]: out["score"] for out in classify(image, candidate_labels=labels,
                                                                 hypothesis_template=template)}
        rows.append([scores[label] for label in labels])
    return np.asarray(rows)


@pytest.fixture(scope="module")
def tiny_siglip(tmp_path_factory):
    return load_clip(save_random_clip(tmp_path_factory.mktemp("tiny-siglip"), family="siglip"), device="cpu")


def test_single_template_probabilities_equal_the_transformers_pipeline(tiny_clip):
    photos = _photos()
    template = "This is a photo of {}."  # the pipeline's default hypothesis_template
    ours = ZeroShotImageClassifier(tiny_clip, LABELS, [template], cache_dir=False).predict_proba(photos)
    theirs = _pipeline_probabilities(tiny_clip, photos, LABELS, template)
    assert ours.shape == (len(photos), len(LABELS))
    assert np.abs(ours - theirs).max() <= 1e-5
    assert np.allclose(ours.sum(axis=1), 1.0, atol=1e-5)


def test_siglip_probabilities_equal_the_transformers_pipeline(tiny_siglip):
    photos = _photos()[:3]
    template = "This is a photo of {}."
    ours = ZeroShotImageClassifier(tiny_siglip, LABELS, [template], cache_dir=False).predict_proba(photos)
    theirs = _pipeline_probabilities(tiny_siglip, photos, LABELS, template)
    assert np.abs(ours - theirs).max() <= 1e-5  # independent sigmoids: rows need not sum to 1


def test_ensemble_equals_a_hand_computation(tiny_clip):
    templates = ["a photo of a {}.", "a blurry photo of the {}.", "art of the {}."]
    weights = text_classifier(tiny_clip, LABELS, templates, cache_dir=False)
    by_hand = []
    for label in LABELS:
        rows = [tiny_clip.encode_texts([template.format(label)])[0] for template in templates]
        rows = [row / np.linalg.norm(row) for row in rows]
        mean = np.mean(rows, axis=0)
        by_hand.append(mean / np.linalg.norm(mean))
    assert weights.shape == (len(LABELS), tiny_clip.embedding_dim) and weights.dtype == np.float32
    assert np.abs(weights - np.asarray(by_hand)).max() <= 1e-6


def test_probabilities_are_softmax_of_scaled_cosines_against_the_ensemble(tiny_clip):
    from zeroshot.vision.transforms import preprocess

    photos = _photos()[:2]
    classifier = ZeroShotImageClassifier(tiny_clip, LABELS, "imagenet-simple", cache_dir=False)
    embeddings = tiny_clip.encode_images(preprocess(photos, tiny_clip.image_spec))
    cosines = embeddings.astype(np.float64) @ classifier.class_weights.T.astype(np.float64)
    logits = tiny_clip.logit_scale * cosines
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    assert np.abs(classifier.predict_proba(photos) - expected).max() <= 1e-5


def _count_text_encodings(model, monkeypatch) -> list[int]:
    calls: list[int] = []
    original = type(model).encode_texts

    def counting(self, texts):
        calls.append(len(texts))
        return original(self, texts)

    monkeypatch.setattr(type(model), "encode_texts", counting)
    return calls


def test_second_build_is_read_from_the_cache_without_encoding(tiny_clip, tmp_path, monkeypatch):
    calls = _count_text_encodings(tiny_clip, monkeypatch)
    first = text_classifier(tiny_clip, LABELS, "cifar", cache_dir=tmp_path)
    assert sum(calls) == len(LABELS) * len(get_templates("cifar"))
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    calls.clear()
    second = text_classifier(tiny_clip, LABELS, "cifar", cache_dir=tmp_path)
    assert calls == []  # the cache was hit: not one prompt encoded
    assert np.array_equal(first, second)


def test_cache_key_changes_with_labels_templates_and_model(tiny_clip, tiny_clip_dir, tmp_path, monkeypatch):
    import torch

    base = cache_key(tiny_clip, LABELS, ["a photo of a {}."])
    assert cache_key(tiny_clip, LABELS[::-1], ["a photo of a {}."]) != base  # order changes the rows
    assert cache_key(tiny_clip, LABELS[:-1], ["a photo of a {}."]) != base
    assert cache_key(tiny_clip, LABELS, ["a photo of the {}."]) != base
    other = load_clip(tiny_clip_dir, device="cpu")
    assert cache_key(other, LABELS, ["a photo of a {}."]) == base  # same weights, same key
    with torch.no_grad():
        other.model.text_projection.weight.mul_(-1.0)  # a "fine-tuned" copy
    other._fingerprint = None
    assert cache_key(other, LABELS, ["a photo of a {}."]) != base

    text_classifier(tiny_clip, LABELS, ["a photo of a {}."], cache_dir=tmp_path)
    calls = _count_text_encodings(other, monkeypatch)
    changed = text_classifier(other, LABELS, ["a photo of a {}."], cache_dir=tmp_path)
    assert calls  # a different model is not served the first model's cached matrix
    original = text_classifier(tiny_clip, LABELS, ["a photo of a {}."], cache_dir=tmp_path)
    assert not np.allclose(changed, original)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_matrix"])
def test_a_damaged_cache_file_is_rebuilt_not_trusted(tiny_clip, tmp_path, monkeypatch, damage):
    from safetensors.numpy import load_file, save_file

    good = text_classifier(tiny_clip, LABELS, "photo", cache_dir=tmp_path)
    [path] = tmp_path.glob("*.safetensors")
    if damage == "garbage":
        path.write_bytes(b"\x00\x01 not a safetensors file")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-40])
    else:  # a readable file with plausible metadata but another matrix in it
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as handle:
            metadata = handle.metadata()
        save_file({"weights": np.ones((2, 3), dtype=np.float32)}, str(path), metadata=metadata)
    calls = _count_text_encodings(tiny_clip, monkeypatch)
    rebuilt = text_classifier(tiny_clip, LABELS, "photo", cache_dir=tmp_path)
    assert calls  # re-encoded
    assert np.array_equal(rebuilt, good)
    assert np.array_equal(load_file(str(path))["weights"], good)  # and the file repaired


def test_default_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ZEROSHOT_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "classifiers"
    monkeypatch.delenv("ZEROSHOT_CACHE")
    assert default_cache_dir().parts[-3:] == (".cache", "zeroshot", "classifiers")


def test_unwritable_cache_only_costs_the_cache(tiny_clip, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    weights = text_classifier(tiny_clip, LABELS, "photo", cache_dir=blocker / "sub")
    assert weights.shape == (len(LABELS), tiny_clip.embedding_dim)


def test_predict_and_top_k_agree_with_the_probabilities(tiny_clip):
    photos = _photos()
    classifier = ZeroShotImageClassifier(tiny_clip, LABELS, "photo", cache_dir=False, batch_size=2)
    probabilities = classifier.predict_proba(photos)
    assert classifier.predict(photos) == [LABELS[i] for i in probabilities.argmax(axis=1)]
    top = classifier.top_k(photos, k=3)
    for row, best in zip(probabilities, top, strict=True):
        assert [label for label, _ in best] == [LABELS[i] for i in np.argsort(-row)[:3]]
        assert [p for _, p in best] == pytest.approx(sorted(row, reverse=True)[:3])
    assert classifier.predict(photos[0]) == classifier.predict([photos[0]])  # one image or a list


def test_unreadable_image_raises_in_predict_and_is_reported_in_iter_predictions(tiny_clip, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a picture")
    classifier = ZeroShotImageClassifier(tiny_clip, LABELS, "photo", cache_dir=False)
    with pytest.raises(ImageError, match="bad.jpg"):
        classifier.predict_proba([_photos()[0], bad])
    results = list(classifier.iter_predictions([_photos()[0], str(bad), _photos()[1]]))
    assert [r.index for r in results] == [0, 1, 2]
    assert results[1].probabilities is None and "not an image" in results[1].error
    assert results[0].probabilities is not None and results[2].probabilities is not None


def test_bad_labels_and_templates_are_user_errors(tiny_clip):
    with pytest.raises(UserError, match="repeated: cat"):
        text_classifier(tiny_clip, ["cat", "dog", "cat"], "photo", cache_dir=False)
    with pytest.raises(UserError, match="no labels given"):
        text_classifier(tiny_clip, [], "photo", cache_dir=False)
    with pytest.raises(UserError, match=r"\{\}"):
        text_classifier(tiny_clip, ["cat"], ["a photo without a slot"], cache_dir=False)
    with pytest.raises(UserError, match="unknown templates"):
        get_templates("no-such-set")


def test_shipped_templates():
    assert len(IMAGENET_TEMPLATES) == 80 and len(set(IMAGENET_TEMPLATES)) == 80
    assert IMAGENET_TEMPLATES[0] == "a bad photo of a {}." and IMAGENET_TEMPLATES[-1] == "a tattoo of the {}."
    assert get_templates() == IMAGENET_TEMPLATES
    assert {"imagenet", "cifar", "textures", "food", "pipeline"} <= set(template_set_names())
    assert get_templates("pipeline") == ["This is a photo of {}."]
    assert get_templates(["a {label} photo."]) == ["a {} photo."]


def test_templates_from_files(tmp_path):
    text = tmp_path / "mine.txt"
    text.write_text("# my prompts\na photo of a {}.\n\nan x-ray of a {}.\n")
    assert get_templates(text) == ["a photo of a {}.", "an x-ray of a {}."]
    as_json = tmp_path / "mine.json"
    as_json.write_text('{"templates": ["a sketch of a {}."]}')
    assert get_templates(as_json) == ["a sketch of a {}."]
    as_json.write_text("[1, 2]")
    with pytest.raises(UserError, match="JSON list"):
        get_templates(as_json)
