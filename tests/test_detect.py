"""Zero-shot detection: proposals, NMS, the detector's scoring paths, bad input, COCO export."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from zeroshot.detect.coco import CocoBuilder, read_coco
from zeroshot.detect.detector import Detection, ZeroShotDetector, nms, square_crop
from zeroshot.detect.proposals import RegionProposer, box_iou, dedup_boxes, sliding_windows
from zeroshot.errors import UserError

# Windows of 160 px at 80 px strides on a 320 px scene: one of them is exactly the pasted example.
SCENE, PATCH, AT = 320, 160, (80, 80)
WINDOWS = RegionProposer(method="windows", scales=(0.25, 0.5, 1.0), aspect_ratios=(1.0, 2.0),
                         max_proposals=500)


def textured(size: tuple[int, int], seed: int) -> Image.Image:
    """A seeded random picture with structure at several scales (so no region is flat)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, (size[1] // 16 + 1, size[0] // 16 + 1, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize((size[0], size[1]), Image.Resampling.BICUBIC), np.int16)
    noise = rng.integers(-30, 30, base.shape)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def scene_and_example() -> tuple[Image.Image, Image.Image]:
    example = textured((PATCH, PATCH), seed=1)
    scene = textured((SCENE, SCENE), seed=2)
    scene.paste(example, AT)
    return scene, example


# --- non-maximum suppression ---------------------------------------------------------------------------

def test_nms_on_hand_made_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.5], [21, 21, 29, 29]])
    scores = np.array([0.9, 0.8, 0.7, 0.95, 0.1])
    # box 3 wins its cluster (0 and 1 overlap it at IoU 0.95 and 0.72); box 2 beats box 4 (IoU 0.64).
    assert nms(boxes, scores, 0.3).tolist() == [3, 2]
    # With a loose threshold nothing overlaps enough to be dropped except the near-copy 0 of 3.
    assert nms(boxes, scores, 0.9).tolist() == [3, 1, 2, 4]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_nms_agrees_with_opencv():
    import cv2

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 200, (300, 2))
    wh = rng.uniform(10, 80, (300, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    scores = rng.uniform(0, 1, 300)
    ours = nms(boxes, scores, 0.4)
    theirs = cv2.dnn.NMSBoxes([list(map(float, r)) for r in np.concatenate([xy, wh], 1)],
                              scores.astype(float).tolist(), 0.0, 0.4)
    assert sorted(ours.tolist()) == sorted(np.asarray(theirs).reshape(-1).tolist())


# --- proposals ---------------------------------------------------------------------------------------------

def test_windows_cover_the_image_and_stay_inside():
    boxes = sliding_windows(300, 200, scales=(0.5, 1.0), aspect_ratios=(1.0,))
    assert boxes[:, 0].min() == 0 and boxes[:, 1].min() == 0
    assert np.isclose(boxes[:, 2].max(), 300) and np.isclose(boxes[:, 3].max(), 200)
    assert [0, 0, 200, 200] in boxes.tolist()


def test_image_smaller_than_the_windows_gets_its_whole_box():
    tiny = textured((40, 24), seed=3)
    boxes = RegionProposer(method="both", min_size=8)(tiny)
    assert len(boxes) > 0
    assert (boxes[:, 2] <= 40).all() and (boxes[:, 3] <= 24).all() and (boxes >= 0).all()
    assert [0, 0, 40, 24] in boxes.tolist() or box_iou(boxes, [[0, 0, 40, 24]]).max() > 0.5


def test_uniform_image_has_no_proposals():
    flat = Image.new("RGB", (200, 150), (90, 90, 90))
    assert len(RegionProposer()(flat)) == 0


def test_selective_search_boxes_respect_the_settings(scene_and_example):
    scene, _ = scene_and_example
    boxes = RegionProposer(method="selective-search", max_proposals=50, min_size=20, dedup_iou=0.7)(scene)
    assert 0 < len(boxes) <= 50
    sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    assert sides.min() >= 20
    assert (boxes[:, 2] <= SCENE).all() and (boxes[:, 3] <= SCENE).all()
    overlaps = box_iou(boxes, boxes) - np.eye(len(boxes))
    assert overlaps.max() <= 0.7


def test_dedup_keeps_the_first_of_near_copies():
    boxes = np.array([[0, 0, 100, 100], [1, 0, 100, 101], [50, 50, 150, 150]], np.float32)
    assert dedup_boxes(boxes, 0.9).tolist() == [[0, 0, 100, 100], [50, 50, 150, 150]]


@pytest.mark.parametrize("settings", [dict(method="sliding"), dict(max_proposals=0), dict(scales=(1.5,)),
                                      dict(search_mode="slow"), dict(aspect_ratios=())])
def test_bad_proposal_settings_are_user_errors(settings):
    with pytest.raises(UserError):
        RegionProposer(**settings)


# --- the detector ------------------------------------------------------------------------------------------

def test_example_image_is_found_where_it_was_pasted(tiny_clip, scene_and_example):
    scene, example = scene_and_example
    detector = ZeroShotDetector(tiny_clip, examples=[example], proposer=WINDOWS, example_threshold=0.9999)
    detections = detector.detect(scene)
    assert detections, "the exact copy of the example must pass a 0.9999 cosine threshold"
    best = detections[0]
    assert best.label == "example"
    assert best.box == (80.0, 80.0, 240.0, 240.0)
    assert best.score > 0.9999


def test_nearest_example_mode_and_per_label_nms(tiny_clip, scene_and_example):
    scene, example = scene_and_example
    other = textured((PATCH, PATCH), seed=9)
    detector = ZeroShotDetector(tiny_clip, examples={"a": [example, other], "b": [example]},
                                example_mode="nearest", proposer=WINDOWS, example_threshold=0.9999)
    found = {(d.label, d.box) for d in detector.detect(scene)}
    # The same box under two labels: suppression is per label, so both stay.
    assert ("a", (80.0, 80.0, 240.0, 240.0)) in found and ("b", (80.0, 80.0, 240.0, 240.0)) in found


def test_text_queries_score_against_background(tiny_clip, scene_and_example, tmp_path):
    scene, _ = scene_and_example
    detector = ZeroShotDetector(tiny_clip, queries=["dented metallic surface", "rust"], templates="photo",
                                threshold=0.0, proposer=WINDOWS, cache_dir=tmp_path)
    result = detector.run(scene)
    scores, passed = detector.score(detector.embed_regions([scene], [None]))
    assert scores.shape == passed.shape == (1, 2)
    assert result.num_proposals > 0 and set(result.timings_ms) >= {"proposals", "crop", "encode", "scoring"}
    for detection in result.detections:
        assert detection.label in {"dented metallic surface", "rust"}
        assert 0.0 <= detection.score <= 1.0
        x0, y0, x1, y1 = detection.box
        assert 0 <= x0 < x1 <= SCENE and 0 <= y0 < y1 <= SCENE
    # The text classifier was cached on disk (the classification issue's cache) and is reused.
    assert list(tmp_path.glob("*.safetensors"))
    strict = ZeroShotDetector(tiny_clip, queries=["rust"], templates="photo", threshold=1.0,
                              proposer=WINDOWS, cache_dir=tmp_path)
    assert strict.detect(scene) == []


def test_both_paths_on_one_label_need_both_to_pass(tiny_clip, scene_and_example):
    scene, example = scene_and_example
    settings = dict(queries=["patch"], examples={"patch": [example]}, templates="photo",
                    example_threshold=0.9999, proposer=WINDOWS, cache_dir=False)
    # No backgrounds: the text probability is 1, so the fused score is (1 + cosine) / 2.
    both = ZeroShotDetector(tiny_clip, threshold=0.0, background=(), **settings).detect(scene)
    assert both[0].label == "patch" and both[0].box == (80.0, 80.0, 240.0, 240.0)
    assert both[0].score > 0.99995
    # The example alone passes, but a text side that cannot pass vetoes the box.
    assert ZeroShotDetector(tiny_clip, threshold=1.0, **settings).detect(scene) == []


def test_context_padding_rescores_the_kept_boxes(tiny_clip, scene_and_example):
    scene, example = scene_and_example
    plain = ZeroShotDetector(tiny_clip, examples=[example], example_threshold=-1.0, proposer=WINDOWS)
    padded = ZeroShotDetector(tiny_clip, examples=[example], example_threshold=-1.0, proposer=WINDOWS,
                              context_padding=0.25)
    before = {d.box: d.score for d in plain.detect(scene)}
    result = padded.run(scene)
    assert "context_crop_encode" in result.timings_ms and result.detections
    after = {d.box: d.score for d in result.detections}
    shared = set(before) & set(after)
    # A padded crop sees more of the scene, so the mixed embedding, and the score, change.
    assert shared and any(abs(before[box] - after[box]) > 1e-6 for box in shared)


def test_uniform_and_tiny_images_give_empty_results(tiny_clip, scene_and_example):
    _, example = scene_and_example
    detector = ZeroShotDetector(tiny_clip, examples=[example], example_threshold=-1.0)
    assert detector.detect(Image.new("RGB", (300, 200), (255, 255, 255))) == []
    assert detector.detect(Image.new("RGB", (3, 3), (10, 20, 30))) == []


def test_no_queries_and_no_examples_is_a_user_error(tiny_clip):
    with pytest.raises(UserError, match="nothing to detect"):
        ZeroShotDetector(tiny_clip)
    with pytest.raises(UserError, match="query is empty"):
        ZeroShotDetector(tiny_clip, queries=["  "])


def test_unreadable_example_names_the_file(tiny_clip, tmp_path):
    broken = tmp_path / "defect.jpg"
    broken.write_text("not a jpeg")
    with pytest.raises(UserError, match="defect.jpg"):
        ZeroShotDetector(tiny_clip, examples=[broken])
    with pytest.raises(UserError, match="missing.png"):
        ZeroShotDetector(tiny_clip, examples=[tmp_path / "missing.png"])


def test_a_bad_file_in_the_batch_is_reported_and_the_batch_goes_on(tiny_clip, scene_and_example, tmp_path):
    scene, example = scene_and_example
    good = tmp_path / "scene.png"
    scene.save(good)
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    detector = ZeroShotDetector(tiny_clip, examples=[example], proposer=WINDOWS, example_threshold=0.9999)
    runs = list(detector.iter_runs([str(bad), str(good)], progress=False))
    assert runs[0][1] is None and "notes.txt" in runs[0][2]
    assert runs[1][2] is None and runs[1][1].detections


def test_square_crop_pads_without_cutting():
    image = textured((100, 60), seed=4)
    crop = square_crop(image, np.array([10, 10, 90, 30]))
    assert crop.size == (80, 80)
    assert np.array_equal(np.asarray(crop)[30:50], np.asarray(image)[10:30, 10:90])


# --- COCO export -------------------------------------------------------------------------------------------

def test_coco_export_is_valid_and_round_trips(tmp_path):
    coco = CocoBuilder(["dent", "scratch"])
    first = [Detection((10.0, 20.0, 110.0, 70.0), "dent", 0.9), Detection((5.5, 6.0, 8.5, 9.25), "rust", 0.4)]
    coco.add_image("a.jpg", 640, 480, first)
    coco.add_image("b.jpg", 100, 100, [])
    coco.add_image("c.jpg", 50, 40, [Detection((0.0, 0.0, 50.0, 40.0), "scratch", 0.75)])
    path = coco.write(tmp_path / "annotations.coco.json")
    document = json.loads(path.read_text())
    assert [c["name"] for c in document["categories"]] == ["dent", "scratch", "rust"]
    assert [c["id"] for c in document["categories"]] == [1, 2, 3]
    assert [i["id"] for i in document["images"]] == [1, 2, 3]
    assert [a["id"] for a in document["annotations"]] == [1, 2, 3]
    dent = document["annotations"][0]
    assert dent["bbox"] == [10.0, 20.0, 100.0, 50.0] and dent["area"] == 5000.0
    assert dent["category_id"] == 1 and dent["image_id"] == 1 and dent["iscrowd"] == 0
    assert document["annotations"][2]["image_id"] == 3 and document["annotations"][2]["category_id"] == 2
    back = read_coco(path)
    last = [Detection((0.0, 0.0, 50.0, 40.0), "scratch", 0.75)]
    assert back == {"a.jpg": first, "b.jpg": [], "c.jpg": last}


@pytest.mark.parametrize("damage", ["duplicate_image_id", "bad_bbox", "unknown_category"])
def test_coco_reader_rejects_broken_files(tmp_path, damage):
    coco = CocoBuilder(["dent"])
    coco.add_image("a.jpg", 10, 10, [Detection((1.0, 1.0, 5.0, 5.0), "dent", 0.5)])
    document = coco.to_dict()
    if damage == "duplicate_image_id":
        document["images"].append(dict(document["images"][0]))
    elif damage == "bad_bbox":
        document["annotations"][0]["bbox"] = [1, 2, 3]
    else:
        document["annotations"][0]["category_id"] = 7
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(document))
    with pytest.raises(UserError):
        read_coco(path)
