"""Zero-shot image classification speed per dtype: zeroshot in fp32, bf16 and int8 vs the transformers
pipeline, in one run, with agreement figures and each dtype's measured matmul ceiling.

    python -m bench.clip_classify [--images 500] [--pipeline-images 50] [--classes 100] [--rounds 5]
                                  [--dtypes fp32,bf16,int8] [--limit N]

The same JPEG files (random crops and resizes of scikit-image's sample photos, seeded) are classified
into 100 classes (CIFAR-100's names) with a random-weight CLIP of ViT-B/32 size; speed does not depend
on the weights' values. Every side is timed in alternating slices (--rounds) so that all see the same
load on a shared machine. All use the one template "This is a photo of {}." (the pipeline's default),
read the files themselves and include every cost: our timing includes encoding the 100 prompts once per
dtype (cache disabled); the pipeline (fp32, as it comes) encodes them for every image and is slow, so it
classifies only the first --pipeline-images images.

Agreement with fp32 over all --images: the smallest cosine between an image's embedding in the dtype and
in fp32 (and the same over the 100 class embeddings), and the share of images whose top-1 class is
fp32's. The bar of `--dtype auto` is cosine >= 0.999 and top-1 >= 99 %. The bench also runs auto's own
quick probe (in a fresh cache) and prints what it picked.

Ceilings: the image tower's FLOPs per 224x224 image are counted from the config (2 x multiply-accumulates,
8.82 GFLOPs for ViT-B/32; 4.41 G is the MAC count); the matmul rate of each dtype is measured on this CPU
through the same `nn.Linear` path the model takes, on the model's own shapes (32 images x 50 tokens
against 768x2304, 768x768, 768x3072 and 3072x768 weights), before and after the run (the mean is used).
Ceiling = GFLOP/s / GFLOPs per image.
`--limit N` classifies only N images (a quicker run). Prints a table and writes
bench/results/clip_classify.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
WORK = HERE.parent / ".cache" / "bench-clip-classify"
TEMPLATE = "This is a photo of {}."
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


def vit_image_macs(vision_config) -> float:
    """Multiply-accumulates of one image through a ViT image tower (patch embedding, every block's
    projections, attention and MLP, the final projection); FLOPs = 2 x this."""
    side, patch, width = vision_config.image_size, vision_config.patch_size, vision_config.hidden_size
    tokens = (side // patch) ** 2 + 1
    patch_embed = (tokens - 1) * width * 3 * patch * patch
    per_layer = (tokens * width * 3 * width + 2 * tokens * tokens * width + tokens * width * width
                 + 2 * tokens * width * vision_config.intermediate_size)
    return patch_embed + vision_config.num_hidden_layers * per_layer


def linear_gflops(dtype: str, rows: int = 32 * 50, repeats: int = 5) -> float:
    """Achievable GFLOP/s of `nn.Linear` in `dtype` (converted as the model is) on ViT-B/32's shapes."""
    from zeroshot.models.dtype import convert, torch_dtype

    shapes = [(768, 2304), (768, 768), (768, 3072), (3072, 768)]
    layers = [convert(torch.nn.Sequential(torch.nn.Linear(i, o)), dtype, inplace=True) for i, o in shapes]
    inputs = [torch.randn(rows, i).to(torch_dtype(dtype)) for i, _ in shapes]
    flops = sum(2 * rows * i * o for i, o in shapes)
    with torch.inference_mode():
        for layer, x in zip(layers, inputs, strict=True):
            layer(x)  # warm-up
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(repeats):
                for layer, x in zip(layers, inputs, strict=True):
                    layer(x)
            best = min(best, (time.perf_counter() - start) / repeats)
    return flops / best / 1e9


def square_gflops(dtype: str, size: int, repeats: int = 5) -> float:
    """GFLOP/s of a square torch matmul (fp32 or bf16), for reference."""
    from zeroshot.models.dtype import torch_dtype

    a, b = (torch.randn(size, size).to(torch_dtype(dtype)) for _ in range(2))
    torch.mm(a, b)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b)
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * size**3 / best / 1e9


