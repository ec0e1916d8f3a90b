"""Everything the README tour reads, written into one folder: `zeroshot samples DIR`.

    written = write_samples("demo")   # demo/my_task.jsonl and the sample images

- `my_task.jsonl`: a small sentiment task in zeroshot's JSONL task format (`zeroshot.eval.tasks`): a
  config line (description, prompt, the two labels), 8 demonstrations (`"split": "train"`) and 24
  reviews to classify. Written for zeroshot; a template for your own task.
- the sample images of `zeroshot.vision.samples` (photos, query, class folders, scenes, example):
  real photos, public domain or CC0.

It lives in `eval/` because the task file is an evaluation task and this wing may import `vision/`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from zeroshot.errors import UserError
from zeroshot.files import make_output_dir
from zeroshot.vision.samples import SAMPLE_IMAGE_NAMES, SampleImages, check_free, write_sample_images

TASK_SOURCE = Path(__file__).with_name("tasks") / "reviews.jsonl"
TASK_NAME = "my_task.jsonl"
SAMPLE_NAMES = (TASK_NAME, *SAMPLE_IMAGE_NAMES)


@dataclass(frozen=True)
class Samples:
    """What `write_samples` wrote: the task file and the images."""

    task: Path
    images: SampleImages

    @property
    def files(self) -> int:
        return self.images.files + 1

    @property
    def bytes(self) -> int:
        return self.images.bytes + self.task.stat().st_size

    def to_dict(self) -> dict:
        return {**self.images.to_dict(), "task": str(self.task), "files": self.files, "bytes": self.bytes}


def write_samples(folder: str | os.PathLike, overwrite: bool = False, seed: int = 0) -> Samples:
    """Write the tour's task file and sample images into `folder` (made if missing).

    Refuses (`UserError`, before writing anything) when any of `SAMPLE_NAMES` is already there, unless
    `overwrite`; files of other names are never touched.
    """
    folder = make_output_dir(folder, "samples folder")
    check_free(folder, SAMPLE_NAMES, overwrite)
    if not TASK_SOURCE.is_file():
        raise UserError(f"the sample task {TASK_SOURCE} is missing from this installation of zeroshot: "
                        "reinstall it with its package data (pip install --force-reinstall zeroshot)")
    images = write_sample_images(folder, seed=seed, overwrite=True)  # checked above, with the task
    task = folder / TASK_NAME
    task.write_bytes(TASK_SOURCE.read_bytes())
    return Samples(task, images)
