"""The whole vision half on real images, with a CLIP trained here (`zeroshot train-clip`) on Fashion-MNIST.

    python bench/fashion_mnist_setup.py                       # image folders under .cache/fashion-mnist
    zeroshot train-clip .cache/fashion-mnist/train-1000-seed0 --output-dir .cache/fashion-mnist/lit-model \\
        --epochs 8 --threads 1
    python bench/fashion_mnist_clip.py [--model .cache/fashion-mnist/lit-model] [--scenes 40] [--seeds 10]

Measures, on the 10,000 Fashion-MNIST *test* images (the model trained on 8 classes of the training set;
"sandal" and "ankle boot" were held out of training entirely):
1. seen classes: zero-shot accuracy on the 8,000 test images of the 8 seen classes among the 8 seen
   names, with one template ("a photo of a {}.", the training caption), the CLIP paper's 80 ImageNet
   templates, and every other shipped template set;
2. unseen classes: accuracy on the 2,000 test images of the 2 held-out classes among all 10 names
   (chance 10%) and among the 2 held-out names only (chance 50%), and where they go instead;
3. few-shot: `fewshot-curve`'s four methods (ZeroShotHead, LinearProbe, KernelAdapter, TipAdapter) on
   the trained model's image embeddings of the 10,000 test images, 0-16 shots, `--seeds` seeds;
4. search: the 10,000 test images indexed with `ImageIndex` (what `zeroshot index` runs); for each class
   "a photo of a {class}", precision@10 and average precision over the whole ranking (mAP = mean);
5. detection: `ZeroShotDetector` (what `zeroshot detect --query` runs) on bench/detect_recall.py's
   synthetic scenes (test items pasted at known boxes on real photos), all 10 names as queries; AP@0.5
   per class with pycocotools, against the recall of the proposals the detector scored (its ceiling),
   and the accuracy of the ground-truth crops themselves (recognition without localisation).
Writes bench/results/fashion_mnist_clip.json and fashion-mnist-fewshot-curve.{json,png}. Nothing here
is tuned: the templates, thresholds and estimator settings are the shipped defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent))  # `bench.common` when run as a script
DATA = HERE.parent / ".cache" / "fashion-mnist"
ONE_TEMPLATE = ["a photo of a {}."]


def accuracy_with(model, embeddings: np.ndarray, truth: np.ndarray, names: list[str], templates) -> dict:
    """Zero-shot accuracy of `embeddings` among `names` with `templates` (the classify-images path)."""
    from zeroshot.vision.classify import text_classifier

    weights = text_classifier(model, names, templates, cache_dir=False)
    predicted = np.asarray(names)[(embeddings @ weights.T).argmax(axis=1)]
    per_class = {n: round(float((predicted[truth == n] == n).mean()), 4) for n in names if (truth == n).any()}
    return {"accuracy": round(float((predicted == truth).mean()), 4), "per_class": per_class,
            "predicted": predicted}


def seen_and_unseen(model, embeddings, labels, info) -> dict:
    from zeroshot.vision.templates import get_templates, template_set_names

    seen, held_out, classes = info["seen"], info["held_out"], info["classes"]
    is_seen = np.isin(labels, seen)
    template_sets = {"one template (training caption)": ONE_TEMPLATE}
    template_sets.update({f"shipped: {name}": get_templates(name) for name in template_set_names()})
    seen_rows = {}
    for name, templates in template_sets.items():
        result = accuracy_with(model, embeddings[is_seen], labels[is_seen], seen, templates)
        seen_rows[name] = {"templates": len(templates), "accuracy": result["accuracy"],
                           "per_class": result["per_class"]}
    unseen_rows = {}
    for name, templates in (("one template (training caption)", ONE_TEMPLATE),
                            ("shipped: imagenet", get_templates("imagenet"))):
        among_all = accuracy_with(model, embeddings[~is_seen], labels[~is_seen], classes, templates)
        among_unseen = accuracy_with(model, embeddings[~is_seen], labels[~is_seen], held_out, templates)
        everything = accuracy_with(model, embeddings, labels, classes, templates)
        went = {}
        for held in held_out:
            values, counts = np.unique(among_all["predicted"][labels[~is_seen] == held], return_counts=True)
            ranked = sorted(zip(values, counts, strict=True), key=lambda pair: -pair[1])
            went[held] = {str(v): int(c) for v, c in ranked}
        unseen_rows[name] = {
            "among_all_10_names": {"accuracy": among_all["accuracy"], "chance": 0.1,
                                   "per_class": among_all["per_class"]},
            "among_the_2_held_out_names": {"accuracy": among_unseen["accuracy"], "chance": 0.5,
                                           "per_class": among_unseen["per_class"]},
            "held_out_images_predicted_as": went,
            "all_10000_images_among_10_names": {"accuracy": everything["accuracy"],
                                                "per_class": everything["per_class"]},
        }
    return {"seen": {"images": int(is_seen.sum()), "names": seen, "chance": round(1 / len(seen), 4),
                     "by_templates": seen_rows},
            "unseen": {"images": int((~is_seen).sum()), "held_out": held_out, "by_templates": unseen_rows}}


def few_shot(model, embeddings, labels, seeds: int, npz: Path, results: Path = RESULTS,
             shots: tuple[int, ...] = (0, 1, 2, 4, 8, 16)) -> dict:
    """`zeroshot fewshot-curve NPZ`, with its defaults (prior logit scale 10, Tip-Adapter alpha 3, beta 1);
    the curve's JSON and PNG are written into `results`."""
    from zeroshot.fewshot.curve import CurveConfig, format_table, run_curve, save_curve
    from zeroshot.fewshot.tasks import load_embedding_task
    from zeroshot.vision.classify import text_classifier

    classes = sorted(set(labels.tolist()))
    weights = text_classifier(model, classes, ONE_TEMPLATE, cache_dir=False)
    np.savez(npz, embeddings=embeddings, labels=labels, class_embeddings=weights,
             class_labels=np.asarray(classes))
    task = load_embedding_task(str(npz))  # exactly what the command line does with this file
    result = run_curve(task, CurveConfig(shots=list(shots), seeds=seeds,
                                         methods=["zeroshot", "linear", "kernel", "tip"]))
    _, png = save_curve(result, results, "fashion-mnist-fewshot-curve")
    print(format_table(result))
    # the curve's result names its points `series` (it said `summary` before the experiment runner)
    return {"series": result["series"], "n_pool": result["n_pool"], "n_test": result["n_test"],
            "seeds": seeds, "table": format_table(result), "png": str(png)}


