"""A model from `zeroshot train-clip`, reloaded in fresh processes, gives the logits it had in memory.

    python bench/train_clip_reload.py [--data .cache/fashion-mnist/train-1000-seed0] [--steps 30]

Trains a short LiT run (in this process) into a temporary folder and keeps the in-memory model
(`TrainResult.model`). Reference: its logits (logit_scale x cosine) for 8 dev-split images against the 8
class captions. Then, each in a fresh Python process started here, the saved folder goes through:
- the library: `load_clip(folder)` -> encode_images / encode_texts -> logits;
- `zeroshot classify-images --labels ... --templates "a photo of a {}." --output x.jsonl` -> probabilities,
  compared with the softmax of the reference logits;
- `zeroshot index` + `zeroshot search "a photo of a {class}." --format json` -> cosine scores, compared with
  reference logits / logit_scale;
- the HTTP server (the FastAPI app under `fastapi.testclient`) -> /v1/classify/image and /v1/search.
Reports the largest absolute difference of each (the server rounds its numbers to 6 decimals, so up to
5e-7 of it is rounding). Writes bench/results/train_clip_reload.json (or `--output`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / ".cache" / "fashion-mnist" / "train-1000-seed0"
TEMPLATE = "a photo of a {}."

SERVER_SNIPPET = r"""
import json, sys
from fastapi.testclient import TestClient
from zeroshot.server.app import create_app
from zeroshot.server.settings import ServerSettings
model, db, root = sys.argv[1:4]
labels, paths = json.loads(sys.argv[4]), json.loads(sys.argv[5])
settings = ServerSettings(clip_model=model, db=db, image_roots=[root])
# A loopback Host, as a real client of a local server sends: the server refuses test clients' default
# "testserver" Host (DNS-rebinding protection), and the bench must not weaken that.
with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
    classify = client.post("/v1/classify/image", json={"labels": labels, "templates": ["a photo of a {}."],
                                                      "paths": paths, "top_k": len(labels)})
    assert classify.status_code == 200, classify.text
    searches = {}
    for label in labels:
        found = client.post("/v1/search", json={"text": "a photo of a " + label + ".", "k": 200})
        assert found.status_code == 200, found.text
        searches[label] = found.json()["results"]
print(json.dumps({"classify": classify.json(), "search": searches}))
"""

LIBRARY_SNIPPET = r"""
import json, sys
import numpy as np
from zeroshot.models.clip import load_clip
from zeroshot.vision.embed import embed_images
model = load_clip(sys.argv[1], device="cpu")
paths, captions = json.loads(sys.argv[2]), json.loads(sys.argv[3])
_, images, _ = embed_images(model, paths, progress=False)
logits = model.logit_scale * images @ model.encode_texts(captions).T
print(json.dumps(logits.tolist()))
"""


def run(args: list[str], env: dict) -> str:
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--output", type=Path, default=HERE / "results" / "train_clip_reload.json",
                        help="the JSON to write")
    args = parser.parse_args()

    import torch

    from zeroshot.train.clip import TrainConfig, train_clip
    from zeroshot.vision.embed import embed_images

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="train-clip-reload-"))
    result = train_clip(args.data, work / "model", TrainConfig(max_steps=args.steps, eval_every=args.steps))
    memory = result.model
    classes = sorted(p.name.replace("_", " ") for p in args.data.iterdir() if p.is_dir())
    # One image of each class (the first file of each folder), copied under one root for the server.
    root = work / "images"
    root.mkdir()
    paths = []
    for name in classes:
        source = sorted((args.data / name.replace(" ", "_")).glob("*.png"))[0]
        target = root / f"{name.replace(' ', '_')}.png"
        target.write_bytes(source.read_bytes())
        paths.append(str(target))
    captions = [TEMPLATE.format(name) for name in classes]
    _, image_embeddings, _ = embed_images(memory, paths, progress=False)
    text_embeddings = memory.encode_texts(captions)
    scale = memory.logit_scale
    reference = scale * image_embeddings @ text_embeddings.T  # (images, captions)
    probabilities = np.exp(reference - reference.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    cosines = reference / scale

    env = dict(os.environ, ZEROSHOT_CACHE=str(work / "cache"), HF_HUB_OFFLINE="1")
    python, zeroshot = sys.executable, str(Path(sys.executable).with_name("zeroshot"))
    model_dir = str(work / "model")
    differences = {}

    library = np.asarray(json.loads(run([python, "-c", LIBRARY_SNIPPET, model_dir, json.dumps(paths),
                                         json.dumps(captions)], env)))
    differences["library load_clip: logits"] = float(np.abs(library - reference).max())

    output = work / "classified.jsonl"
    run([zeroshot, "classify-images", *paths, "--labels", ",".join(classes), "--templates", TEMPLATE,
         "--clip-model", model_dir, "--top-k", str(len(classes)), "--output", str(output), "--quiet",
         "--no-cache", "--device", "cpu"], env)
    rows = {json.loads(line)["path"]: json.loads(line) for line in output.read_text().splitlines()}
    cli = np.asarray([[next(t["probability"] for t in rows[p]["top_k"] if t["label"] == c) for c in classes]
                      for p in paths])
    differences["classify-images CLI: probabilities"] = float(np.abs(cli - probabilities).max())

    db = work / "index"
    run([zeroshot, "index", str(root), "--db", str(db), "--clip-model", model_dir, "--quiet",
         "--device", "cpu"], env)
    found = np.full_like(cosines, np.nan)
    for j, caption in enumerate(captions):
        hits = json.loads(run([zeroshot, "search", caption, "--db", str(db), "-k", str(len(paths)),
                               "--format", "json", "--device", "cpu"], env))["results"]
        for hit in hits:
            for path in (hit["path"], *hit["duplicates"]):
                found[paths.index(str(Path(path).resolve())), j] = hit["score"]
    differences["search CLI: cosine scores"] = float(np.nanmax(np.abs(found - cosines)))
    assert not np.isnan(found).any(), "search did not return every image"

    served = json.loads(run([python, "-c", SERVER_SNIPPET, model_dir, str(db), str(root), json.dumps(classes),
                             json.dumps(paths)], env))
    server_probabilities = np.asarray([[row["scores"][c] for c in classes]
                                       for row in served["classify"]["results"]])
    differences["server /v1/classify/image: probabilities (rounded to 6 decimals)"] = float(
        np.abs(server_probabilities - probabilities).max())
    server_cosines = np.full_like(cosines, np.nan)
    for j, name in enumerate(classes):
        for hit in served["search"][name]:
            server_cosines[paths.index(str(Path(hit["path"]).resolve())), j] = hit["score"]
    differences["server /v1/search: cosine scores (rounded to 6 decimals)"] = float(
        np.nanmax(np.abs(server_cosines - cosines)))

    report = {"what": "largest absolute difference against the in-memory model right after training",
              "steps": result.steps, "images": len(paths), "captions": captions,
              "logit_scale": scale, "differences": differences,
              "all_within_1e-6": all(d <= 1e-6 for d in differences.values())}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
