"""Image search at scale: 1M to 10M x 512 vectors through the real catalog and store, and indexing speed.

    python -m bench.search_1m                                   # 1M clustered vectors + baselines
    python -m bench.search_1m --vectors 10000000 --images 0     # 10M (about an hour on 2 cores)
    python -m bench.search_1m --vectors 1000000 --data random   # the hard case, as in issue 4

Part 1, search, in stages, each in its own process so that its peak RSS is its own; a stage whose
result is already in `--workdir` (default .cache/search-<n>-<data>) is not run again:
1. generate: `--vectors` synthetic 512-d unit vectors written through `Catalog` (sha256, a file row and
   the vector for each, 200,000 per transaction) exactly as `zeroshot index` writes them: the float16
   rows go to `embeddings.f16`. Meanwhile the exact top-10 of `--queries` queries over the original
   float32 vectors is kept (ground truth "fp32").
2. truth: the exact top-10 again, streamed in blocks over the float16 file, never all in
   RAM (ground truth "stored"; its recall against "fp32" is what float16 storage alone costs).
3. build: `stores.sync` builds the store's layout for this size from the catalog (training on a seeded
   sample, adding in chunks, with a progress bar and checkpoints), as the first search would.
4. search: a fresh process opens the catalog and the saved store and answers the queries one per call,
   re-ranking candidates from the memory-mapped file, for several `--k-factors` x `--nprobes`; then
   end to end through `ImageIndex.search_vector` (metadata of the hits included).
5. baselines (up to 2M vectors, all in RAM): plain FAISS in the same run: exact `IndexFlatIP`, IVF-flat
   at the same cells and nprobe, and the previous store layout `PQ{d/2}x4fs,RFlat` (float32 copy in
   RAM). Speed is given as their p50 over ours.

Data (`--data clustered`, the default), a stand-in for CLIP image embeddings, structured at several
scales as photo collections are: unit vectors normalise(a g + b t + c s + d e) with squared shares
a² .40, b² .25, c² .20, d² .15: g one shared direction (CLIP embeddings sit in a narrow cone), t one of
1,000 random "theme" directions drawn with Zipf-like weights (p ~ 1/(j+10)^0.8: a few big themes, a
long tail), s one of that theme's 100 random "scene" directions (uniform), e isotropic noise. Two random
points have cosine ~0.40, two of one theme ~0.65, two of one scene ~0.85 (CLIP ViT-B/32 image pairs:
~0.45 unrelated, 0.8-0.95 near look-alikes). Queries are fresh draws from the same mixture (a new photo
of a known kind). A harder two-level mixture (one level of 10,000 clusters, cosine 0.79 inside one, so
a query's top-10 is decided by noise alone) gave IVF far lower recall at 120k (docs/notes/issue-18-search.md).
`--data random`: isotropic
unit vectors, no clusters at all (queries too), the hard case for any index.

Part 2, indexing throughput: `--images` JPEGs cut from scikit-image's sample photos (512 x 512 and
larger, re-encoded), indexed with `ImageIndex.add` and a ViT-B/32-sized random-weight CLIP; the same
images embedded with `embed_images` alone, side by side, show what the index adds on top.
Results print as a table and are written to bench/results/search_<n>.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the store sets it (see faiss_store.py)

import faiss  # noqa: E402
import numpy as np  # noqa: E402

RESULTS = Path(__file__).parent / "results"
CHUNK = 200_000  # vectors a transaction while generating


def unit_vectors(count: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    part = rng.standard_normal((count, dim), dtype=np.float32)
    return part / np.linalg.norm(part, axis=1, keepdims=True)


class Mixture:
    """The clustered stand-in for CLIP embeddings described in the module docstring (seeded)."""

    WEIGHTS = (0.40, 0.25, 0.20, 0.15)  # squared shares of: shared direction, theme, scene, noise

    def __init__(self, dim: int, seed: int, themes: int = 1_000, scenes: int = 100) -> None:
        rng = np.random.default_rng(seed)
        self.shared = unit_vectors(1, dim, rng)[0]
        self.themes = unit_vectors(themes, dim, rng)
        self.scenes = unit_vectors(themes * scenes, dim, rng)  # scene s belongs to theme s // scenes
        self.per_theme = scenes
        weights = 1.0 / (np.arange(themes) + 10.0) ** 0.8
        self.weights = weights / weights.sum()

    def draw(self, count: int, rng: np.random.Generator) -> np.ndarray:
        theme = rng.choice(len(self.themes), count, p=self.weights)
        scene = theme * self.per_theme + rng.integers(0, self.per_theme, count)
        a, b, c, d = np.sqrt(self.WEIGHTS)
        out = (a * self.shared + b * self.themes[theme] + c * self.scenes[scene]
               + d * unit_vectors(count, len(self.shared), rng))
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def draw(args: argparse.Namespace, mixture: Mixture | None, count: int, rng: np.random.Generator
         ) -> np.ndarray:
    return mixture.draw(count, rng) if mixture is not None else unit_vectors(count, args.dim, rng)


class TopK:
    """Running exact top-k of a few queries over vectors seen block by block."""

    def __init__(self, queries: np.ndarray, k: int = 10) -> None:
        self.queries, self.k = queries, k
        self.scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        self.ids = np.full((len(queries), k), -1, dtype=np.int64)

    def update(self, first_id: int, block: np.ndarray) -> None:
        scores = np.concatenate([self.scores, self.queries @ block.T], axis=1)
        ids = np.concatenate([self.ids, np.broadcast_to(np.arange(first_id, first_id + len(block)),
                                                        (len(self.queries), len(block)))], axis=1)
        best = np.argpartition(-scores, self.k - 1, axis=1)[:, :self.k]
        self.scores, self.ids = np.take_along_axis(scores, best, 1), np.take_along_axis(ids, best, 1)

    def result(self) -> np.ndarray:
        order = np.argsort(-self.scores, axis=1)
        return np.take_along_axis(self.ids, order, 1)


def peak_rss_gib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)  # Linux: KiB


def stage_generate(args: argparse.Namespace, work: Path) -> dict:
    from tqdm.auto import tqdm

    from zeroshot.search.stores.catalog import Catalog

    mixture = Mixture(args.dim, args.seed) if args.data == "clustered" else None
    queries = draw(args, mixture, args.queries, np.random.default_rng(args.seed + 1))
    np.save(work / "queries.npy", queries)
    truth = TopK(queries)
    (work / "db").mkdir(exist_ok=True)
    catalog = Catalog(work / "db" / "catalog.sqlite")
    # Random sha256 keys land all over the UNIQUE index: with SQLite's default 2 MB page cache each
    # transaction re-reads and re-writes most of its pages. A bulk load this size gets a 1 GiB cache
    # (this stage's RSS, not the search's); `zeroshot index` is bound by the model long before this.
    catalog._db.execute("PRAGMA cache_size = -1048576")
    catalog.set_info({"embedding_dim": str(args.dim), "model_name": "synthetic", "model_fingerprint": "-"})
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    with tqdm(total=args.vectors, unit="vec", desc="catalog", mininterval=10) as bar:
        for first in range(0, args.vectors, CHUNK):
            block = draw(args, mixture, min(CHUNK, args.vectors - first), rng)
            truth.update(first + 1, block)
            numbers = range(first + 1, first + len(block) + 1)
            if args.light_metadata:  # sequential keys append to the index; no file rows
                shas = [f"{i:064x}" for i in numbers]
            else:
                shas = [hashlib.sha256(i.to_bytes(8, "little")).hexdigest() for i in numbers]
            with catalog.transaction() as db:
                vector_ids = catalog.insert_vectors(db, shas, block)
                for i, vector_id in zip(numbers, vector_ids.tolist(), strict=True):
                    if args.light_metadata:
                        break
                    catalog.put_file(db, f"/photos/{i // 1000:05d}/{i:08d}.jpg", vector_id, 100_000,
                                     1_700_000_000_000_000_000, 512, 512)
            bar.update(len(block))
    seconds = time.perf_counter() - start
    catalog.close()
    np.save(work / "truth_fp32.npy", truth.result())
    return {"catalog_write_s": round(seconds, 1), "vectors_per_s": round(args.vectors / seconds),
            "peak_rss_gib": peak_rss_gib()}


def stage_truth(args: argparse.Namespace, work: Path) -> dict:
    from zeroshot.search.stores.vector_file import DTYPE

    queries = np.load(work / "queries.npy")
    path = work / "db" / "embeddings.f16"
    rows = path.stat().st_size // (args.dim * DTYPE.itemsize)
    truth = TopK(queries)
    start = time.perf_counter()
    # Plain reads of 262,144-row blocks, not a memory map: mapped pages would count in this stage's
    # RSS until the end (10 GB at 10M), while these blocks are freed one by one.
    for first in range(0, rows, 262_144):
        count = min(262_144, rows - first)
        block = np.fromfile(path, dtype=DTYPE, count=count * args.dim,
                            offset=first * args.dim * DTYPE.itemsize)
        truth.update(first + 1, block.reshape(count, args.dim).astype(np.float32))
    exact = truth.result()
    np.save(work / "truth_stored.npy", exact)
    return {"truth_s": round(time.perf_counter() - start, 1), "peak_rss_gib": peak_rss_gib(),
            "recall_stored_vs_fp32": recall_at_10(exact, np.load(work / "truth_fp32.npy"))}


def stage_build(args: argparse.Namespace, work: Path) -> dict:
    from zeroshot.search.stores import sync
    from zeroshot.search.stores.catalog import Catalog

    catalog = Catalog(work / "db" / "catalog.sqlite", create=False)
    store = _open_store(args, work, catalog)
    start = time.perf_counter()
    added, _ = sync(store, catalog, durable=True, progress=True)
    seconds = time.perf_counter() - start
    return {"build_s": round(seconds, 1), "added": added, "layout": store.layout,
            "peak_rss_gib": peak_rss_gib()}


def stage_search(args: argparse.Namespace, work: Path) -> dict:
    from zeroshot.search.index import ImageIndex
    from zeroshot.search.stores import sync
    from zeroshot.search.stores.catalog import Catalog

    queries = np.load(work / "queries.npy")
    truths = {name: np.load(work / f"truth_{name}.npy") for name in ("fp32", "stored")}
    start = time.perf_counter()
    catalog = Catalog(work / "db" / "catalog.sqlite", create=False)
    store = _open_store(args, work, catalog)
    assert sync(store, catalog, durable=False) == (0, 0), "the saved store is not in step"
    open_s = time.perf_counter() - start
    rows = []
    nprobes = [None]
    if store.layout.startswith("ivf"):
        from zeroshot.search.stores.faiss_store import default_nprobe

        nprobes = sorted({default_nprobe(faiss.extract_index_ivf(store._index).nlist), *args.nprobes})
    for nprobe in nprobes:
        for k_factor in args.k_factors:
            store.nprobe, store.k_factor = nprobe, k_factor
            ids, ms = time_queries(lambda q: store.search(q, 10)[1], queries)
            name = f"{store.layout} k_factor={k_factor}" + (f" nprobe={nprobe}" if nprobe else "")
            rows.append(row(name, ids, ms, truths))
            _print_row(rows[-1])
    store.nprobe = store.k_factor = None
    catalog.close()
    if args.layout or args.light_metadata:  # no file rows for ImageIndex to return
        return {"open_s": round(open_s, 2), "rows": rows, "peak_rss_gib": peak_rss_gib()}
    with ImageIndex(work / "db") as index:
        def end_to_end(q: np.ndarray) -> np.ndarray:
            hits = index.search_vector(q[0], 10)
            return np.array([int(h.path.rsplit("/", 1)[1].split(".")[0]) for h in hits])

        ids, ms = time_queries(end_to_end, queries)
        rows.append(row(f"ImageIndex.search_vector (defaults, {store.layout})", ids, ms, truths))
        _print_row(rows[-1])
    return {"open_s": round(open_s, 2), "rows": rows, "peak_rss_gib": peak_rss_gib()}


def stage_baselines(args: argparse.Namespace, work: Path) -> dict:
    from zeroshot.search.stores import open_store, sync
    from zeroshot.search.stores.catalog import Catalog
    from zeroshot.search.stores.faiss_store import default_nprobe, ivf_cells
    from zeroshot.search.stores.vector_file import DTYPE

    queries = np.load(work / "queries.npy")
    truths = {name: np.load(work / f"truth_{name}.npy") for name in ("fp32", "stored")}
    data = np.asarray(np.memmap(work / "db" / "embeddings.f16", dtype=DTYPE, mode="r").reshape(-1, args.dim),
                      dtype=np.float32)
    ids0 = np.arange(1, len(data) + 1, dtype=np.int64)
    rows = []
    faiss.omp_set_num_threads(1)  # as the store runs single queries
    flat = faiss.IndexIDMap2(faiss.IndexFlatIP(args.dim))
    flat.add_with_ids(data, ids0)
    ids, ms = time_queries(lambda q: flat.search(q, 10)[1], queries[:args.flat_queries])
    rows.append(row("faiss IndexFlatIP (exact)", ids, ms,
                    {k: v[:args.flat_queries] for k, v in truths.items()}))
    _print_row(rows[-1])
    flat.reset()
    sample = data[np.sort(np.random.default_rng(0).choice(len(data), min(len(data), 65_536), replace=False))]
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    start = time.perf_counter()
    old = faiss.index_factory(args.dim, f"IDMap2,PQ{args.dim // 2}x4fs,RFlat", faiss.METRIC_INNER_PRODUCT)
    old.train(sample)
    old.add_with_ids(data, ids0)
    build_s = time.perf_counter() - start
    faiss.omp_set_num_threads(1)
    params = faiss.IndexRefineSearchParameters(k_factor=50.0)
    # The previous layout and this store's, alternately, so that both see the same load on the machine.
    catalog = Catalog(work / "db" / "catalog.sqlite", create=False)
    store = open_store("faiss", work / "db", args.dim, catalog=catalog)
    sync(store, catalog, durable=True)  # (re)built here if needed, outside the timing
    for turn in (1, 2):
        ids, ms = time_queries(lambda q: old.search(q, 10, params=params)[1], queries)
        rows.append({**row(f"previous store PQ{args.dim // 2}x4fs,RFlat k_factor=50 (turn {turn})", ids, ms,
                           truths), "build_s": round(build_s, 1)})
        _print_row(rows[-1])
        ids, ms = time_queries(lambda q: store.search(q, 10)[1], queries)
        rows.append(row(f"this store {store.layout} k_factor=50 (turn {turn})", ids, ms, truths))
        _print_row(rows[-1])
    old.reset()
    if not args.ivf_baseline:
        return {"rows": rows, "peak_rss_gib": peak_rss_gib()}
    nlist = ivf_cells(len(data))
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    start = time.perf_counter()
    ivf = faiss.index_factory(args.dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
    picked = np.random.default_rng(0).choice(len(data), min(len(data), 262_144), replace=False)
    ivf.train(data[np.sort(picked)])
    ivf.add_with_ids(data, ids0)
    build_s = time.perf_counter() - start
    faiss.omp_set_num_threads(1)
    for nprobe in sorted({default_nprobe(nlist), *args.nprobes}):
        p = faiss.SearchParametersIVF(nprobe=nprobe)
        ids, ms = time_queries(lambda q, p=p: ivf.search(q, 10, params=p)[1], queries)
        rows.append({**row(f"faiss IVF{nlist},Flat nprobe={nprobe}", ids, ms, truths),
                     "build_s": round(build_s, 1)})
        _print_row(rows[-1])
    return {"rows": rows, "peak_rss_gib": peak_rss_gib()}


def _open_store(args: argparse.Namespace, work: Path, catalog):
    from zeroshot.search.stores import open_store
    from zeroshot.search.stores.faiss_store import FaissStore

    if args.layout is None:  # the store's own choice, in the index folder, where `ImageIndex` finds it
        return open_store("faiss", work / "db", args.dim, catalog=catalog)
    # A forced layout in a folder apart, without recording checksums in the catalog: they are kept by
    # file name, and would otherwise replace those of the index folder's own cache.
    return FaissStore(work / f"store-{args.layout}", args.dim, vectors=catalog, layout=args.layout)


STAGES = {"generate": stage_generate, "truth": stage_truth, "build": stage_build, "search": stage_search,
          "baselines": stage_baselines}


def recall_at_10(found: np.ndarray, exact: np.ndarray) -> float:
    hits = [len(set(f[:10]) & set(e[:10])) / 10 for f, e in zip(found, exact, strict=True)]
    return round(float(np.mean(hits)), 4)


def time_queries(search, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run `search(q)` one query at a time; (ids (nq, 10), milliseconds per query)."""
    search(queries[:1])  # warm-up
    ids, times = [], []
    for query in queries:
        start = time.perf_counter()
        found = search(query[None])
        times.append((time.perf_counter() - start) * 1000)
        ids.append(np.asarray(found).reshape(-1)[:10])
    return np.stack(ids), np.asarray(times)


