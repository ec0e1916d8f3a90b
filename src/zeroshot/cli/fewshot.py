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
    shots: str = typer.Option("0,1,2,4,8,16", help="Comma-separated shots per class."),
    seeds: int = typer.Option(10, help="Support sets drawn per shot count (seeds 0..N-1)."),
    methods: str = typer.Option(
        "zeroshot,linear,kernel,tip", help="Comma-separated: zeroshot, linear, kernel, tip."
    ),
    encoder: str = typer.Option(
        None, help="Text encoder: minilm (default), a sentence-transformers folder or id, or lm:MODEL[@last]."
    ),
    output_dir: Path = options.output_dir("fewshot-curve", "Folder for the JSON results and the PNG plot."),
    test_fraction: float = typer.Option(
        0.5, help="Share of each class held out as the fixed test split."),
    split_seed: int = typer.Option(0, help="Seed of the test split."),
    limit: int = typer.Option(
        None, min=1, help="Use a stratified subset of N examples, every class in proportion (quick runs)."
    ),
) -> None:
    """Plot test accuracy against labelled examples per class, mean and spread over seeds."""
    from zeroshot.errors import UserError
    from zeroshot.fewshot.curve import format_table, run_curve, save_curve
    from zeroshot.fewshot.tasks import load_embedding_task
    from zeroshot.validation import split_ints, split_list

    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"--output-dir {output_dir}: is a file; give a folder for the JSON and the PNG plot")
    shot_counts = split_ints(shots, "--shots", minimum=0)
    method_list = split_list(methods, "--methods")
    loaded = load_embedding_task(task, encoder=encoder, limit=limit)
    result = run_curve(loaded, shot_counts, seeds, method_list, test_fraction, split_seed)
    stem = f"fewshot-curve-{Path(loaded.name).stem}"
    json_path, png_path = save_curve(result, output_dir, stem)
    typer.echo(
        f"{loaded.name} with {loaded.encoder}: {len(loaded.classes)} classes, "
        f"{result['n_pool']} pool / {result['n_test']} test examples, "
        f"seeds 0-{seeds - 1}, test split seed {split_seed}"
    )
    typer.echo(format_table(result))
    typer.echo(f"wrote {json_path} and {png_path}")
