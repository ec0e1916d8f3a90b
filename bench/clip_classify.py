"""Zero-shot image classification speed: zeroshot vs the transformers pipeline, in one run.

    python -m bench.clip_classify [--images 500] [--pipeline-images 100] [--classes 100] [--rounds 10]

The same JPEG files (random crops and resizes of scikit-image's sample photos, seeded) are classified
into 100 classes (CIFAR-100's names) with a random-weight CLIP of ViT-B/32 size; speed does not depend
on the weights' values. The pipeline is slow (it encodes the 100 prompts again for every image), so by
default it classifies the first 100 of our 500 images; pass --pipeline-images 500 for all. The two sides
are timed in alternating slices (--rounds) so that both see the same load on a shared machine. Both
sides use the one template "This is a photo of {}." (the pipeline's default), read the files themselves
and include every cost: our timing includes encoding the 100 prompts once (cache disabled); the pipeline
encodes them for every image, as it does. The pipeline's probabilities are checked against ours on the
images both classified.

Also measures this CPU's fp32 matmul GFLOP/s with a large torch matmul and reports our images/s
against the ceiling that implies for ViT-B/32's ~4.4 GFLOPs per 224x224 image.
Prints a table and writes bench/results/clip_classify.json.
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

HERE = Path(__file__).parent
WORK = HERE.parent / ".cache" / "bench-clip-classify"
TEMPLATE = "This is a photo of {}."
VIT_B32_GFLOPS = 4.4
CIFAR100 = (
    "apple,aquarium fish,baby,bear,beaver,bed,bee,beetle,bicycle,bottle,bowl,boy,bridge,bus,butterfly,camel,"
    "can,castle,caterpillar,cattle,chair,chimpanzee,clock,cloud,cockroach,couch,crab,crocodile,cup,dinosaur,"
    "dolphin,elephant,flatfish,forest,fox,girl,hamster,house,kangaroo,keyboard,lamp,lawn mower,leopard,lion,"
    "lizard,lobster,man,maple tree,motorcycle,mountain,mouse,mushroom,oak tree,orange,orchid,otter,palm tree,"
    "pear,pickup truck,pine tree,plain,plate,poppy,porcupine,possum,rabbit,raccoon,ray,road,rocket,rose,sea,"
    "seal,shark,shrew,skunk,skyscraper,snail,snake,spider,squirrel,streetcar,sunflower,sweet pepper,table,"
    "tank,telephone,television,tiger,tractor,train,trout,tulip,turtle,wardrobe,whale,willow tree,wolf,woman,"
    "worm").split(",")


def make_photos(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """`count` JPEGs cut from scikit-image's colour sample photos: random crops, random sizes, seeded."""
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"photo_{i:04d}.jpg" for i in range(count)]
    if all(path.exists() for path in paths):
        return paths
    names = ["astronaut", "chelsea", "coffee", "rocket", "cat", "immunohistochemistry", "hubble_deep_field",
             "retina", "colorwheel", "logo", "motorcycle_left", "page", "camera", "moon", "text", "brick"]
    sources = []
    for name in names:
        try:
            sources.append(Image.fromarray(getattr(data, name)()).convert("RGB"))
        except Exception:  # noqa: BLE001 - some samples need pooch downloads; skip those
            continue
    rng = np.random.default_rng(seed)
    for path in paths:
        source = sources[rng.integers(len(sources))]
        width, height = source.size
        crop_w, crop_h = int(width * rng.uniform(0.4, 1.0)), int(height * rng.uniform(0.4, 1.0))
        left, top = int(rng.integers(0, width - crop_w + 1)), int(rng.integers(0, height - crop_h + 1))
        side = int(rng.integers(256, 900))
        scale = side / max(crop_w, crop_h)
        image = source.crop((left, top, left + crop_w, top + crop_h))
        new_size = (max(1, int(crop_w * scale)), max(1, int(crop_h * scale)))
        image = image.resize(new_size, Image.Resampling.BILINEAR)
        image.save(path, quality=90)
    return paths


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    """Achievable fp32 GFLOP/s of a large square matmul with torch's default thread count."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b)
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * size**3 / best / 1e9


def run_interleaved(model, paths: list[Path], pipeline_count: int, labels: list[str], batch_size: int,
                    workers: int, rounds: int):
    """Time both sides in alternating slices, so that both see the same load on a shared machine.

    Round r classifies our r-th slice of `paths`, then the pipeline's r-th slice of the first
    `pipeline_count` paths. Our time includes building the classifier (encoding the prompts) once.
    """
    from tqdm.auto import tqdm
    from transformers import pipeline

    from zeroshot.vision.classify import ZeroShotImageClassifier

    classify = pipeline("zero-shot-image-classification", model=model.model, tokenizer=model.tokenizer,
                        image_processor=model.image_processor, device="cpu")
    start = time.perf_counter()
    classifier = ZeroShotImageClassifier(model, labels, [TEMPLATE], cache_dir=False, batch_size=batch_size,
                                         num_workers=workers)
    build = ours = time.perf_counter() - start
    theirs = 0.0
    ours_rows, their_rows = [], []
    ours_slices = np.array_split(np.arange(len(paths)), rounds)
    their_slices = np.array_split(np.arange(pipeline_count), rounds)
    for ours_slice, their_slice in tqdm(list(zip(ours_slices, their_slices, strict=True)), desc="rounds"):
        start = time.perf_counter()
        ours_rows.append(classifier.predict_proba([str(paths[i]) for i in ours_slice]))
        ours += time.perf_counter() - start
        start = time.perf_counter()
        for i in their_slice:
            scores = {o["label"]: o["score"] for o in classify(str(paths[i]), candidate_labels=labels,
                                                               hypothesis_template=TEMPLATE)}
            their_rows.append([scores[label] for label in labels])
        theirs += time.perf_counter() - start
    return ours, build, np.concatenate(ours_rows), theirs, np.asarray(their_rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--pipeline-images", type=int, default=100,
                        help="how many of the same images the (slow) pipeline classifies")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10, help="alternating timed slices per side")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from zeroshot.models.clip import load_clip, save_random_clip

    model_dir = WORK / "vit-b-32"
    if not (model_dir / "model.safetensors").exists():
        save_random_clip(model_dir, "vit-b-32", seed=0)
    model = load_clip(model_dir, device="cpu")
    paths = make_photos(WORK / "photos", args.images)
    labels = CIFAR100[: args.classes]
    load_before = os.getloadavg()[0]
    gflops = matmul_gflops()

    subset = paths[: args.pipeline_images]
    ours_seconds, build_seconds, ours_probabilities, pipe_seconds, pipe_probabilities = run_interleaved(
        model, paths, len(subset), labels, args.batch_size, args.workers, args.rounds)

    ours_rate = len(paths) / ours_seconds
    pipe_rate = len(subset) / pipe_seconds
    ceiling = gflops / VIT_B32_GFLOPS
    result = {
        "images": len(paths), "pipeline_images": len(subset), "classes": len(labels), "template": TEMPLATE,
        "model": "random CLIP, ViT-B/32 size (save_random_clip(..., 'vit-b-32'))",
        "batch_size": args.batch_size, "workers": args.workers, "rounds": args.rounds,
        "torch_threads": torch.get_num_threads(), "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "ours_seconds": ours_seconds, "ours_label_encoding_seconds": build_seconds,
        "ours_images_per_s": ours_rate, "pipeline_seconds": pipe_seconds, "pipeline_images_per_s": pipe_rate,
        "speedup": ours_rate / pipe_rate,
        "matmul_gflops_fp32": gflops, "flop_ceiling_images_per_s": ceiling,
        "fraction_of_ceiling": ours_rate / ceiling,
        "max_abs_probability_difference": float(np.abs(ours_probabilities[: len(subset)]
                                                       - pipe_probabilities).max()),
    }
    table = Table(title=f"{len(paths)} photos into {len(labels)} classes, ViT-B/32-size random CLIP, CPU")
    for column in ("", "images", "seconds", "images/s", "vs pipeline"):
        table.add_column(column, justify="right" if column else "left")
    table.add_row("transformers pipeline", str(len(subset)), f"{pipe_seconds:.1f}", f"{pipe_rate:.2f}",
                  "1.0x")
    table.add_row("zeroshot", str(len(paths)), f"{ours_seconds:.1f}", f"{ours_rate:.2f}",
                  f"{result['speedup']:.1f}x")
    table.add_row("FLOP ceiling", "", "", f"{ceiling:.2f}",
                  f"ours = {100 * result['fraction_of_ceiling']:.0f}%")
    console = Console()
    console.print(table)
    console.print(f"fp32 matmul: {gflops:.1f} GFLOP/s with {torch.get_num_threads()} threads; ceiling = "
                  f"{gflops:.1f} / {VIT_B32_GFLOPS} GFLOPs per image. Labels encoded once in "
                  f"{build_seconds:.2f} s. "
                  f"Max |p_ours - p_pipeline| = {result['max_abs_probability_difference']:.1e}")
    out = HERE / "results" / "clip_classify.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
