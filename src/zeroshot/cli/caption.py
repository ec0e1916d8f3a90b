"""`zeroshot train-captioner` and `zeroshot caption`: a prefix captioner (ClipCap) on a frozen encoder + LM.

Thin: parse, call `zeroshot.caption.data`, print.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from zeroshot.cli import app, options

_ENCODER_HELP = "clip-image (images), clip-text or sentence (texts; default for text files)."


@app.command("train-captioner")
def train_captioner_command(
    data: Path = typer.Argument(
        ...,
        help='Captions .jsonl/.csv naming images ({"image", "caption"}, paths '
        'relative to the file), or a .jsonl/.csv of {"text", "caption"}.',
    ),
    output_dir: Path = typer.Option(
        ...,
        "--output-dir",
        help="Folder for captioner.json, mapper.safetensors, loss.png and the per-epoch checkpoint.",
    ),
    encoder: str = typer.Option(
        None,
        "--encoder",
        help=_ENCODER_HELP + " Default: clip-image when --clip-model is given, else sentence.",
    ),
    clip_model: str = typer.Option(None, "--clip-model",
                                   help=options.CLIP_HELP + " For clip-image / clip-text."),
    text_encoder: str = typer.Option(
        None, "--text-encoder", help="sentence-transformers folder or id (default: all-MiniLM-L6-v2)."
    ),
    model: str = typer.Option(None, "--model", help=options.LM_HELP + " Frozen; de-quantised once."),
    mapper: str = typer.Option("mlp", "--mapper", help="mlp or transformer."),
    prefix_length: int = typer.Option(10, "--prefix-length", help="LM input vectors the mapper makes."),
    layers: int = typer.Option(2, "--layers", help="Transformer mapper layers."),
    epochs: int = typer.Option(5, "--epochs", help="Passes over the data."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", help="Pairs per step."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate (AdamW, warm-up then cosine)."),
    seed: int = typer.Option(0, "--seed", help="Seeds the mapper's initial weights and the batch order."),
    device: str = typer.Option(None, "--device", help="cpu, cuda ... (default: cuda if available)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the unfinished run in --output-dir."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train a mapping network from a frozen encoder's embedding to a frozen LM's prefix (ClipCap)."""
    from zeroshot.caption.captioner import CaptionerConfig
    from zeroshot.caption.data import CaptionerTraining, train_captioner

    kind = encoder or ("clip-image" if clip_model else "sentence")
    name = clip_model if kind.startswith("clip") else text_encoder
    config = CaptionerConfig(embedding_dim=1, prefix_length=prefix_length, mapper=mapper, layers=layers)
    config.check()
    result = train_captioner(
        data,
        output_dir,
        kind,
        name,
        model,
        config,
        CaptionerTraining(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed),
        resume=resume,
        progress=not quiet,
        device=device,
    )
    print(json.dumps(result.to_dict(), indent=1))


@app.command("caption")
def caption_command(
    inputs: list[str] = typer.Argument(None, help="Image files (clip-image captioners) or texts."),
    captioner: Path = typer.Option(..., "--captioner", "-c", help="Folder written by train-captioner."),
    texts_file: Path = typer.Option(None, "--texts-file", help="Texts to caption, one per line."),
    embeddings: Path = typer.Option(
        None, "--embeddings", help="A .npy of embeddings (n, d) instead of inputs."
    ),
    model: str = typer.Option(None, "--model",
                              help=options.LM_HELP + " Default: the one the captioner records."),
    clip_model: str = typer.Option(None, "--clip-model",
                                   help=options.CLIP_HELP + " Default: the one the captioner records."),
    text_encoder: str = typer.Option(
        None, "--text-encoder", help="The sentence encoder (default: recorded)."
    ),
    max_tokens: int = typer.Option(24, "--max-tokens", help="Most tokens per caption."),
    num_beams: int = typer.Option(1, "--num-beams", help="Beam search width (1: greedy)."),
    temperature: float = typer.Option(0.0, "--temperature", help="0: greedy or beam search; > 0 samples."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling mass."),
    top_k: int = typer.Option(0, "--top-k", help="Sample among the k likeliest tokens (0: all)."),
    repetition_penalty: float = typer.Option(1.0, "--repetition-penalty", help="1: none."),
    seed: int = typer.Option(None, "--seed", help="Seed for sampling."),
    device: str = typer.Option(None, "--device", help="cpu, cuda ... (default: cuda if available)."),
    output_format: str = typer.Option("text", "--format", help="text or json."),
    output: Path = typer.Option(None, "--output", "-o", help="Write the captions as JSON Lines."),
) -> None:
    """Caption images or texts with a trained prefix captioner."""
    import numpy as np

    from zeroshot.caption.data import CaptionService
    from zeroshot.errors import UserError
    from zeroshot.models.lm import GenerationConfig

    if output_format not in ("text", "json"):
        raise UserError(f"unknown --format {output_format!r}: choose text or json")
    config = GenerationConfig(
        max_new_tokens=max_tokens,
        num_beams=num_beams,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        repetition_penalty=repetition_penalty,
        seed=seed,
    )
    config.validate()
    items: list[str] = list(inputs or [])
    if texts_file is not None:
        try:
            items += [
                line.strip() for line in texts_file.read_text(encoding="utf-8").splitlines() if line.strip()
            ]
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read {texts_file}: {exc}") from None
    source = None
    if embeddings is not None:
        try:
            source = np.load(embeddings, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {embeddings} as a .npy array: {exc}") from None
    elif not items:
        raise UserError("nothing to caption: give images or texts, --texts-file or --embeddings")
    service = CaptionService(captioner, model=model, encoder_name=clip_model or text_encoder, device=device)
    results = service.caption(source if source is not None else items, config)
    rows = [r.to_dict() for r in results]
    if output is not None:
        output.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    if output_format == "json":
        print(json.dumps(rows, indent=1))
    else:
        for row in rows:
            print(f"{row['input']}\t{row['caption']}")