def row(name: str, ids: np.ndarray, ms: np.ndarray, truths: dict[str, np.ndarray]) -> dict:
    return {"index": name, "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            **{f"recall_at_10_{name}": recall_at_10(ids, exact) for name, exact in truths.items()}}


def _print_row(r: dict) -> None:
    print(f"  {r['index']:<52} p50 {r['p50_ms']:8.2f} ms  p99 {r['p99_ms']:8.2f} ms  "
          f"recall@10 {r['recall_at_10_fp32']:.3f} (vs stored {r['recall_at_10_stored']:.3f})", flush=True)


def disk_bytes(work: Path) -> dict:
    folder = work / "db"
    sizes = {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()}
    return {"files": sizes, "total": sum(sizes.values())}


def search_benchmark(args: argparse.Namespace) -> dict:
    work = args.workdir or Path(".cache") / f"search-{args.vectors}-{args.data}"
    work.mkdir(parents=True, exist_ok=True)
    stages = [("generate", None), ("truth", None), ("build", None), ("search", None)]
    stages += [(stage, layout) for layout in args.layouts for stage in ("build", "search")]
    stages += [("baselines", None)] if args.vectors <= 2_000_000 else []
    results = {}
    for stage, layout in stages:
        name = stage if layout is None else f"{stage}-{layout}"
        done = work / f"{name}.json"
        if not done.exists():
            print(f"--- {name}", flush=True)
            command = [sys.executable, "-m", "bench.search_1m", "--stage", stage, "--workdir", str(work),
                       *_passed(args), *(["--layout", layout] if layout else [])]
            subprocess.run(command, check=True)
        results[name] = json.loads(done.read_text())
    disk = disk_bytes(work)
    results["disk"] = {**disk, "bytes_per_vector": round(disk["total"] / args.vectors, 1),
                       **{f"{name}_per_vector": round(size / args.vectors, 1)
                          for name, size in disk["files"].items()}}
    results.update({"vectors": args.vectors, "dim": args.dim, "queries": args.queries, "seed": args.seed,
                    "data": args.data})
    return results


def _passed(args: argparse.Namespace) -> list[str]:
    return ["--vectors", str(args.vectors), "--dim", str(args.dim), "--queries", str(args.queries),
            "--data", args.data, "--seed", str(args.seed),
            *(["--light-metadata"] if args.light_metadata else []),
            *([] if args.ivf_baseline else ["--no-ivf-baseline"]), "--flat-queries", str(args.flat_queries),
            "--k-factors", *map(str, args.k_factors), "--nprobes", *map(str, args.nprobes)]


def indexing_benchmark(args: argparse.Namespace) -> dict:
    from PIL import Image
    from skimage import data as samples

    from zeroshot.models.clip import load_clip
    from zeroshot.search.index import ImageIndex
    from zeroshot.testing import save_random_clip
    from zeroshot.vision.embed import embed_images

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
    parser.add_argument("--vectors", "--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--data", choices=("clustered", "random"), default="clustered")
    parser.add_argument("--flat-queries", type=int, default=30, help="Brute-force latency on this many.")
    parser.add_argument("--k-factors", type=int, nargs="+", default=[20, 50, 100],
                        help="Re-ranking depths (candidates = k_factor * 10).")
    parser.add_argument("--nprobes", type=int, nargs="+", default=[32, 64, 128],
                        help="IVF cells scanned per query (IVF layout only).")
    parser.add_argument("--workdir", type=Path, help="Where the catalog and stage results go "
                        "(default .cache/search-<vectors>-<data>).")
    parser.add_argument("--stage", choices=tuple(STAGES), help=argparse.SUPPRESS)
    parser.add_argument("--layout", choices=("flat", "pq", "ivf"), help=argparse.SUPPRESS)
    parser.add_argument("--layouts", nargs="*", choices=("pq", "ivf"), default=["ivf"],
                        help="Also build and search these store layouts, forced (default: ivf).")
    parser.add_argument("--light-metadata", action="store_true",
                        help="Vectors only, with sequential keys and no file rows: a bulk load the shared "
                             "2-core machine can finish (catalog bytes per file are measured at 1M).")
    parser.add_argument("--no-ivf-baseline", dest="ivf_baseline", action="store_false",
                        help="Skip the IVF-flat baseline (minutes to build).")
    parser.add_argument("--images", type=int, default=200, help="0 skips the indexing benchmark.")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if args.stage:
        start = time.perf_counter()
        result = STAGES[args.stage](args, args.workdir)
        result["stage_s"] = round(time.perf_counter() - start, 1)
        result["load_average_at_end"] = os.getloadavg()
        name = args.stage if args.layout is None else f"{args.stage}-{args.layout}"
        (args.workdir / f"{name}.json").write_text(json.dumps(result, indent=2))
        print(f"{args.stage}: {json.dumps({k: v for k, v in result.items() if k != 'rows'})}", flush=True)
        return

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    results = {"machine": {"cpus": os.cpu_count(), "cpu": cpu, "faiss_threads": faiss.omp_get_max_threads(),
                           "python": platform.python_version(), "faiss": faiss.__version__,
                           "load_average_at_start": os.getloadavg()},  # other work on the machine
               "command": "python -m bench.search_1m " + " ".join(sys.argv[1:])}
    print(f"{cpu}: {os.cpu_count()} CPUs, FAISS {faiss.__version__}")
    if not args.skip_search:
        results["search"] = search_benchmark(args)
    if args.images:
        results["indexing"] = indexing_benchmark(args)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    output = args.output or RESULTS / f"search_{args.vectors}_{args.data}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2))
    print(f"written to {output}")


if __name__ == "__main__":
    main()
