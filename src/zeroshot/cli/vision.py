"""`zeroshot classify-images`: zero-shot image classification from the command line.

Thin: parse, call `zeroshot.vision.classify`, print. Exit code 0 when at least one image was
classified (unreadable files are reported per file and in the output's `error` column); 2 when none
was, or on a usage mistake.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from zeroshot.cli import app, options

_SHOWN_WITH_OUTPUT = 20  # with --output, the terminal table shows only the first rows


@app.command("classify-images")
def classify_images(
    paths: list[str] = typer.Argument(..., help="Image files, folders (searched recursively) or globs."),
    labels: str = options.labels_option(),
    labels_file: Path = options.labels_file(),
    templates: str = options.templates(),
    clip_model: str = options.clip_model(),
    top_k: int = options.top_k("classify-images"),
    batch_size: int = options.batch_size(),
    workers: int = options.workers(),
    device: str = options.device(),
    dtype: str = options.dtype(),
    output: Path = options.output_file(),
    no_cache: bool = options.no_cache(),
    quiet: bool = options.quiet(),
    output_format: str = options.output_format(),
) -> None:
    """Classify images into classes given only by name (CLIP zero-shot, prompt-ensembled); --output
    writes every row to a .csv or .jsonl file, --quiet drops the progress bar and the table."""
    from rich.console import Console
    from rich.text import Text

    from zeroshot.errors import UserError
    from zeroshot.models.clip import DEFAULT_CLIP, load_clip
    from zeroshot.vision.classify import ZeroShotImageClassifier, classification_to_dict
    from zeroshot.vision.images import expand_paths
    from zeroshot.vision.results import ResultWriter, check_output_path, read_labels, results_table

    if top_k < 1 or batch_size < 1 or workers < 1:
        raise UserError("--top-k, --batch-size and --workers must be at least 1")
    if output is not None:
        check_output_path(output)  # before the work, not after it
    label_list = read_labels(labels, labels_file)
    files = expand_paths(paths)
    if not files:
        raise UserError("no image files found in " + ", ".join(paths))
    model = load_clip(clip_model or DEFAULT_CLIP, device=device, dtype=dtype)
    classifier = ZeroShotImageClassifier(model, label_list, templates, batch_size=batch_size,
                                         num_workers=workers, cache_dir=False if no_cache else None,
                                         progress=not quiet)
    err = Console(stderr=True)
    if output_format == "json":  # the same document the server's /v1/classify/image returns
        predictions = list(classifier.iter_predictions([str(f) for f in files]))
        print(json.dumps(classification_to_dict(label_list, predictions, top_k), indent=2))
        if all(p.error is not None for p in predictions):
            raise UserError(f"no image could be classified ({len(predictions)} unreadable)")
        return
    writer = ResultWriter(output, top_k) if output is not None else None
    rows, classified, failed = [], 0, 0
    try:
        for prediction in classifier.iter_predictions([str(f) for f in files]):
            best = classifier.top_k_of(prediction.probabilities, top_k) if prediction.error is None else []
            if prediction.error is None:
                classified += 1
            else:
                failed += 1
                err.print(Text.assemble(("skipped ", "yellow"), prediction.error), highlight=False)
            if writer is not None:
                writer.write(prediction.source, best, prediction.error)
            if writer is None or len(rows) < _SHOWN_WITH_OUTPUT:
                rows.append((prediction.source, best, prediction.error))
    except BaseException:
        if writer is not None:
            writer.abort()
            err.print(f"stopped: the rows so far are in {writer.partial}", highlight=False)
        raise
    if writer is not None:
        writer.close()
    if not quiet:
        Console().print(results_table(rows, top_k))
    summary = f"{classified} classified, {failed} skipped" + (f"; results in {output}" if output else "")
    if writer is not None and classified + failed > len(rows):
        summary += f" (table shows the first {len(rows)})"
    err.print(summary, highlight=False)
    if classified == 0:
        raise UserError(f"no image could be classified ({failed} unreadable; reasons above)")
