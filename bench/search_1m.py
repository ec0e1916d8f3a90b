"""Image search at scale: 1,000,000 x 512 vectors through the embedded store, and real indexing speed.

    python -m bench.search_1m                  # the full run (about 10 minutes on 2 cores, 6 GB RAM)
    python -m bench.search_1m --n 200000 --images 50

Part 1, search. `--n` seeded random unit vectors of dimension `--dim`, and `--queries` random unit
queries. Ground truth: exact top-10 by inner product (FAISS brute force). Then, in this one run:
exact search one query at a time (the baseline), and the store `ImageIndex` builds for this size
(`FaissStore`: `PQ{d/2}x4fs,RFlat`, 4-bit fast-scan PQ re-ranked exactly) at several `--k-factors`
(candidates re-ranked = k_factor * 10), plus the store's default k_factor with FAISS's own thread count
instead of the store's single thread for single queries; optionally (`--hnsw`) FAISS HNSW, which the
index does not use because it cannot remove vectors. Latency is one query per call, as a user's search
is; p50/p99 over the queries; recall@10 against the exact answer. (The former IVF layout's rows are
gone from this script; its numbers are in docs/notes/issue-4.md.)

Random vectors are the hard case for any ANN index: they have no clusters, every point is nearly
equidistant from every other, so the table shows the honest trade-off rather than a best case. Real
CLIP embeddings cluster strongly; `--clustered` runs the same table on a Gaussian-mixture stand-in.

Part 2, indexing throughput: `--images` JPEGs cut from scikit-image's sample photos (512 x 512 and
larger, re-encoded), indexed with `ImageIndex.add` and a ViT-B/32-sized random-weight CLIP; the same
images embedded with `embed_images` alone, side by side, show what the index adds on top.
Results print as a table and are written to bench/results/search_1m.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

RESULTS = Path(__file__).parent / "results" / "search_1m.json"


def unit_vectors(count: int, dim: int, rng: np.random.Generator, chunk: int = 100_000) -> np.ndarray:
    out = np.empty((count, dim), dtype=np.float32)
    for start in range(0, count, chunk):
        part = rng.standard_normal((min(chunk, count - start), dim), dtype=np.float32)
        out[start:start + len(part)] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return out


def clustered_vectors(count: int, dim: int, rng: np.random.Generator, clusters: int = 2_000,
                      spread: float = 0.6) -> np.ndarray:
    centres = unit_vectors(clusters, dim, rng)
    out = np.empty((count, dim), dtype=np.float32)
    for start in range(0, count, 100_000):
        size = min(100_000, count - start)
        part = centres[rng.integers(0, clusters, size)] + spread * unit_vectors(size, dim, rng)
        out[start:start + size] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return out


def recall_at_10(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f[:10]) & set(e[:10])) / 10 for f, e in zip(found, exact, strict=True)]))


def time_queries(search, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run `search(q)` one query at a time; (ids (nq, 10), milliseconds per query)."""
    search(queries[:1])  # warm-up
    ids, times = [], []
    for query in queries:
        start = time.perf_counter()
        found = search(query[None])
        times.append((time.perf_counter() - start) * 1000)
        ids.append(found[0])
    return np.stack(ids), np.asarray(times)