def classify(classifier, paths: list[Path], batch_size: int, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """(image embeddings, probabilities): what `predict_proba` does, keeping the embeddings."""
    from zeroshot.vision.embed import iter_image_embeddings

    embeddings = [batch.embeddings for batch in iter_image_embeddings(
        classifier.model, [str(p) for p in paths], batch_size, workers, progress=False)]
    stacked = np.concatenate(embeddings)
    return stacked, classifier.probabilities_from_embeddings(stacked)


def run_interleaved(models: dict, paths: list[Path], pipeline_count: int, labels: list[str], batch_size: int,
                    workers: int, rounds: int) -> dict:
    """Time every dtype and the pipeline in alternating slices, so that all see the same load.

    Round r classifies our r-th slice of `paths` in each dtype, then the pipeline's r-th slice of the
    first `pipeline_count` paths. Our time includes building each classifier (encoding the prompts) once.
    """
    from tqdm.auto import tqdm
    from transformers import pipeline

    from zeroshot.vision.classify import ZeroShotImageClassifier

    fp32 = models["fp32"]
    classify_pipeline = pipeline("zero-shot-image-classification", model=fp32.model, tokenizer=fp32.tokenizer,
                                 image_processor=fp32.image_processor, device="cpu")
    sides = {}
    for name, model in models.items():
        start = time.perf_counter()
        classifier = ZeroShotImageClassifier(model, labels, [TEMPLATE], cache_dir=False,
                                             batch_size=batch_size, num_workers=workers)
        build = time.perf_counter() - start
        sides[name] = {"classifier": classifier, "seconds": build, "build": build, "embeddings": [],
                       "probabilities": []}
    pipe = {"seconds": 0.0, "probabilities": []}
    ours_slices = np.array_split(np.arange(len(paths)), rounds)
    their_slices = np.array_split(np.arange(pipeline_count), rounds)
    for ours_slice, their_slice in tqdm(list(zip(ours_slices, their_slices, strict=True)), desc="rounds"):
        for side in sides.values():
            start = time.perf_counter()
            embeddings, probabilities = classify(side["classifier"], [paths[i] for i in ours_slice],
                                                 batch_size, workers)
            side["seconds"] += time.perf_counter() - start
            side["embeddings"].append(embeddings)
            side["probabilities"].append(probabilities)
        start = time.perf_counter()
        for i in their_slice:
            scores = {o["label"]: o["score"] for o in classify_pipeline(
                str(paths[i]), candidate_labels=labels, hypothesis_template=TEMPLATE)}
            pipe["probabilities"].append([scores[label] for label in labels])
        pipe["seconds"] += time.perf_counter() - start
    for side in sides.values():
        side["embeddings"] = np.concatenate(side["embeddings"])
        side["probabilities"] = np.concatenate(side["probabilities"])
        side["class_weights"] = side.pop("classifier").class_weights
    pipe["probabilities"] = np.asarray(pipe["probabilities"])
    return {"sides": sides, "pipeline": pipe}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--limit", type=int, default=None, help="classify only the first N images")
    parser.add_argument("--pipeline-images", type=int, default=50,
                        help="how many of the same images the (slow) pipeline classifies")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed slices per side")
    parser.add_argument("--dtypes", default="fp32,bf16,int8", help="comma-separated; fp32 is always run")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "clip_classify.json")
    args = parser.parse_args()

    from bench.common import agreement, auto_choice, auto_summary, lscpu_model
    from rich.console import Console
    from rich.table import Table

    from zeroshot.models.clip import load_clip
    from zeroshot.models.dtype import MIN_COSINE, MIN_TOP1, bf16_supported, cpu_key
    from zeroshot.testing import save_random_clip

    console = Console()
    model_dir = WORK / "vit-b-32"
    if not (model_dir / "model.safetensors").exists():
        save_random_clip(model_dir, "vit-b-32", seed=0)
    dtypes = ["fp32"] + [d for d in args.dtypes.split(",") if d and d != "fp32"]
    count = min(args.images, args.limit or args.images)
    paths = make_photos(WORK / "photos", args.images)[:count]
    labels = CIFAR100[: args.classes]
    load_before = os.getloadavg()[0]
    auto = auto_choice(lambda: load_clip(model_dir, device="cpu", dtype="auto"))
    console.print(auto_summary(auto))
    models = {name: load_clip(model_dir, device="cpu", dtype=name) for name in dtypes}
    flops = 2 * vit_image_macs(models["fp32"].model.config.vision_config)
    rates = {name: linear_gflops(name) for name in dtypes}
    square = {f"{name}_{size}": square_gflops(name, size) for name in ("fp32", "bf16") if name in dtypes
              for size in (512, 2048)}

    subset = min(args.pipeline_images, count)
    run = run_interleaved(models, paths, subset, labels, args.batch_size, args.workers, args.rounds)
    sides, pipe = run["sides"], run["pipeline"]
    # Measured again after the run: the ceiling is the mean of both, so that a load that changed during
    # the run is not charged to one side of the comparison only.
    rates_after = {name: linear_gflops(name) for name in dtypes}
    rates_before, rates = rates, {name: (rates[name] + rates_after[name]) / 2 for name in dtypes}
    pipe_rate = subset / pipe["seconds"]
    ref = sides["fp32"]
    ref_cosines = ref["embeddings"].astype(np.float64) @ ref["class_weights"].T.astype(np.float64)
    top2 = np.sort(ref_cosines, axis=1)[:, -2:]
    margins = top2[:, 1] - top2[:, 0]  # fp32's best minus second-best class cosine, per image
    rows = {}
    for name, side in sides.items():
        rate = len(paths) / side["seconds"]
        ceiling = rates[name] * 1e9 / flops
        image_cos, class_cos, top1, passes = agreement(
            side["embeddings"], side["class_weights"], ref["embeddings"], ref["class_weights"],
            side["probabilities"].argmax(1) == ref["probabilities"].argmax(1))
        change = np.abs(side["embeddings"].astype(np.float64) @ side["class_weights"].T.astype(np.float64)
                        - ref_cosines)
        rows[name] = {
            "seconds": side["seconds"], "label_encoding_seconds": side["build"], "images_per_s": rate,
            "vs_pipeline": rate / pipe_rate, "linear_gflops": rates[name], "ceiling_images_per_s": ceiling,
            "fraction_of_ceiling": rate / ceiling, "min_image_cosine": float(image_cos.min()),
            "mean_image_cosine": float(image_cos.mean()), "min_class_cosine": float(class_cos.min()),
            "top1_agreement": top1, "max_abs_probability_difference": float(
                np.abs(side["probabilities"] - ref["probabilities"]).max()),
            "median_abs_cosine_change": float(np.median(change)),
            "max_abs_cosine_change": float(change.max()),
            "passes_bar": passes,
        }
    result = {
        "images": len(paths), "pipeline_images": subset, "classes": len(labels), "template": TEMPLATE,
        "model": "random CLIP, ViT-B/32 size (save_random_clip(..., 'vit-b-32'))",
        "cpu": lscpu_model(), "cpu_key": cpu_key(), "bf16_native": bf16_supported(),
        "batch_size": args.batch_size, "workers": args.workers, "rounds": args.rounds,
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
        "load_average_before": load_before, "load_average_after": os.getloadavg()[0],
        "image_tower_gflops_per_image": flops / 1e9,
        "flop_count": "2 x multiply-accumulates of the 224x224 image tower (patch embedding, attention, MLP)",
        "square_matmul_gflops": square, "linear_gflops_before": rates_before,
        "linear_gflops_after": rates_after,
        "pipeline_seconds": pipe["seconds"], "pipeline_images_per_s": pipe_rate,
        "pipeline_vs_fp32_max_abs_probability_difference": float(
            np.abs(ref["probabilities"][:subset] - pipe["probabilities"]).max()),
        "fp32_top1_margin_median": float(np.median(margins)), "fp32_top1_margin_min": float(margins.min()),
        "dtypes": rows, "auto": auto, "bar": {"min_cosine": MIN_COSINE, "min_top1_agreement": MIN_TOP1},
    }
    table = Table(title=f"{len(paths)} photos into {len(labels)} classes, ViT-B/32-size random CLIP, "
                        f"{result['cpu']}")
    for column in ("", "images", "seconds", "images/s", "vs pipeline", "ceiling img/s", "% of ceiling",
                   "min cos", "top-1 agree", "bar"):
        table.add_column(column, justify="right" if column else "left")
    table.add_row("transformers pipeline (fp32)", str(subset), f"{pipe['seconds']:.1f}", f"{pipe_rate:.2f}",
                  "1.0x", "", "", "", "", "")
    for name, row in rows.items():
        table.add_row(f"zeroshot {name}" + (" (auto)" if name == auto["dtype"] else ""), str(len(paths)),
                      f"{row['seconds']:.1f}", f"{row['images_per_s']:.2f}", f"{row['vs_pipeline']:.1f}x",
                      f"{row['ceiling_images_per_s']:.1f}", f"{100 * row['fraction_of_ceiling']:.0f}%",
                      f"{min(row['min_image_cosine'], row['min_class_cosine']):.5f}",
                      f"{100 * row['top1_agreement']:.1f}%", "pass" if row["passes_bar"] else "fail")
    console.print(table)
    console.print(f"FLOPs per image: {flops / 1e9:.2f} G (2 x {flops / 2e9:.2f} G multiply-accumulates). "
                  "nn.Linear GFLOP/s on ViT-B/32 shapes: "
                  + ", ".join(f"{n} {r:.1f}" for n, r in rates.items())
                  + "; square matmuls: " + ", ".join(f"{k} {v:.1f}" for k, v in square.items())
                  + f". Threads {torch.get_num_threads()}. auto picked {auto['dtype']}.")
    console.print(f"fp32's top-1 margin (best - second class cosine): median {np.median(margins):.2e}; "
                  "a dtype's image-class cosine change: " + ", ".join(
                      f"{n} median {r['median_abs_cosine_change']:.1e} max {r['max_abs_cosine_change']:.1e}"
                      for n, r in rows.items() if n != "fp32"))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
