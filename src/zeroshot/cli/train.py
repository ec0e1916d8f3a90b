"""`zeroshot train-clip`: train CLIP (both towers) or LiT (frozen text tower) on your own image-text pairs.

Thin: parse, call `zeroshot.train.clip.train_clip`, print. The output folder loads wherever a
`--clip-model` is taken (classify-images, index/search, detect, serve).
"""

from __future__ import annotations

from pathlib import Path

import typer

from zeroshot.cli import app, options


@app.command("train-clip")
def train_clip_command(
    data: Path = typer.Argument(..., help="A captions file (.jsonl with image/caption, or .csv with "
                                          "image,caption columns; paths relative to it) or a folder of "
                                          "class folders."),
    output_dir: Path = options.output_dir("train-clip"),
    mode: str = typer.Option("lit", "--mode", help="lit (frozen pretrained text tower) or full "
                                                   "(both towers train)."),
    text_model: str = typer.Option(None, "--text-model", help="Sentence-transformers/BERT folder for the "
                                                              "text tower (default: all-MiniLM-L6-v2)."),
    templates: str = options.templates("train-clip"),
    image_size: int = typer.Option(28, "--image-size", help="Side of the square image the tower sees."),
    patch_size: int = typer.Option(7, "--patch-size", help="ViT patch side (divides --image-size)."),
    image_width: int = typer.Option(128, "--image-width", help="Image tower width (hidden size)."),
    image_layers: int = typer.Option(4, "--image-layers", help="Image tower transformer layers."),
    image_heads: int = typer.Option(4, "--image-heads", help="Image tower attention heads."),
    projection: str = typer.Option("linear", "--projection", help="linear (image tower -> text space) "
                                                                  "or none (widths must match)."),
    epochs: int = options.epochs(),
    batch_size: int = options.batch_size("train-clip"),
    lr: float = options.lr(),
    text_lr: float = typer.Option(None, "--text-lr", help="Full mode: the text tower's peak rate "
                                                          "(default: --lr / 100)."),
    dev_fraction: float = options.dev_fraction(),
    eval_every: int = typer.Option(0, "--eval-every", help="Steps between dev evaluations (0: each epoch)."),
    patience: int = options.patience(),
    checkpoint_every: int = typer.Option(50, "--checkpoint-every", help="Steps between checkpoints."),
    max_steps: int = typer.Option(None, "--max-steps", help="Stop after this many steps (quick runs)."),
    seed: int = options.seed(),
    threads: int = options.threads(),
    resume: bool = options.resume(),
    overwrite: bool = options.overwrite(),
    quiet: bool = options.quiet(),
) -> None:
    """Train CLIP or LiT on image-text pairs; the result works with every --clip-model option."""
    import json

    import torch

    from zeroshot.errors import UserError
    from zeroshot.train.clip import DEFAULT_TEMPLATES, TrainConfig, train_clip
    from zeroshot.vision.templates import get_templates

    if threads is not None:  # at least 1: the shared --threads option's range
        torch.set_num_threads(threads)
    if max_steps is not None and max_steps < 1:
        raise UserError("--max-steps must be at least 1")
    config = TrainConfig(mode=mode, text_model=text_model,
                         templates=tuple(get_templates(templates)) if templates else DEFAULT_TEMPLATES,
                         image_size=image_size, patch_size=patch_size, image_width=image_width,
                         image_layers=image_layers, image_heads=image_heads, projection=projection,
                         epochs=epochs, batch_size=batch_size, lr=lr, text_lr=text_lr,
                         dev_fraction=dev_fraction,
                         eval_every=eval_every, patience=patience, checkpoint_every=checkpoint_every,
                         max_steps=max_steps, seed=seed)
    result = train_clip(data, output_dir, config, resume=resume, overwrite=overwrite, progress=not quiet)
    summary = result.to_dict()
    print(json.dumps({k: summary[k] for k in ("out", "mode", "steps", "epochs_run", "best_dev_loss",
                                              "stopped_early", "seconds", "frozen", "parameters")}, indent=1))
