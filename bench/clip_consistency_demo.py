"""Optimise the pixels of a noise image towards a photo under `clip_consistency_loss` (DietNeRF's loss).

CLIP weights cannot be downloaded here, so the model is a random-weight CLIP in the real Hugging Face
format (`save_random_clip`, "tiny" by default); the code path is the one a real CLIP takes. Writes a
PNG of the loss curve with the photo, the start and the result.

    PYTHONPATH=src python bench/clip_consistency_demo.py --output loss.png --steps 60
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", "-o", type=Path, default=Path("clip-consistency-loss.png"))
    parser.add_argument("--clip-model", default=None, help="a CLIP folder (default: a random tiny one)")
    parser.add_argument("--photo", default="astronaut", help="a scikit-image sample photo, or an image file")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zeroshot.models.clip import load_clip
    from zeroshot.testing import save_random_clip
    from zeroshot.train.losses import clip_consistency_loss, image_features

    folder = args.clip_model or save_random_clip(Path(tempfile.mkdtemp()) / "clip", seed=args.seed)
    model = load_clip(folder, device="cpu")
    if Path(args.photo).is_file():
        photo = np.asarray(Image.open(args.photo).convert("RGB"))
    else:
        import skimage.data

        photo = np.asarray(Image.fromarray(getattr(skimage.data, args.photo)()).convert("RGB"))
    pixels = torch.from_numpy(photo.copy()).permute(2, 0, 1)[None].float() / 255
    target = image_features(model, pixels, round_to_8bit=True).detach()  # computed once, as DietNeRF does
    torch.manual_seed(args.seed)
    logits = torch.randn(1, 3, 224, 224, requires_grad=True)  # sigmoid keeps the pixels in [0, 1]
    start = torch.sigmoid(logits).detach().clone()
    optimiser = torch.optim.Adam([logits], lr=args.lr)
    losses, began = [], time.perf_counter()
    for _ in range(args.steps):
        loss = clip_consistency_loss(model, torch.sigmoid(logits), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - began
    with torch.no_grad():
        final = clip_consistency_loss(model, torch.sigmoid(logits), target).item()
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.4), gridspec_kw={"width_ratios": [2, 1, 1, 1]})
    axes[0].plot(range(1, len(losses) + 1), losses, marker=".")
    axes[0].set_xlabel("Adam step")
    axes[0].set_ylabel("1 - cos(CLIP(image), CLIP(photo))")
    axes[0].grid(alpha=0.3)
    axes[0].set_title(
        f"{losses[0]:.3f} -> {final:.4f} in {args.steps} steps ({seconds:.0f} s, CPU)", fontsize=9
    )
    for ax, image, title in (
        (axes[1], photo, "target photo"),
        (axes[2], start[0], "start: noise"),
        (axes[3], torch.sigmoid(logits).detach()[0], "after optimising"),
    ):
        ax.imshow(image if isinstance(image, np.ndarray) else image.permute(1, 2, 0).numpy())
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"clip_consistency_loss with a random-weight CLIP ({Path(str(folder)).name})", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.output, dpi=100)
    print(
        f"loss {losses[0]:.4f} -> {final:.4f} over {args.steps} steps in {seconds:.1f} s; wrote {args.output}"
    )


if __name__ == "__main__":
    main()
