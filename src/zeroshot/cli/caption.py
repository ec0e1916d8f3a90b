"""`zeroshot train-captioner` and `zeroshot caption`: a prefix captioner (ClipCap) on a frozen encoder + LM.

Thin: parse, call `zeroshot.caption.data`, print.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from zeroshot.cli import app, options


@app.command("train-captioner")
def train_captioner_command(
    data: Path = typer.Argument(
        ...,
        help='Captions .jsonl/.csv naming images ({"image", "caption"}, paths '
        'relative to the file), or a .jsonl/.csv of {"text", "caption"}.',
    ),
    output_dir: Path = options.output_dir("train-captioner"),
    encoder: str = options.encoder(),
    clip_model: str = options.clip_model(),
    text_encoder: str = options.text_encoder(),
    model: str = options.lm_model(),
    mapper: str = typer.Option("mlp", "--mapper", help="mlp or transformer."),
    prefix_length: int = typer.Option(10, "--prefix-length", help="LM input vectors the mapper makes."),
    layers: int = typer.Option(2, "--layers", help="Transformer mapper layers."),
    epochs: int = options.epochs(),
    batch_size: int = options.batch_size(),
    lr: float = options.lr(),
    seed: int = options.seed(),
    device: str = options.device(),
    resume: bool = options.resume(),
    quiet: bool = options.quiet(),
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
    captioner: Path = options.captioner("caption"),
    texts_file: Path = options.texts_file(),
    embeddings: Path = typer.Option(
        None, "--embeddings", help="A .npy of embeddings (n, d) instead of inputs."
    ),
    model: str = options.lm_model(),
    clip_model: str = options.clip_model(),
    text_encoder: str = options.text_encoder(),
    max_tokens: int = options.max_tokens("caption"),
    num_beams: int = options.num_beams(),
    temperature: float = options.temperature(),
    top_p: float = options.top_p(),
    top_k: int = options.top_k(),
    repetition_penalty: float = options.repetition_penalty(),
    seed: int = options.seed("caption"),
    device: str = options.device(),
    output_format: str = options.output_format(),
    output: Path = options.output_file(),
) -> None:
    """Caption images or texts with a trained prefix captioner."""
    import numpy as np

    from zeroshot.caption.data import CaptionService
    from zeroshot.errors import UserError
    from zeroshot.models.lm import GenerationConfig

    config = GenerationConfig(
        max_new_tokens=max_tokens,
        num_beams=num_beams,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        repetition_penalty=repetition_penalty,
        seed=seed,
    )
    config.check()
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
