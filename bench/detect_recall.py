"""Region-proposal recall on synthetic scenes: how many objects does some proposal cover?

    python -m bench.detect_recall [--scenes 40] [--quality-scenes 20] [--seed 0] [--max-side 320]

Scenes: real object images (Fashion-MNIST test items from Debian's `dataset-fashion-mnist`, install it
with `apt-get install -y dataset-fashion-mnist`; without it, crops of scikit-image sample objects, and
the output says so) cut to their tight box, upscaled to a random size (24-240 px on the longer side),
tinted and pasted at random positions (2-4 per scene, overlapping each other at IoU <= 0.2) on real
photos (scikit-image samples, plus OpenCV's sample pictures from Debian's `opencv-doc` when installed),
cropped and resized to 640x480. Everything is seeded.

A ground-truth box counts as recalled at N when one of the first N proposals overlaps it at IoU >= 0.5.
Methods: selective search (fast; quality on the first --quality-scenes scenes, it is ~3x slower),
multi-scale sliding windows, and both interleaved: `zeroshot.detect.proposals.RegionProposer` with its
defaults otherwise. Prints a table; writes bench/results/detect_recall.json, detect_recall.png (the
curves) and detect_recall_scene.png (one scene with its ground truth and best proposals).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from bench.common import FASHION, IOU, SIZE, load_backgrounds, make_scene, tight_crop
from PIL import Image, ImageDraw

from zeroshot.detect.proposals import RegionProposer, box_iou, selective_search, sliding_windows

HERE = Path(__file__).parent
RESULTS = HERE / "results"
BUDGETS = (10, 50, 100, 250, 500, 1000, 2000)


def load_objects() -> tuple[list[np.ndarray], str]:
    """Grey object images (0 = background), tight-cropped; and where they came from."""
    if FASHION.is_file():
        with gzip.open(FASHION) as handle:
            raw = np.frombuffer(handle.read(), np.uint8, offset=16).reshape(-1, 28, 28)
        return [tight_crop(item) for item in raw[:2000]], f"Fashion-MNIST test items ({FASHION})"
    from skimage import color, data, transform

    objects = []
    for name in ("coins", "horse", "camera", "astronaut", "coffee", "chelsea"):
        picture = np.asarray(getattr(data, name)())
        grey = color.rgb2gray(picture) if picture.ndim == 3 else picture / 255.0
        grey = transform.resize(grey, (120, 120), anti_aliasing=True)
        for y in range(0, 120, 40):
            for x in range(0, 120, 40):
                objects.append((grey[y:y + 40, x:x + 40] * 255).astype(np.uint8))
    return objects, "FALLBACK: crops of scikit-image samples (dataset-fashion-mnist is not installed)"


def recall_at(proposals: np.ndarray, truth: np.ndarray, budgets: tuple[int, ...]) -> list[int]:
    """For each budget N: how many ground-truth boxes the first N proposals cover at IoU >= 0.5."""
    if len(proposals) == 0:
        return [0] * len(budgets)
    ious = box_iou(truth, proposals)  # (n_truth, n_proposals)
    first_hit = np.where((ious >= IOU).any(axis=1), (ious >= IOU).argmax(axis=1), np.iinfo(np.int64).max)
    return [int((first_hit < n).sum()) for n in budgets]


def main() -> None:
    from tqdm import tqdm

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=40)
    parser.add_argument("--quality-scenes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-side", type=int, default=320, help="selective search works at this size")
    args = parser.parse_args()

    objects, object_source = load_objects()
    backgrounds, background_names = load_backgrounds()
    rng = np.random.default_rng(args.seed)
    proposer = RegionProposer(max_side=args.max_side)
    methods = ("selective search (fast)", "selective search (quality)", "sliding windows",
               "both (fast + windows)")
    hits = {m: np.zeros(len(BUDGETS), np.int64) for m in methods}
    truths = {m: 0 for m in methods}
    counts: dict[str, list[int]] = {m: [] for m in methods}
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    example = None
    for index in tqdm(range(args.scenes), desc="scenes", unit="scene"):
        scene, truth = make_scene(rng, objects, backgrounds)
        start = time.perf_counter()
        fast = selective_search(scene, "fast", args.max_side)
        fast_s = time.perf_counter() - start
        start = time.perf_counter()
        windows = sliding_windows(SIZE[0], SIZE[1], proposer.scales, proposer.aspect_ratios)
        windows_s = time.perf_counter() - start
        runs = {"selective search (fast)": ([fast], fast_s), "sliding windows": ([windows], windows_s),
                "both (fast + windows)": ([fast, windows], fast_s + windows_s)}
        if index < args.quality_scenes:
            start = time.perf_counter()
            runs["selective search (quality)"] = ([selective_search(scene, "quality", args.max_side)],
                                                  time.perf_counter() - start)
        for method, (sources, elapsed) in runs.items():
            start = time.perf_counter()
            ranked = proposer.merge(scene, sources, limit=max(BUDGETS))
            seconds[method].append(elapsed + time.perf_counter() - start)
            counts[method].append(len(ranked))
            hits[method] += recall_at(ranked, truth, BUDGETS)
            truths[method] += len(truth)
            if index == 0 and method == "both (fast + windows)":
                example = (scene, truth, ranked)

    report = {
        "what": "fraction of ground-truth boxes covered by one of the first N proposals at IoU >= 0.5",
        "objects": object_source, "backgrounds": background_names, "scenes": args.scenes,
        "quality_scenes": min(args.quality_scenes, args.scenes), "seed": args.seed,
        "scene_size": list(SIZE), "selective_search_max_side": args.max_side, "budgets": list(BUDGETS),
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),  # timings are of a shared machine
        "methods": {m: {"ground_truth_boxes": truths[m],
                        "recall": [round(h / max(truths[m], 1), 4) for h in hits[m]],
                        "mean_proposals_available": round(float(np.mean(counts[m])), 1) if counts[m] else 0,
                        "mean_seconds_per_image": round(float(np.mean(seconds[m])), 3) if seconds[m] else 0}
                    for m in methods if truths[m]},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "detect_recall.json").write_text(json.dumps(report, indent=1))
    _plot(report, RESULTS / "detect_recall.png")
    if example is not None:
        _draw_example(*example, RESULTS / "detect_recall_scene.png")
    _print_table(report)


def _plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for method, row in report["methods"].items():
        available = row["mean_proposals_available"]
        budgets = [b for b in report["budgets"] if b <= max(available, report["budgets"][0]) * 1.5]
        axes.plot(budgets, row["recall"][:len(budgets)], marker="o",
                  label=f"{method} ({row['ground_truth_boxes']} objects)")
    axes.set_xscale("log")
    axes.set_xlabel("proposals per image (first N)")
    axes.set_ylabel("recall at IoU >= 0.5")
    axes.set_ylim(0, 1)
    axes.grid(alpha=0.3)
    axes.set_title(f"Proposal recall, {report['scenes']} synthetic 640x480 scenes")
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _draw_example(scene: np.ndarray, truth: np.ndarray, ranked: np.ndarray, path: Path) -> None:
    picture = Image.fromarray(scene)
    draw = ImageDraw.Draw(picture)
    ious = box_iou(truth, ranked)
    for row, box in zip(ious, truth, strict=True):
        draw.rectangle(tuple(box), outline=(0, 255, 0), width=3)
        if len(ranked):
            draw.rectangle(tuple(ranked[int(row.argmax())]), outline=(255, 0, 255), width=2)
    picture.save(path)


def _print_table(report: dict) -> None:
    print(f"objects: {report['objects']}")
    print(f"{report['scenes']} scenes ({report['quality_scenes']} for quality mode), seed {report['seed']}, "
          f"selective search at max side {report['selective_search_max_side']}")
    header = f"{'method':30} {'objects':>7} " + " ".join(f"{'@' + str(b):>6}" for b in report["budgets"])
    print(header + f" {'avail':>6} {'s/img':>6}")
    for method, row in report["methods"].items():
        cells = " ".join(f"{r:6.3f}" for r in row["recall"])
        print(f"{method:30} {row['ground_truth_boxes']:7d} {cells} {row['mean_proposals_available']:6.0f} "
              f"{row['mean_seconds_per_image']:6.2f}")


if __name__ == "__main__":
    main()
