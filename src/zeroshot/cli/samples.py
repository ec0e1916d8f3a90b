"""`zeroshot samples DIR`: the files the README tour reads, written into DIR.

Thin: call `zeroshot.eval.samples.write_samples`, print what went where.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from zeroshot.cli import app, options


@app.command("samples")
def samples(
    folder: Path = typer.Argument(..., metavar="DIR", help="Folder to write the samples into (made if "
                                                           "missing); the tour uses the current one: ."),
    overwrite: bool = options.overwrite(),
    output_format: str = options.output_format(),
) -> None:
    """Write the tour's sample files into DIR: a JSONL task, real photos (public domain or CC0), a query
    image, class folders for train-clip, scenes and an example image for detect."""
    from zeroshot.eval.samples import write_samples

    written = write_samples(folder, overwrite=overwrite)
    if output_format == "json":
        print(json.dumps(written.to_dict(), indent=2))
        return
    shown = folder.as_posix().rstrip("/") + "/" if folder != Path(".") else ""
    for name, what in (("my_task.jsonl", "a sentiment task: demonstrations and reviews (eval-text)"),
                       ("photos/", "real photos (classify-images, index)"),
                       ("query.jpg", "a close-up of the cat (search --image)"),
                       ("photos-by-class/", "class folders of crops (train-clip)"),
                       ("shots/", "scenes: objects on textures (detect)"),
                       ("example.jpg", "the cat's face (detect --example)")):
        print(f"{shown}{name:<17} {what}")
    print(f"{written.files} files, {written.bytes / 1e6:.1f} MB")