def search(model, paths: list[Path], labels: np.ndarray, classes: list[str], db: Path) -> dict:
    from zeroshot.search.index import ImageIndex

    started = time.perf_counter()
    with ImageIndex(db, model, progress=True) as index:
        report = index.add([str(p) for p in paths])
        index_seconds = time.perf_counter() - started
        label_of = {str(p.resolve()): label for p, label in zip(paths, labels, strict=True)}
        rows = {}
        for name in classes:
            hits = index.search(f"a photo of a {name}", k=len(paths))
            ranked = [label_of[str(Path(path).resolve())]
                      for hit in hits for path in (hit.path, *hit.duplicates)]
            relevant = np.asarray([label == name for label in ranked])
            total = int((labels == name).sum())
            precision_at = np.cumsum(relevant) / np.arange(1, len(relevant) + 1)
            average_precision = float((precision_at * relevant).sum() / total)
            rows[name] = {"p@10": round(float(relevant[:10].mean()), 3),
                          "ap": round(average_precision, 4), "returned": len(ranked), "relevant": total}
        size = len(index)
    return {"indexed": size, "index_seconds": round(index_seconds, 1), "added": len(report.added),
            "failed": len(report.failed), "query": "a photo of a {class}", "per_class": rows,
            "mean_p@10": round(float(np.mean([r["p@10"] for r in rows.values()])), 3),
            "mAP": round(float(np.mean([r["ap"] for r in rows.values()])), 4)}


