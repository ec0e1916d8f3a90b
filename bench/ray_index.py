"""Indexing on Ray against indexing in one process, side by side in one run, on the same images.

    python -m bench.ray_index                       # 600 images, ViT-B/32-sized random CLIP
    python -m bench.ray_index --images 200 --size tiny

`--images` JPEGs (512 x 512 crops of scikit-image's sample photos, re-encoded, every file distinct) are
indexed into fresh indexes: `ImageIndex.add` in this process (batch 32, `--threads` decoding
threads, torch on every core), then `ImageIndex.add(engine=RayEngine(workers=--ray-workers))` on a local
Ray instance of `--cpus` CPUs (one CPU per actor, so torch runs one thread in each), then in this
process again; the local time is the mean of the two runs around Ray. Ray's start-up
(`ray.init`) is timed apart from the job; the job's time includes the actors loading the model, as a
real job's does. CPU seconds are counted too (this process, and for Ray also every process Ray
started): on a shared machine the wall-clock ratio favours the side running more threads. The two
catalogs are compared: same paths, same vector ids, vectors equal to `--atol`.

Also: images/s of the bare model on ONE core (`torch.set_num_threads(1)`, decoded images ready), the
per-worker figure the 100M-image plan in docs/search.md is built on. Results print and are written to
bench/results/ray_index.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "ray_index.json"


def make_photos(folder: Path, count: int, seed: int) -> list[Path]:
    from PIL import Image
    from skimage import data as samples

    photos = [samples.astronaut(), samples.coffee(), samples.chelsea(), samples.rocket(),
              samples.hubble_deep_field(), samples.immunohistochemistry(), samples.retina()]
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        photo = photos[i % len(photos)]
        side = min(photo.shape[0], photo.shape[1], 512)
        top, left = rng.integers(0, photo.shape[0] - side + 1), rng.integers(0, photo.shape[1] - side + 1)
        crop = np.array(photo[top:top + side, left:left + side, :3])
        crop[:16, :16] = (i % 256, i // 256, 255)  # every file distinct (a whole JPEG block differs)
        Image.fromarray(crop).save(folder / f"{i:05d}.jpg", quality=90)
    return sorted(folder.iterdir())


def catalog_contents(db: Path) -> tuple[dict[str, int], dict[int, np.ndarray]]:
    """(path -> vector id, vector id -> stored vector) of the index in `db`."""
    from zeroshot.search.stores.catalog import Catalog

    catalog = Catalog(db / "catalog.sqlite", create=False)
    try:
        files, vectors = catalog.contents()
    finally:
        catalog.close()
    if not vectors or not all(row.size for row in vectors.values()):
        raise SystemExit(f"{db}: no vectors read back; the comparison would be empty")
    return files, vectors


def one_core_rate(model, files: list[Path], count: int) -> float:
    """(images per wall second, per CPU second) of the model alone on one thread, images decoded."""
    import torch

    from zeroshot.vision.embed import prepare_image
    from zeroshot.vision.transforms import normalise_batch

    count = min(count, len(files))
    pixels = normalise_batch(np.stack([prepare_image(str(f), model.image_spec) for f in files[:count]]),
                             model.image_spec)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.encode_images(pixels[:8])  # warm-up
        start, cpu = time.perf_counter(), cpu_seconds()
        for first in range(0, count, 32):
            model.encode_images(pixels[first:first + 32])
        return count / (time.perf_counter() - start), count / (cpu_seconds() - cpu)
    finally:
        torch.set_num_threads(threads)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process, all threads."""
    return time.process_time()


class TreeCpu:
    """CPU seconds of this process and every process it started (Ray's GCS, raylet, workers), sampled
    every `every` s from a thread, so that a worker that exits before the end still counts (up to its
    last sample)."""

    def __init__(self, every: float = 0.25) -> None:
        import threading

        import psutil

        self.me = psutil.Process()
        self.seen: dict[int, float] = {}
        self.every = every
        self.base = self._sample()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _sample(self) -> float:
        import psutil

        for process in [self.me, *self.me.children(recursive=True)]:
            try:
                times = process.cpu_times()
            except psutil.Error:  # exited meanwhile
                continue
            self.seen[process.pid] = times.user + times.system
        return sum(self.seen.values())

    def _loop(self) -> None:
        while not self.stop.wait(self.every):
            self._sample()

    def total(self) -> float:
        self.stop.set()
        self.thread.join()
        return self._sample() - self.base


