"""bf16 and int8 against fp32 on a CLIP trained here: the agreement the random ViT-B/32 cannot show.

    python -m bench.fashion_mnist_setup
    zeroshot train-clip .cache/fashion-mnist/train-1000-seed0 --output-dir .cache/fashion-mnist/lit-model \
        --epochs 8
    python -m bench.dtype_trained_clip [--model .cache/fashion-mnist/lit-model] [--limit N] [--rounds 5]

No CLIP weights exist in any registry this machine reaches, and a random-weight CLIP's classes are
near-ties (`bench/clip_classify.py`: median top-1 margin 2e-3), so bf16's rounding flips answers there
that a trained model would not. This bench takes the LiT model `zeroshot train-clip` trains on
Fashion-MNIST (issue 19: a small ViT image tower trained here, the real all-MiniLM-L6-v2 text tower) and
classifies the 10,000 Fashion-MNIST test images among the 10 class names with the training caption's
template, in each dtype, timed in alternating slices (--rounds) as the other dtype benches are.

Agreement with fp32, with the `--dtype auto` bar (cosine >= 0.999, top-1 >= 99 %): the smallest cosine
between an image's embedding in the dtype and in fp32 (and over the 10 class embeddings), the share of
images whose top-1 class is fp32's, the accuracy against the true labels, and fp32's top-1 margins. Also
what `auto`'s quick probe picks for this model on this CPU (measured now, in a fresh cache). Writes
bench/results/dtype_trained_clip.json.
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
DATA = HERE.parent / ".cache" / "fashion-mnist"
TEMPLATE = "a photo of a {}."  # the caption the model was trained with


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DATA / "lit-model")
    parser.add_argument("--data", type=Path, default=DATA, help="the folder fashion_mnist_setup.py wrote")
    parser.add_argument("--limit", type=int, default=None, help="every (10000 / N)-th test image only")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dtypes", default="fp32,bf16,int8", help="comma-separated; fp32 is always run")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "dtype_trained_clip.json")
    args = parser.parse_args()

    from bench.common import agreement, auto_choice, auto_summary, load_test_set, lscpu_model
    from rich.console import Console
    from rich.table import Table
    from tqdm.auto import tqdm

    from zeroshot.models.clip import load_clip
    from zeroshot.models.dtype import MIN_COSINE, MIN_TOP1, bf16_supported, cpu_key
    from zeroshot.vision.classify import text_classifier
    from zeroshot.vision.embed import embed_images

    console = Console()
    if not (args.model / "config.json").exists():
        raise SystemExit(f"error: no trained model in {args.model}; "
                         "run the two commands in this file's docstring")
    info = json.loads((args.data / "classes.json").read_text())
    classes = info["classes"]
    paths, labels = load_test_set(Path(info["test"]), classes)
    if args.limit:
        keep = np.linspace(0, len(paths) - 1, min(args.limit, len(paths))).astype(int)
        paths, labels = [paths[i] for i in keep], labels[keep]
    load_before = os.getloadavg()[0]
    auto = auto_choice(lambda: load_clip(args.model, device="cpu", dtype="auto"))
    console.print(auto_summary(auto))

    dtypes = ["fp32"] + [d for d in args.dtypes.split(",") if d and d != "fp32"]
    sides = {}
    for name in dtypes:
        model = load_clip(args.model, device="cpu", dtype=name)
        start = time.perf_counter()
        weights = text_classifier(model, classes, [TEMPLATE], cache_dir=False)
        sides[name] = {"model": model, "class_weights": weights, "seconds": time.perf_counter() - start,
                       "embeddings": []}
    for part in tqdm(np.array_split(np.arange(len(paths)), args.rounds), desc="rounds"):
        for side in sides.values():
            start = time.perf_counter()
            indices, embeddings, failures = embed_images(side["model"], [str(paths[i]) for i in part],
                                                         batch_size=args.batch_size, progress=False)
            side["seconds"] += time.perf_counter() - start
            assert not failures and len(indices) == len(part)
            side["embeddings"].append(embeddings)

    ref = sides["fp32"]
    ref["embeddings"] = np.concatenate(ref["embeddings"]).astype(np.float64)
    ref_scores = ref["embeddings"] @ ref["class_weights"].T.astype(np.float64)
    top2 = np.sort(ref_scores, axis=1)[:, -2:]
    margins = top2[:, 1] - top2[:, 0]
    rows = {}
    for name, side in sides.items():
        embeddings = side["embeddings"]
        if name != "fp32":
            embeddings = np.concatenate(embeddings).astype(np.float64)
        weights = side["class_weights"].astype(np.float64)
        scores = embeddings @ weights.T
        image_cos, class_cos, top1, passes = agreement(
            embeddings, weights, ref["embeddings"], ref["class_weights"],
            scores.argmax(1) == ref_scores.argmax(1))
        rows[name] = {
            "seconds": side["seconds"], "images_per_s": len(paths) / side["seconds"],
            "min_image_cosine": float(image_cos.min()), "mean_image_cosine": float(image_cos.mean()),
            "min_class_cosine": float(class_cos.min()), "top1_agreement": top1,
            "accuracy": float(np.mean(np.asarray(classes)[scores.argmax(1)] == labels)),
            "median_abs_score_change": float(np.median(np.abs(scores - ref_scores))),
            "passes_bar": passes,
        }
    for row in rows.values():
        row["speed_vs_fp32"] = row["images_per_s"] / rows["fp32"]["images_per_s"]
    training = json.loads((args.model / "training.json").read_text())
    result = {
        "model": str(args.model), "parameters": training.get("parameters"),
        "model_kind": f"LiT ({training.get('mode')}), trained here on Fashion-MNIST",
        "images": len(paths), "classes": classes, "template": TEMPLATE,
        "cpu": lscpu_model(), "cpu_key": cpu_key(), "bf16_native": bf16_supported(),
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "rounds": args.rounds,
        "load_average_before": load_before, "load_average_after": os.getloadavg()[0],
        "fp32_top1_margin_median": float(np.median(margins)),
        "fp32_top1_margin_p01": float(np.quantile(margins, 0.01)),
        "dtypes": rows, "auto": auto, "bar": {"min_cosine": MIN_COSINE, "min_top1_agreement": MIN_TOP1},
    }
    table = Table(title=f"{len(paths)} Fashion-MNIST test images into 10 classes, LiT CLIP trained here, "
                        f"{result['cpu']}")
    for column in ("", "images/s", "vs fp32", "min cos", "top-1 agree", "accuracy", "bar"):
        table.add_column(column, justify="right" if column else "left")
    for name, row in rows.items():
        table.add_row(name + (" (auto)" if name == auto["dtype"] else ""), f"{row['images_per_s']:.0f}",
                      f"{row['speed_vs_fp32']:.2f}x",
                      f"{min(row['min_image_cosine'], row['min_class_cosine']):.5f}",
                      f"{100 * row['top1_agreement']:.2f}%", f"{100 * row['accuracy']:.2f}%",
                      "pass" if row["passes_bar"] else "fail")
    console.print(table)
    console.print(f"fp32 top-1 margin: median {result['fp32_top1_margin_median']:.4f}, 1st percentile "
                  f"{result['fp32_top1_margin_p01']:.5f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    console.print(f"written to {args.output}")


if __name__ == "__main__":
    main()
