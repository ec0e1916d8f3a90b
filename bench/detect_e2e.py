"""End-to-end zero-shot detection time per image, split by stage, with a ViT-B/32-size CLIP.

    python -m bench.detect_e2e [--proposals 200] [--repeats 1] [--device cpu]

Runs `ZeroShotDetector` with a random-weight CLIP of ViT-B/32 size (no CLIP weights can be downloaded
here; speed does not depend on the weights' values, but the boxes it keeps are meaningless) on real
photos: scikit-image's samples and, when Debian's `opencv-doc` is installed, a few of OpenCV's. Three
text queries (80 ImageNet templates each, against the 12 default background prompts) and one example
image. Reports the one-time setup (building the text classifier, uncached, and embedding the example)
and, per image, milliseconds for proposals, cropping (crop + pad + resize + normalise), encoding,
scoring (+ NMS). Prints a table; writes bench/results/detect_e2e.json, detect_e2e.png (stage times)
and detect_e2e_example.png (one annotated image); with --device other than cpu, the names end in
_<device>_<proposals>.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).parent
RESULTS = HERE / "results"
WORK = HERE.parent / ".cache" / "bench-detect"
OPENCV_PHOTOS = ("fruits.jpg", "building.jpg", "home.jpg")
QUERIES = ("a cat", "a cup of coffee", "a human face")
STAGES = ("proposals", "crop", "encode", "scoring")


def photos() -> list[Path]:
    """The photos as JPEG files (the detector reads files, as users' runs do)."""
    from skimage import data

    folder = WORK / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        path = folder / f"{name}.jpg"
        if not path.exists():
            Image.fromarray(np.asarray(getattr(data, name)())).convert("RGB").save(path, quality=92)
        paths.append(path)
    samples = Path("/usr/share/doc/opencv-doc/examples/data")
    paths += [samples / name for name in OPENCV_PHOTOS if (samples / name).is_file()]
    return paths


def main() -> None:
    from zeroshot.detect.detector import ZeroShotDetector, draw_detections
    from zeroshot.detect.proposals import RegionProposer
    from zeroshot.models.clip import load_clip
    from zeroshot.testing import save_random_clip
    from zeroshot.vision.images import load_image

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proposals", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=1, help="passes over the photos")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    suffix = "" if args.device == "cpu" else f"_{args.device.replace(':', '')}_{args.proposals}"

    folder = WORK / "clip-vit-b-32-random"
    if not (folder / "config.json").exists():
        save_random_clip(folder, "vit-b-32", seed=0)
    model = load_clip(folder, device=args.device)
    files = photos()
    from skimage import data

    example = Image.fromarray(data.chelsea()).crop((140, 20, 340, 220))  # the cat's head
    start = time.perf_counter()
    detector = ZeroShotDetector(model, queries=QUERIES, examples=[example], cache_dir=False,
                                proposer=RegionProposer(max_proposals=args.proposals))
    setup_ms = (time.perf_counter() - start) * 1000

    rows = []
    for run in detector.iter_runs([str(f) for f in files] * args.repeats):
        index, result, error = run
        if result is None:
            raise SystemExit(f"unexpected failure: {error}")
        timings = dict(result.timings_ms)
        timings["scoring"] = timings.get("scoring", 0.0) + timings.pop("nms", 0.0)
        rows.append({"image": files[index % len(files)].name, "size": f"{result.width}x{result.height}",
                     "n_proposals": result.num_proposals, "detections": len(result.detections),
                     **{stage: round(timings.get(stage, 0.0), 1) for stage in STAGES}})
    means = {stage: round(float(np.mean([row[stage] for row in rows])), 1) for stage in STAGES}
    proposals = float(np.mean([row["n_proposals"] for row in rows]))
    report = {
        "model": f"random-weight CLIP, ViT-B/32 size (fp32, {args.device})",
        "device_name": (torch.cuda.get_device_name() if args.device.startswith("cuda")
                        else platform.processor()),
        "queries": list(QUERIES),
        "templates": "imagenet (80)", "background_prompts": len(detector.background),
        "max_proposals": args.proposals, "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),  # a shared machine: others' load counts
        "setup_ms_uncached": round(setup_ms, 1), "images": rows, "mean_ms_per_image": means,
        "mean_total_ms_per_image": round(sum(means.values()), 1),
        "encode_ms_per_crop": round(means["encode"] / max(proposals, 1), 2),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"detect_e2e{suffix}.json").write_text(json.dumps(report, indent=1))
    _plot(report, RESULTS / f"detect_e2e{suffix}.png")
    first = load_image(files[0])
    annotated = draw_detections(first, detector.detect(first), detector.labels)
    annotated.save(RESULTS / f"detect_e2e{suffix}_example.png")
    _print(report)


def _plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(row["image"] for row in report["images"]))  # repeats: one bar, the mean
    runs = {name: [row for row in report["images"] if row["image"] == name] for name in names}
    labels = [f"{name} ({runs[name][0]['n_proposals']})" for name in names]
    figure, axes = plt.subplots(figsize=(8, 4))
    left = np.zeros(len(names))
    for stage in STAGES:
        values = np.array([np.mean([row[stage] for row in runs[name]]) for name in names])
        axes.barh(labels, values, left=left, label=stage)
        left += values
    axes.set_xlabel("milliseconds per image (mean of the passes)")
    axes.set_title(f"Detection time by stage, {report['model']}")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _print(report: dict) -> None:
    print(f"{report['model']}, {report['torch_threads']} torch threads, up to {report['max_proposals']} "
          f"proposals; setup (text classifier uncached + example) {report['setup_ms_uncached']:.0f} ms")
    print(f"{'image':18} {'size':>9} {'props':>5} {'dets':>4} " + " ".join(f"{s:>10}" for s in STAGES))
    for row in report["images"]:
        print(f"{row['image']:18} {row['size']:>9} {row['n_proposals']:5d} {row['detections']:4d} "
              + " ".join(f"{row[s]:10.1f}" for s in STAGES))
    print(f"{'mean (ms)':18} {'':>9} {'':>5} {'':>4} "
          + " ".join(f"{report['mean_ms_per_image'][s]:10.1f}" for s in STAGES)
          + f"   total {report['mean_total_ms_per_image']:.0f} ms, "
            f"encode {report['encode_ms_per_crop']} ms/crop")


if __name__ == "__main__":
    main()
