"""`zeroshot index`, `zeroshot search`, `zeroshot similarity`: semantic image search from the command line.

Thin: parse, call `zeroshot.vision.search`, print. `index` exits 0 when the run completed (files that
could not be read are listed, and counted in the summary), 2 on a usage mistake or when every file failed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from zeroshot.cli import app, options

_STORE_HELP = "Vector store: faiss (embedded, default) or milvus."
_MILVUS_HELP = "Milvus server URI (default: Milvus Lite in DB/milvus.db). Only with --store milvus."
_FORMATS = ("table", "json", "html")


@app.command("index")
def index(
    paths: list[str] = typer.Argument(..., help="Image files, folders (searched recursively) or globs."),
    db: Path = typer.Option(..., "--db", help="Index folder (created if new)."),
    clip_model: str = options.clip_model(),
    store: str = typer.Option("faiss", "--store", help=_STORE_HELP),
    milvus_uri: str = typer.Option(None, "--milvus-uri", help=_MILVUS_HELP),
    batch_size: int = typer.Option(32, "--batch-size", "-b", help="Images per model call (and per commit)."),
    workers: int = typer.Option(2, "--workers", help="Threads decoding images while the model runs."),
    device: str = typer.Option(None, "--device", help="cpu, cuda, ... (default: cuda if available)."),
    quiet: bool = options.quiet("No progress bar, no per-file failures."),
) -> None:
    """Index images for search; re-running only embeds new or changed files and drops deleted ones."""
    from zeroshot.errors import UserError
    from zeroshot.models.clip import DEFAULT_CLIP, load_clip
    from zeroshot.vision.search import CATALOG_NAME

    if batch_size < 1 or workers < 1:
        raise UserError("--batch-size and --workers must be at least 1")
    recorded = None
    if (db / CATALOG_NAME).exists():  # an existing index: default to its model, and check it first
        with _open(db, store, milvus_uri, create=False, progress=False) as existing:
            recorded = existing.info.get("model_name")
    model = load_clip(clip_model or recorded or DEFAULT_CLIP, device=device)
    with _open(db, store, milvus_uri, create=True, progress=not quiet) as image_index:
        image_index.use_model(model)
        image_index.batch_size, image_index.num_workers = batch_size, workers
        report = image_index.add(paths)
        total = len(image_index)
    if not quiet:
        for path, reason in report.failed[:50]:
            print(f"skipped {path}: {reason.removeprefix(path + ': ')}", file=sys.stderr)
        if len(report.failed) > 50:
            print(f"... and {len(report.failed) - 50} more failures", file=sys.stderr)
    print(f"{report.summary()}; {total} images in {db}")
    attempted = len(report.added) + len(report.updated) + len(report.skipped) + len(report.failed)
    if attempted == 0 and not report.removed:  # as `classify-images` says for the same folder
        raise UserError("no image files found in " + ", ".join(paths))
    if report.failed and len(report.failed) == attempted:
        raise UserError(f"none of the {attempted} files could be indexed")


@app.command("search")
def search(
    text: str = typer.Argument(None, help="What to look for, in words."),
    db: Path = typer.Option(..., "--db", help="Index folder made by `zeroshot index`."),
    image: Path = typer.Option(None, "--image", help="Search by this example image instead of text."),
    k: int = typer.Option(10, "-k", "--top-k", help="How many results."),
    min_score: float = typer.Option(None, "--min-score", help="Drop results below this cosine similarity."),
    output_format: str = options.output_format("table", ("table", "json", "html")),
    output: Path = options.output_file("Write the results to this file."),
    clip_model: str = options.clip_model(),
    store: str = typer.Option("faiss", "--store", help=_STORE_HELP),
    milvus_uri: str = typer.Option(None, "--milvus-uri", help=_MILVUS_HELP),
    device: str = typer.Option(None, "--device", help="cpu, cuda, ... (default: cuda if available)."),
) -> None:
    """Find the indexed images closest to a text or to an example image."""
    from zeroshot.errors import UserError
    from zeroshot.models.clip import load_clip

    if (text is None) == (image is None):
        raise UserError("give a search text or --image (exactly one)")
    if output_format not in _FORMATS:
        raise UserError(f"unknown --format {output_format!r}: choose one of {', '.join(_FORMATS)}")
    if output_format == "html" and output is None:
        raise UserError("--format html needs --output FILE.html")
    if k < 1:
        raise UserError("-k must be at least 1")
    with _open(db, store, milvus_uri, create=False, progress=True) as image_index:
        if clip_model or device:
            recorded = image_index.info.get("model_name")
            image_index.use_model(load_clip(clip_model or recorded, device=device))
        hits = image_index.search(text=text, image=str(image) if image else None, k=k, min_score=min_score)
    query = text if text is not None else f"image: {image}"
    rendered = _render(hits, query, output_format)
    if output is None:
        print(rendered)
        return
    try:
        output.write_text(rendered, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {output}: {exc.strerror or exc}") from exc
    print(f"{len(hits)} results written to {output}")


@app.command("similarity")
def similarity(
    images: list[Path] = typer.Argument(..., help="Two or more images."),
    clip_model: str = options.clip_model(),
    device: str = typer.Option(None, "--device", help="cpu, cuda, ... (default: cuda if available)."),
) -> None:
    """Cosine similarity of images in CLIP space: one number for two images, a matrix for more."""
    from zeroshot.errors import UserError
    from zeroshot.models.clip import DEFAULT_CLIP, load_clip
    from zeroshot.vision.search import image_similarity

    if len(images) < 2:
        raise UserError("give at least two images to compare")
    model = load_clip(clip_model or DEFAULT_CLIP, device=device)
    matrix = image_similarity(model, [str(p) for p in images])
    if len(images) == 2:
        print(f"{matrix[0, 1]:.4f}")
        return
    width = max(len(p.name) for p in images)
    print(" " * width + "  " + "  ".join(f"{p.name[:8]:>8}" for p in images))
    for path, row in zip(images, matrix, strict=True):
        print(f"{path.name:<{width}}  " + "  ".join(f"{value:8.4f}" for value in row))


def _open(db: Path, store: str, milvus_uri: str | None, create: bool, progress: bool):
    from zeroshot.errors import UserError
    from zeroshot.vision.search import ImageIndex

    if milvus_uri and store != "milvus":
        raise UserError("--milvus-uri needs --store milvus")
    options = {"uri": milvus_uri} if milvus_uri else {}
    return ImageIndex(db, store=store, store_options=options, create=create, progress=progress)


def _render(hits, query: str, output_format: str) -> str:
    import json

    if output_format == "json":
        return json.dumps({"query": query, "results": [hit.to_dict() for hit in hits]}, indent=2)
    if output_format == "html":
        from zeroshot.vision.contact_sheet import render_contact_sheet

        return render_contact_sheet(hits, query)
    if not hits:
        return "no results"
    lines = [f"{'rank':>4}  {'score':>6}  path"]
    for rank, hit in enumerate(hits, 1):
        more = f"  (+{len(hit.duplicates)} identical)" if hit.duplicates else ""
        lines.append(f"{rank:>4}  {hit.score:6.3f}  {hit.path}{more}")
    return "\n".join(lines)
