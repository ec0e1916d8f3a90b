"""`zeroshot detect`: zero-shot object detection and dataset generation from the command line.

Thin: parse, call `zeroshot.detect.detector.ZeroShotDetector`, write. Per run, in `--output-dir`: one
JSON line per image (`detections.jsonl`, also printed), an annotated PNG per image and
`annotations.coco.json`.
Exit code 0 when at least one image was processed (unreadable files are reported and recorded with
their error); 2 when none was, or on a usage mistake.
"""

from __future__ import annotations

from pathlib import Path

import typer

from zeroshot.cli import app, options


@app.command("detect")
def detect(
    paths: list[str] = typer.Argument(..., help="Image files, folders (searched recursively) or globs."),
    queries: list[str] = typer.Option(None, "--query", help="What to find, in words (repeatable)."),
    examples: list[Path] = typer.Option(None, "--example", help="An image of what to find (repeatable)."),
    example_label: str = typer.Option("example", "--example-label", help="Label of the example images "
                                      "(the same as a --query: boxes must match both)."),
    example_mode: str = typer.Option("mean", "--example-mode", help="mean (of the examples) or nearest."),
    clip_model: str = options.clip_model(),
    threshold: float = options.threshold("detect"),
    example_threshold: float = typer.Option(0.8, "--example-threshold",
                                            help="Least cosine similarity to the examples."),
    proposals: int = typer.Option(200, "--proposals", "-n", help="Region proposals scored per image."),
    method: str = typer.Option("both", "--method", help="both, selective-search or windows."),
    search_mode: str = typer.Option("fast", "--search-mode", help="Selective search: fast or quality."),
    context_padding: float = typer.Option(0.0, "--context-padding", help="Re-score kept boxes with this "
                                          "much context around them (fraction of the box, e.g. 0.2)."),
    nms_iou: float = typer.Option(0.3, "--nms-iou", help="Overlap above which a weaker box is dropped."),
    templates: str = options.templates(),
    output_dir: Path = options.output_dir("detect"),
    batch_size: int = options.batch_size(),
    device: str = options.device(),
    dtype: str = options.dtype(),
    no_cache: bool = options.no_cache(),
    quiet: bool = options.quiet(),
) -> None:
    """Find objects named by --query or shown by --example, as boxes: JSONL, annotated PNGs and a COCO
    file in --output-dir (--batch-size crops per model call; --quiet: no JSON lines on stdout)."""
    import json

    from rich.console import Console
    from rich.text import Text

    from zeroshot.detect.dataset import COCO_NAME, JSONL_NAME, write_detection_dataset
    from zeroshot.detect.detector import ZeroShotDetector
    from zeroshot.detect.proposals import RegionProposer
    from zeroshot.errors import UserError
    from zeroshot.models.clip import DEFAULT_CLIP, load_clip

    if not queries and not examples:
        raise UserError("nothing to detect: give at least one --query or --example")
    proposer = RegionProposer(method=method, max_proposals=proposals, search_mode=search_mode)
    model = load_clip(clip_model or DEFAULT_CLIP, device=device, dtype=dtype)
    detector = ZeroShotDetector(model, queries or (), [str(e) for e in examples or ()],
                                example_label=example_label, example_mode=example_mode,
                                templates=templates, threshold=threshold, example_threshold=example_threshold,
                                proposer=proposer, nms_iou=nms_iou, context_padding=context_padding,
                                batch_size=batch_size, cache_dir=False if no_cache else None)
    err = Console(stderr=True)

    def show(record: dict) -> None:
        if "error" in record:
            err.print(Text.assemble(("skipped ", "yellow"), record["error"] or ""), highlight=False)
        if not quiet:
            print(json.dumps(record), flush=True)

    summary = write_detection_dataset(detector, paths, output_dir, progress=not quiet, on_record=show)
    err.print(f"{summary.images} images, {summary.detections} detections, {summary.skipped} skipped; results "
              f"in {output_dir}/ ({JSONL_NAME}, {COCO_NAME}, PNGs)", highlight=False)
    if summary.images == 0:
        raise UserError(f"no image could be processed ({summary.skipped} unreadable; reasons above)")
