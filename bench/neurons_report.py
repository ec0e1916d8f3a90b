"""The neuron explorer on the CLIP trained here (issue 30): dataset examples, feature visualisations and
words for the top units of the image tower's last layers, on the Fashion-MNIST test images.

    python bench/fashion_mnist_setup.py                       # image folders under .cache/fashion-mnist
    zeroshot train-clip .cache/fashion-mnist/train-1000-seed0 --output-dir .cache/fashion-mnist/lit-model \\
        --epochs 8 --threads 1
    python -m bench.neurons_report [--model .cache/fashion-mnist/lit-model] \\
        [--images .cache/fashion-mnist/test]

For each layer of `--layers` (default: the last two blocks' MLP units and the pooled feature), the
`--top-units` units of highest variance over the 10,000 test images (10 classes, labels from the folder
names) get their top and bottom 9 images, a feature visualisation, their best-aligned words among the 10
class names and bench/tasks/fashion-words.txt, and the multimodal test (the 10 class names rendered as
text). Measured:
- the share of units whose top 9 images share one concept: the majority label covers at least 7 of
  the 9 (the library's rule), against the same share with the labels shuffled (chance);
- how many units pass the multimodal test (the tower never saw rendered text: expect few or none);
- seconds per unit for the examples (one pass over the images, shared by every unit) and for the
  visualisations, with the load average and `lscpu`'s model name beside them;
- determinism: the visualisations of one layer made twice with the same seed (sha256 of the PNG), and
  once with another seed.
Writes bench/results/neurons-headline.json (the four headline numbers), neurons-details.json and the
report (HTML, JSON, PNG) in bench/results/neurons/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
CACHE = Path(".cache") / "fashion-mnist"  # relative: the report names images as the repository does
WORDS = HERE / "tasks" / "fashion-words.txt"


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _margin(test: dict) -> float:
    """How far the unit's best rendered name stays below (negative) or above its top-decile threshold."""
    return round(max(test["text_means"].values()) - test["threshold"], 4)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(CACHE / "lit-model"), help="CLIP folder (default: the "
                        "Fashion-MNIST CLIP that `zeroshot train-clip` writes)")
    parser.add_argument("--images", default=str(CACHE / "test"), help="image folder with class subfolders")
    parser.add_argument("--layers", default="layer-2.mlp,layer-1.mlp,pooled", help="comma-separated layers")
    parser.add_argument("--top-units", type=int, default=16, help="units per layer (highest variance)")
    parser.add_argument("-k", type=int, default=9, help="top and bottom images per unit")
    parser.add_argument("--vis-steps", type=int, default=256, help="feature visualisation steps")
    parser.add_argument("--words-file", default=str(WORDS), help="extra words besides the class names")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--output-dir", default=str(RESULTS), help="where the JSON files and neurons/ go")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from bench.common import lscpu_model

    from zeroshot.audit import neurons
    from zeroshot.files import make_output_dir
    from zeroshot.models.clip import load_clip

    if not Path(args.model, "config.json").is_file():
        sys.exit(f"error: no model in {args.model}: run bench/fashion_mnist_setup.py and "
                 "`zeroshot train-clip` first (see this file's docstring)")
    out = make_output_dir(args.output_dir)
    report_dir = make_output_dir(out / "neurons")
    words = neurons.read_words(args.words_file) if args.words_file else []
    config = neurons.NeuronsConfig(args.images, tuple(args.layers.split(",")), None, args.top_units, args.k,
                                   words=tuple(words), steps=args.vis_steps, seed=args.seed)
    load_before = _load()
    model = load_clip(args.model, device="cpu", dtype="fp32")
    started = time.perf_counter()
    result = neurons.run_neurons(model, config, progress=sys.stderr.isatty())
    total = time.perf_counter() - started
    load_after = _load()
    report = neurons.neurons_report(result, thumb=28)  # Fashion-MNIST's own size: small PNGs
    paths = report.write(report_dir, result.to_dict(), result.timing)

    # Determinism: the last layer's visualisations again, same seed, then another seed.
    tower = neurons.Tower(model)
    layer = result.layers[-1]
    units = [r["unit"] for r in result.units[layer]]
    written = hashlib.sha256(neurons.visualisation_png(result.visualisations[layer])).hexdigest()
    grey = result.visualisations[layer].grey
    again = neurons.visualise_units(model, tower, layer, units, config.tokens, config.steps, config.lr,
                                    config.seed, grey=grey)
    other = neurons.visualise_units(model, tower, layer, units, config.tokens, config.steps, config.lr,
                                    config.seed + 1, grey=grey)
    same = hashlib.sha256(neurons.visualisation_png(again)).hexdigest()
    different = hashlib.sha256(neurons.visualisation_png(other)).hexdigest()

    # Baselines for the concept share, from the same activation matrix: every unit of the layer, and 16
    # seeded random units (the explorer shows the units of highest variance).
    import numpy as np

    acts = result.activations
    rng = np.random.default_rng(args.seed)
    baselines = {}
    for name in result.layers:
        matrix = acts.values[name]
        share = [neurons.concept_of(acts.labels, np.argsort(-matrix[:, u], kind="stable")[:args.k],
                                    args.k)["one_concept"] for u in range(matrix.shape[1])]
        random_units = rng.choice(matrix.shape[1], size=min(args.top_units, matrix.shape[1]), replace=False)
        baselines[name] = {"all_units": len(share), "share_one_concept_all_units": float(np.mean(share)),
                           "random_units": sorted(int(u) for u in random_units),
                           "share_one_concept_random_units": float(np.mean([share[u] for u in random_units]))}

    # Which direction names a unit by its class: the share of units whose best word (among the whole
    # vocabulary) is the majority label of their top k images, for each way of finding the direction.
    vocabulary = result.vocabulary
    texts = neurons.embed_words(model, vocabulary, config.templates)
    naming = {}
    for name in result.layers:
        records = result.units[name]
        chosen = [r["unit"] for r in records]
        methods = ("projection", "covariance", "top") if name == "pooled" else ("covariance", "top")
        naming[name] = {}
        for method in methods:
            directions, _ = neurons.word_directions(acts, name, chosen, tower, method, args.k)
            best = [vocabulary[int(np.argmax(texts @ d))] for d in directions]
            naming[name][method] = sum(word == r["concept"]["majority"] for word, r in zip(best, records,
                                                                                          strict=True))

    summary = result.summary()
    timing = result.timing
    per_unit = timing["examples_seconds_per_unit"] + timing.get("visualisation_seconds_per_unit", 0.0)
    headline = {"units": summary["units"], "share_one_concept": round(summary["share_one_concept"], 4),
                "multimodal_units": summary["multimodal_units"], "seconds_per_unit": round(per_unit, 4)}
    per_layer = {}
    for name in result.layers:
        records = result.units[name]
        vis = [r.get("visualisation") for r in records]
        per_layer[name] = {
            "units": len(records),
            "share_one_concept": sum(r["concept"]["one_concept"] for r in records) / len(records),
            "multimodal_units": sum(bool(r["multimodal"]["concepts"]) for r in records),
            "visualisation_raised_activation": sum(v["end"] > v["start"] for v in vis if v),
            "majority_labels": dict(sorted(Counter(r["concept"]["majority"] for r in records).items())),
            **baselines[name],
            "best_word_is_top_majority_label": naming[name],
            "units_detail": [{"unit": r["unit"], "variance": round(r["variance"], 5),
                              "top_majority": r["concept"]["majority"], "top_count": r["concept"]["count"],
                              "words": [[w["word"], round(w["cosine"], 3)] for w in r["words"][:5]],
                              "multimodal_for": r["multimodal"]["concepts"],
                              "best_text_mean_over_threshold": _margin(r["multimodal"]),
                              "visualisation": [round(r["visualisation"]["start"], 4),
                                                round(r["visualisation"]["end"], 4)],
                              "top_image_activation": round(r["top"][0]["activation"], 4)}
                             for r in records]}
    details = {
        "model": args.model, "images": result.images, "classes": result.labels, "layers": result.layers,
        "k": result.k, "seed": args.seed, "vocabulary_size": len(result.vocabulary), "rules": result.rules,
        "summary": summary, "per_layer": per_layer,
        "timing": {**{key: round(value, 4) if isinstance(value, float) else value
                      for key, value in timing.items()},
                   "total_seconds": round(total, 2), "threads": args.threads},
        "machine": {"lscpu_model": lscpu_model(), "load_average_before": load_before,
                    "load_average_after": load_after,
                    "draft": max(load_before[0], load_after[0]) > 2,
                    "note": "a timing taken above load average 2 is a draft"},
        "determinism": {"layer": layer, "steps": config.steps, "sha256_report_png": written,
                        "sha256_same_seed_again": same, "sha256_other_seed": different,
                        "same_seed_identical": written == same, "other_seed_differs": written != different},
        "files": {key: str(Path(p).relative_to(ROOT)) if Path(p).is_relative_to(ROOT) else str(p)
                  for key, p in paths.items()},
    }
    (out / "neurons-headline.json").write_text(json.dumps(headline, indent=1) + "\n")
    (out / "neurons-details.json").write_text(json.dumps(details, indent=1) + "\n")
    print(json.dumps(headline))
    return {"headline": headline, "details": details}


if __name__ == "__main__":
    main()
