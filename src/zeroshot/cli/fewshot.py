"""`zeroshot fewshot-curve`: accuracy against shots for the zero-shot head, linear probe and adapters."""

from __future__ import annotations

from pathlib import Path

import typer

from zeroshot.cli import app, options


@app.command("fewshot-curve")
def fewshot_curve(
    task: str = typer.Argument(
        ..., help="bbc-news, or a task file: .jsonl {text,label}, .npz or .npy (see docs/fewshot.md)"
    ),
    shots: str = options.shots("fewshot-curve"),
    seeds: int = options.seeds("fewshot-curve"),
    methods: str = typer.Option(
        "zeroshot,linear,kernel,tip", help="Comma-separated: zeroshot, linear, kernel, tip."
    ),
    encoder: str = options.encoder(),
    output_dir: Path = options.output_dir("fewshot-curve"),
    test_fraction: float = typer.Option(
        0.5, help="Share of each class held out as the fixed test split."),
    split_seed: int = typer.Option(0, help="Seed of the test split."),
    limit: int = options.limit(),
    quiet: bool = options.quiet(),
) -> None:
    """Plot test accuracy against labelled examples per class (--shots), mean and spread over seeds
    0..N-1; writes the JSON and the PNG into --output-dir."""
    from zeroshot.errors import UserError
    from zeroshot.fewshot.curve import CurveConfig, format_table, run_curve, save_curve
    from zeroshot.fewshot.tasks import load_embedding_task

    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"--output-dir {output_dir}: is a file; give a folder for the JSON and the PNG plot")
    config = CurveConfig(shots, seeds, methods, test_fraction, split_seed)  # checked before the encoder runs
    loaded = load_embedding_task(task, encoder=encoder, limit=limit, progress=not quiet)
    result = run_curve(loaded, config, progress=not quiet)
    stem = f"fewshot-curve-{Path(loaded.name).stem}"
    json_path, png_path = save_curve(result, output_dir, stem)
    typer.echo(
        f"{loaded.name} with {loaded.encoder}: {len(loaded.classes)} classes, "
        f"{result['n_pool']} pool / {result['n_test']} test examples, "
        f"seeds 0-{seeds - 1}, test split seed {split_seed}"
    )
    typer.echo(format_table(result))
    typer.echo(f"wrote {json_path} and {png_path}")