def detection(model, info: dict, scenes: int, seed: int) -> dict:
    import gzip

    from bench.common import FASHION, IOU, load_backgrounds, make_scene, tight_crop
    from PIL import Image
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from zeroshot.detect.detector import ZeroShotDetector
    from zeroshot.detect.proposals import box_iou

    classes = info["classes"]
    with gzip.open(FASHION) as handle:
        raw = np.frombuffer(handle.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(str(FASHION).replace("images-idx3", "labels-idx1")) as handle:
        item_labels = np.frombuffer(handle.read(), np.uint8, offset=8)
    objects = [tight_crop(item) for item in raw[:2000]]  # the same items detect_recall.py pastes
    backgrounds, _ = load_backgrounds()
    detector = ZeroShotDetector(model, classes, templates=ONE_TEMPLATE, threshold=0.0, cache_dir=False)
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    covered, crop_hits, total = 0, 0, 0
    from tqdm import tqdm

    started = time.perf_counter()
    for image_id in tqdm(range(1, scenes + 1), desc="detection scenes", unit="scene"):
        picked: list[int] = []
        scene, truth = make_scene(rng, objects, backgrounds, picked)
        picture = Image.fromarray(scene)
        images.append({"id": image_id, "width": picture.width, "height": picture.height})
        truth_labels = [classes[item_labels[i]] for i in picked]
        for box, label in zip(truth, truth_labels, strict=True):
            x0, y0, x1, y1 = (float(v) for v in box)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": classes.index(label) + 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                                "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
        proposals = detector.proposer(picture)  # the boxes the detector scores: recall is its ceiling
        if len(proposals):
            covered += int((box_iou(truth, proposals) >= IOU).any(axis=1).sum())
        crops = detector.embed_regions([picture] * len(truth), list(truth))
        scores, _ = detector.score(crops)
        crop_hits += sum(classes[int(s.argmax())] == t for s, t in zip(scores, truth_labels, strict=True))
        total += len(truth)
        for found in detector.detect(picture):
            x0, y0, x1, y1 = found.box
            results.append({"image_id": image_id, "category_id": classes.index(found.label) + 1,
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(found.score)})
    seconds = time.perf_counter() - started
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations,
                    "categories": [{"id": i + 1, "name": n} for i, n in enumerate(classes)]}
    coco.createIndex()
    evaluation = COCOeval(coco, coco.loadRes(results) if results else COCO(), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    precision = evaluation.eval["precision"][0, :, :, 0, -1]  # IoU 0.5, all areas, 100 detections
    per_class = {}
    for k, name in enumerate(classes):
        column = precision[:, k]
        present = int(sum(a["category_id"] == k + 1 for a in annotations))
        ap50 = round(float(column[column > -1].mean()), 4) if (column > -1).any() else None
        per_class[name] = {"ap50": ap50, "objects": present}
    with_objects = [v["ap50"] for v in per_class.values() if v["ap50"] is not None]
    seen = [per_class[n]["ap50"] for n in info["seen"] if per_class[n]["ap50"] is not None]
    unseen = [per_class[n]["ap50"] for n in info["held_out"] if per_class[n]["ap50"] is not None]
    return {"scenes": scenes, "seed": seed, "objects": total, "detections": len(results),
            "queries": classes, "templates": ONE_TEMPLATE, "threshold": 0.0,
            "proposals_per_image": detector.proposer.max_proposals,
            "AP50_all_classes": round(float(np.mean(with_objects)), 4),
            "AP50_seen_classes": round(float(np.mean(seen)), 4) if seen else None,
            "AP50_held_out_classes": round(float(np.mean(unseen)), 4) if unseen else None,
            "coco_AP50": round(float(evaluation.stats[1]), 4),
            "proposal_recall_at_iou_0.5": round(covered / max(total, 1), 4),
            "ground_truth_crop_accuracy_10_names": round(crop_hits / max(total, 1), 4),
            "per_class": per_class, "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the folder fashion_mnist_setup.py wrote")
    parser.add_argument("--model", type=Path, default=DATA / "lit-model")
    parser.add_argument("--scenes", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="scene seed (detect_recall.py's default)")
    parser.add_argument("--threads", type=int, default=1)
    # --output as in the other benches; --report, its old name, still works
    parser.add_argument("--output", "--report", dest="output", type=Path,
                        default=RESULTS / "fashion_mnist_clip.json",
                        help="the JSON to write (with --skip, merged into an existing one); the few-shot "
                             "curve goes beside it")
    parser.add_argument("--skip", default="",
                        help="comma-separated parts to skip: zeroshot,fewshot,search,detect")
    args = parser.parse_args()

    import torch
    from bench.common import load_test_set

    from zeroshot.models.clip import load_clip
    from zeroshot.vision.embed import embed_images

    torch.set_num_threads(args.threads)
    info = json.loads((args.data / "classes.json").read_text())
    skip = set(filter(None, args.skip.split(",")))
    model = load_clip(args.model, device="cpu")
    training = json.loads((args.model / "training.json").read_text())
    paths, labels = load_test_set(Path(info["test"]), info["classes"])
    started = time.perf_counter()
    indices, embeddings, failures = embed_images(model, [str(p) for p in paths], batch_size=256)
    embed_seconds = time.perf_counter() - started
    assert not failures and len(indices) == len(paths)
    report = {"model": str(args.model), "fingerprint": model.fingerprint,
              "training": {k: training[k] for k in ("mode", "frozen", "parameters", "seconds", "steps",
                                                    "best_step", "best_dev_loss", "stopped_early",
                                                    "train_images", "dev_images", "torch_threads")},
              "test_images": len(paths), "embed_seconds": round(embed_seconds, 1),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared)",
              "torch_threads": args.threads}
    if "zeroshot" not in skip:
        report.update(seen_and_unseen(model, embeddings, labels, info))
    if "fewshot" not in skip:
        report["few_shot"] = few_shot(model, embeddings, labels, args.seeds,
                                      args.data / "fashion-mnist-test-embeddings.npz", args.output.parent)
    if "search" not in skip:
        report["search"] = search(model, paths, labels, info["classes"],
                                  args.data / f"index-{model.fingerprint}")
    if "detect" not in skip:
        report["detection"] = detection(model, info, args.scenes, args.seed)
    report["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    previous = args.output
    merged = json.loads(previous.read_text()) if previous.is_file() and skip else {}
    merged.update(report)
    previous.write_text(json.dumps(merged, indent=1))
    print(json.dumps({k: v for k, v in merged.items() if k != "few_shot"}, indent=1)[:6000])


if __name__ == "__main__":
    main()
