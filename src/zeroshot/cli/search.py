"""`zeroshot index`, `zeroshot search`, `zeroshot similarity`: semantic image search from the command line.

Thin: parse, call `zeroshot.search.index`, print. `index` exits 0 when the run completed (files that
could not be read are listed, and counted in the summary), 2 on a usage mistake or when every file failed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from zeroshot.cli import app, options


@app.command("index")
def index(
    paths: list[str] = typer.Argument(..., help="Image files, folders (searched recursively) or globs."),
    db: Path = options.db("index"),
    clip_model: str = options.clip_model(),
    store: str = options.store(),
    milvus_uri: str = options.milvus_uri(),
    batch_size: int = options.batch_size(),
    workers: int = options.workers(),
    device: str = options.device(),
    dtype: str = options.dtype(),
    quiet: bool = options.quiet(),
    engine: str = typer.Option("local", "--engine", help="Where images are embedded: local (this process) "
                               "or ray (a Ray Data job; needs pip install 'zeroshot[ray]')."),
    ray_address: str = typer.Option(None, "--ray-address", help="Ray cluster: host:port, ray://host:port or "
                                    "auto (default: RAY_ADDRESS, else a Ray instance on this machine)."),
    ray_workers: int = typer.Option(None, "--ray-workers", help="Embedding actors on the Ray cluster "
                                    "(default: one per CPU). --workers is then decoding threads per actor."),
) -> None:
    """Index images for search into --db (created if new; --batch-size images per model call and per
    commit); re-running only embeds new or changed files and drops deleted ones."""
    from zeroshot.errors import UserError

    if batch_size < 1 or workers < 1:
        raise UserError("--batch-size and --workers must be at least 1")
    run = _engine(engine, ray_address, ray_workers, device)
    with _open(db, store, milvus_uri, create=True, progress=not quiet) as image_index:
        image_index.load_model(clip_model, device, dtype)
        image_index.batch_size, image_index.num_workers = batch_size, workers
        report = image_index.add(paths, engine=run)
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
    db: Path = options.db("search"),
    image: Path = typer.Option(None, "--image", help="Search by this example image instead of text."),
    k: int = options.top_k("search"),
    min_score: float = typer.Option(None, "--min-score", help="Drop results below this cosine similarity."),
    output_format: str = options.output_format("search"),
    output: Path = options.output_file(),
    clip_model: str = options.clip_model(),
    store: str = options.store(),
    milvus_uri: str = options.milvus_uri(),
    device: str = options.device(),
    dtype: str = options.dtype(),
) -> None:
    """Find the indexed images closest to a text or to an example image."""
    from zeroshot.errors import UserError

    if output_format == "html" and output is None:
        raise UserError("--format html needs --output FILE.html")
    with _open(db, store, milvus_uri, create=False, progress=True) as image_index:
        image_index.load_model(clip_model, device, dtype)
        results = image_index.query(text=text, image=str(image) if image else None, k=k, min_score=min_score)
    rendered = _render(results, output_format)
    if output is None:
        print(rendered)
        return
    try:
        output.write_text(rendered, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {output}: {exc.strerror or exc}") from exc
    print(f"{len(results.hits)} results written to {output}")


@app.command("similarity")
def similarity(
    images: list[Path] = typer.Argument(..., help="Two or more images."),
    clip_model: str = options.clip_model(),
    device: str = options.device(),
    dtype: str = options.dtype(),
) -> None:
    """Cosine similarity of images in CLIP space: one number for two images, a matrix for more."""
    from zeroshot.errors import UserError
    from zeroshot.models.clip import DEFAULT_CLIP, load_clip
    from zeroshot.search.index import image_similarity

    if len(images) < 2:
        raise UserError("give at least two images to compare")
    model = load_clip(clip_model or DEFAULT_CLIP, device=device, dtype=dtype)
    matrix = image_similarity(model, [str(p) for p in images])
    if len(images) == 2:
        print(f"{matrix[0, 1]:.4f}")
        return
    width = max(len(p.name) for p in images)
    print(" " * width + "  " + "  ".join(f"{p.name[:8]:>8}" for p in images))
    for path, row in zip(images, matrix, strict=True):
        print(f"{path.name:<{width}}  " + "  ".join(f"{value:8.4f}" for value in row))


def _engine(engine: str, address: str | None, workers: int | None, device: str | None):
    from zeroshot.errors import UserError

    if engine not in ("local", "ray"):
        raise UserError(f"--engine is local or ray, not {engine!r}")
    if engine == "local":
        if address is not None or workers is not None:
            raise UserError("--ray-address and --ray-workers need --engine ray")
        return None
    from zeroshot.search.ray_indexing import RayEngine

    if workers is not None and workers < 1:
        raise UserError("--ray-workers must be at least 1")
    engine = RayEngine(address=address, workers=workers, device=device)
    engine.connect()  # a cluster that does not answer: one line, before the index folder is touched
    return engine


def _open(db: Path, store: str, milvus_uri: str | None, create: bool, progress: bool):
    from zeroshot.errors import UserError
    from zeroshot.search.index import ImageIndex

    if milvus_uri and store != "milvus":
        raise UserError("--milvus-uri needs --store milvus")
    options = {"uri": milvus_uri} if milvus_uri else {}
    return ImageIndex(db, store=store, store_options=options, create=create, progress=progress)


def _render(results, output_format: str) -> str:
    import json

    hits = results.hits
    if output_format == "json":
        return json.dumps(results.to_dict(), indent=2)
    if output_format == "html":
        from zeroshot.search.contact_sheet import render_contact_sheet

        query = results.query.get("text") or f"image: {results.query.get('image')}"
        return render_contact_sheet(hits, query)
    if not hits:
        return "no results"
    lines = [f"{'rank':>4}  {'score':>6}  path"]
    for rank, hit in enumerate(hits, 1):
        more = f"  (+{len(hit.duplicates)} identical)" if hit.duplicates else ""
        lines.append(f"{rank:>4}  {hit.score:6.3f}  {hit.path}{more}")
    return "\n".join(lines)