def decode_rate(model, files: list[Path], count: int) -> float:
    """Images/s of reading, decoding, resizing and cropping on one thread."""
    from zeroshot.vision.embed import prepare_image

    count = min(count, len(files))
    start = time.perf_counter()
    for f in files[:count]:
        prepare_image(str(f), model.image_spec)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--size", default="vit-b-32", help="Random CLIP size: vit-b-32 or tiny.")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="Decoding threads (per process or actor).")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance.")
    parser.add_argument("--ray-workers", type=int, default=2)
    parser.add_argument("--one-core-images", type=int, default=128)
    parser.add_argument("--atol", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    import ray
    from bench.common import lscpu_model

    from zeroshot.models.clip import load_clip
    from zeroshot.search.index import ImageIndex
    from zeroshot.search.ray_indexing import RayEngine
    from zeroshot.testing import save_random_clip

    result: dict = {"cpu": lscpu_model(), "cores": os.cpu_count(), "images": args.images, "model": args.size,
                    "batch_size": args.batch_size, "ray": ray.__version__,
                    "load_average_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = make_photos(tmp / "photos", args.images, args.seed)
        model = load_clip(save_random_clip(tmp / "clip", args.size), device="cpu")
        wall_rate, cpu_rate = one_core_rate(model, files, args.one_core_images)
        result["one_core_images_per_s"] = round(wall_rate, 2)
        result["one_core_images_per_cpu_s"] = round(cpu_rate, 2)  # what a core of its own would do
        result["one_core_decodes_per_s"] = round(decode_rate(model, files, args.one_core_images), 1)
        print(f"{args.size} on one thread: {result['one_core_images_per_s']} images/s, "
              f"{result['one_core_images_per_cpu_s']} per CPU second; decoding and resizing "
              f"512 x 512 JPEGs: {result['one_core_decodes_per_s']} images/s")

        local_runs = []

        local_cpu = []

        def run_local(name: str):
            index = ImageIndex(tmp / name, model, batch_size=args.batch_size, num_workers=args.threads)
            start, cpu = time.perf_counter(), cpu_seconds()
            report = index.add([tmp / "photos"])
            local_runs.append(round(time.perf_counter() - start, 2))
            local_cpu.append(round(cpu_seconds() - cpu, 1))
            index.close()
            print(f"local: {local_runs[-1]} s ({args.images / local_runs[-1]:.2f} images/s), "
                  f"{local_cpu[-1]} CPU s")
            return report

        local = run_local("local")

        start = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        result["ray_init_s"] = round(time.perf_counter() - start, 2)
        index = ImageIndex(tmp / "ray", model, batch_size=args.batch_size, num_workers=args.threads)
        start, cpu = time.perf_counter(), TreeCpu()
        on_ray = index.add([tmp / "photos"], engine=RayEngine(workers=args.ray_workers))
        result["ray_s"] = round(time.perf_counter() - start, 2)
        # Ray's processes outlive the job (until shutdown): their CPU time is all counted here.
        result["ray_cpu_s"] = round(cpu.total(), 1)
        index.close()
        ray.shutdown()
        print(f"ray: start-up {result['ray_init_s']} s, job {result['ray_s']} s "
              f"({args.images / result['ray_s']:.2f} images/s) with {args.ray_workers} workers, "
              f"{result['ray_cpu_s']} CPU s")

        run_local("local-again")  # before and after Ray: the load of a shared machine drifts
        result["local_runs_s"] = local_runs
        result["local_s"] = round(sum(local_runs) / len(local_runs), 2)
        result["local_cpu_runs_s"] = local_cpu
        result["local_cpu_s"] = round(sum(local_cpu) / len(local_cpu), 1)
        assert local.embedded == on_ray.embedded == args.images, (local.summary(), on_ray.summary())
        local_files, local_vectors = catalog_contents(tmp / "local")
        ray_files, ray_vectors = catalog_contents(tmp / "ray")
        diff = max(float(np.abs(ray_vectors[i] - v).max()) for i, v in local_vectors.items())
        result.update(same_paths_and_ids=local_files == ray_files, max_abs_diff=diff,
                      vectors_equal=diff <= args.atol)
    result["ratio_ray_over_local"] = round(result["ray_s"] / result["local_s"], 3)
    result["ratio_with_startup"] = round((result["ray_s"] + result["ray_init_s"]) / result["local_s"], 3)
    # On a shared machine wall time favours whoever runs more threads; CPU time is the honest overhead.
    result["cpu_ratio_ray_over_local"] = round(result["ray_cpu_s"] / result["local_cpu_s"], 3)
    result["load_average_end"] = os.getloadavg()[0]
    print(f"ratio ray/local {result['ratio_ray_over_local']} (with start-up {result['ratio_with_startup']}), "
          f"CPU time {result['cpu_ratio_ray_over_local']}; "
          f"same paths and ids: {result['same_paths_and_ids']}; max |diff| {diff:.2e}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