def row(name: str, build_s: float | None, ids: np.ndarray, ms: np.ndarray, exact: np.ndarray,
        train_s: float | None = None) -> dict:
    return {"index": name, "build_s": None if build_s is None else round(build_s, 1),
            "train_s": None if train_s is None else round(train_s, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "recall_at_10": round(recall_at_10(ids, exact), 3)}


def search_benchmark(args: argparse.Namespace) -> dict:
    from zeroshot.vision import stores
    from zeroshot.vision.stores.faiss_store import DEFAULT_K_FACTOR, FaissStore

    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    make = clustered_vectors if args.clustered else unit_vectors
    data = make(args.n, args.dim, rng)
    queries = (make(args.queries, args.dim, np.random.default_rng(args.seed + 1)) if not args.clustered
               else _near(data, args.queries, np.random.default_rng(args.seed + 1)))
    print(f"data: {args.n:,} x {args.dim} ({'clustered' if args.clustered else 'random'}) "
          f"in {time.perf_counter() - start:.1f} s")

    start = time.perf_counter()
    _, exact = faiss.knn(queries, data, 10, metric=faiss.METRIC_INNER_PRODUCT)
    print(f"exact ground truth for {args.queries} queries (batched): {time.perf_counter() - start:.1f} s")

    rows = []
    flat_queries = queries[: args.flat_queries]
    brute_force = lambda q: faiss.knn(q, data, 10, metric=faiss.METRIC_INNER_PRODUCT)[1]  # noqa: E731
    ids, ms = time_queries(brute_force, flat_queries)
    rows.append(row("exact (brute force)", None, ids, ms, exact[: args.flat_queries]))
    _print_row(rows[-1])

    with tempfile.TemporaryDirectory() as folder:
        store = FaissStore(Path(folder), args.dim, cache=False)
        start = time.perf_counter()
        sample = data[np.sort(rng.choice(args.n, min(args.n, stores.TRAINING_SAMPLE), replace=False))]
        store.reset(args.n, sample)  # exactly what `stores.sync` does for a collection this size
        train_s = time.perf_counter() - start
        store.add(np.arange(1, args.n + 1, dtype=np.int64), data)
        build_s = time.perf_counter() - start
        print(f"FaissStore layout {store.layout}: trained in {train_s:.1f} s, built in {build_s:.1f} s")
        for k_factor in args.k_factors:
            store.k_factor = k_factor
            ids, ms = time_queries(lambda q: store.search(q, 10)[1] - 1, queries)
            rows.append(row(f"{store.layout} k_factor={k_factor}", build_s, ids, ms, exact, train_s))
            _print_row(rows[-1])
        # The store runs single queries on one OpenMP thread; show what FAISS's default would give.
        store.k_factor, store.threads = DEFAULT_K_FACTOR, None
        ids, ms = time_queries(lambda q: store.search(q, 10)[1] - 1, queries)
        rows.append(row(f"{store.layout} k_factor={DEFAULT_K_FACTOR} {faiss.omp_get_max_threads()} threads",
                        build_s, ids, ms, exact, train_s))
        _print_row(rows[-1])
        # This layout has no remove_ids: removal re-encodes the rest (`FaissStore.remove`). Time it.
        start = time.perf_counter()
        store.remove(np.arange(1, args.n + 1, max(1, args.n // 1_000), dtype=np.int64))
        remove_s = time.perf_counter() - start
        print(f"  removing {args.n - len(store):,} vectors (a rebuild of the rest): {remove_s:.1f} s")
        store.close()

    if args.hnsw:
        index = faiss.IndexHNSWFlat(args.dim, args.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = args.ef_construction
        start = time.perf_counter()
        index.add(data)
        build_s = time.perf_counter() - start
        print(f"HNSW{args.hnsw_m} efConstruction={args.ef_construction}: built in {build_s:.1f} s")
        for ef in args.ef_search:
            params = faiss.SearchParametersHNSW(efSearch=ef)
            ids, ms = time_queries(lambda q, p=params: index.search(q, 10, params=p)[1], queries)
            rows.append(row(f"hnsw{args.hnsw_m} efSearch={ef}", build_s, ids, ms, exact))
            _print_row(rows[-1])
    return {"n": args.n, "dim": args.dim, "queries": args.queries, "seed": args.seed,
            "data": "clustered" if args.clustered else "random unit vectors", "rows": rows,
            "remove_1000_s": round(remove_s, 1)}


def _near(data: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    # Queries for clustered data: perturbed data points, as a photo is near its look-alikes.
    picked = data[rng.choice(len(data), count, replace=False)]
    noisy = picked + 0.6 * unit_vectors(count, data.shape[1], rng)
    return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)


def _print_row(r: dict) -> None:
    build = "" if r["build_s"] is None else f"{r['build_s']:8.1f}"
    print(f"  {r['index']:<36} build_s {build:>8}  p50 {r['p50_ms']:8.2f} ms  p99 {r['p99_ms']:8.2f} ms  "
          f"recall@10 {r['recall_at_10']:.3f}")


def indexing_benchmark(args: argparse.Namespace) -> dict:
    from PIL import Image
    from skimage import data as samples

    from zeroshot.models.clip import load_clip, save_random_clip
    from zeroshot.vision.embed import embed_images
    from zeroshot.vision.search import ImageIndex

    photos = [samples.astronaut(), samples.coffee(), samples.chelsea(), samples.rocket(),
              samples.hubble_deep_field(), samples.immunohistochemistry(), samples.retina()]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        rng = np.random.default_rng(args.seed)
        for i in range(args.images):
            photo = photos[i % len(photos)]
            side = min(photo.shape[0], photo.shape[1], 512)
            top, left = rng.integers(0, photo.shape[0] - side + 1), rng.integers(0, photo.shape[1] - side + 1)
            crop = np.array(photo[top:top + side, left:left + side, :3])
            crop[0, 0] = (i % 256, i // 256, 255)  # every file distinct: no duplicate is skipped
            Image.fromarray(crop).save(folder / f"{i:04d}.jpg", quality=90)
        start = time.perf_counter()
        model = load_clip(save_random_clip(Path(tmp) / "clip", "vit-b-32"), device="cpu")
        print(f"ViT-B/32-sized random CLIP ready in {time.perf_counter() - start:.1f} s")
        files = sorted(folder.iterdir())
        embed_images(model, files[:8], progress=False)  # warm-up

        start = time.perf_counter()
        embed_images(model, files, batch_size=32, num_workers=2, progress=False)
        embed_s = time.perf_counter() - start
        index = ImageIndex(Path(tmp) / "db", model, batch_size=32, num_workers=2)
        start = time.perf_counter()
        report = index.add([folder])
        index_s = time.perf_counter() - start
        start = time.perf_counter()
        again = index.add([folder])
        rerun_s = time.perf_counter() - start
        assert len(report.added) == args.images and len(again.skipped) == args.images, report.summary()
        index.close()
    result = {"images": args.images, "embedded": report.embedded,
              "model": "ViT-B/32-sized random CLIP (fp32, CPU)",
              "embed_images_per_s": round(args.images / embed_s, 1),
              "image_index_add_per_s": round(args.images / index_s, 1),
              "unchanged_rerun_s": round(rerun_s, 2)}
    print(f"  embed_images alone: {result['embed_images_per_s']} images/s; ImageIndex.add: "
          f"{result['image_index_add_per_s']} images/s; re-run with nothing changed: {rerun_s:.2f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--flat-queries", type=int, default=30, help="Brute-force latency on this many.")
    parser.add_argument("--k-factors", type=int, nargs="+", default=[10, 20, 50, 100],
                        help="Re-ranking depths of the PQ layout (candidates = k_factor * 10).")
    parser.add_argument("--hnsw", action="store_true", help="Also build FAISS HNSW (slow to build).")
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=40)
    parser.add_argument("--ef-search", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--clustered", action="store_true", help="Gaussian-mixture data instead of random.")
    parser.add_argument("--images", type=int, default=200, help="0 skips the indexing benchmark.")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    results = {"machine": {"cpus": os.cpu_count(), "faiss_threads": faiss.omp_get_max_threads(),
                           "python": platform.python_version(), "faiss": faiss.__version__,
                           "load_average_at_start": os.getloadavg()},  # other work on the machine
               "command": "python -m bench.search_1m " + " ".join(sys.argv[1:])}
    print(f"{os.cpu_count()} CPUs, FAISS {faiss.__version__} with {faiss.omp_get_max_threads()} threads")
    if not args.skip_search:
        results["search"] = search_benchmark(args)
    if args.images:
        results["indexing"] = indexing_benchmark(args)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
