"""Indexing on a Ray cluster: the embedding (the expensive part) runs as a Ray Data job.

    index = ImageIndex("photos.idx", load_clip())
    index.add(["/shared/photos"], engine=RayEngine(address="head:6379", workers=8))

The driver (this process) lists the files and skips those the catalog already has with the same size
and mtime, exactly as the single-process path does (`indexing.py`). The other paths go to a Ray Data
job: each of `workers` actors loads the model once, then reads, hashes, decodes and embeds its batches
of files. Embeddings stream back to the driver, which writes each batch to the catalog in one
transaction, then to the vector store (FAISS or Milvus, whichever the index uses).

Exactly once: a batch is committed whole or not at all; a path the run has already committed is
ignored if Ray delivers it again (a retried task), and content already in the catalog is linked, never
stored twice. A killed worker is restarted and its batch retried by Ray Data. A killed driver keeps every
committed batch; the next run skips those files (same model fingerprint, same size and mtime) and embeds
the rest.

Files must be readable under the same path on every worker (a shared file system), and zeroshot and the
model must be installed there: workers load the model by the name the driver's model has.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np

from zeroshot.errors import UserError, first_line
from zeroshot.models.clip import ImageTextModel
from zeroshot.optional import RAY
from zeroshot.search.indexing import AddReport, _File, _image_size, _os_reason, _Run
from zeroshot.search.stores import VectorStore
from zeroshot.search.stores.catalog import Catalog
from zeroshot.vision.images import ImageError, read_image_bytes

PROBE_SECONDS = 3.0  # a cluster that does not answer its port within this is reported, not waited for
_DTYPE_NAMES = {"torch.float32": "fp32", "torch.float16": "fp16", "torch.bfloat16": "bf16"}


@dataclass(frozen=True)
class RayEngine:
    """Embed on a Ray cluster; pass to `ImageIndex.add(paths, engine=...)`.

    `address`: a running cluster ("host:port", "ray://host:port" or "auto"); None uses RAY_ADDRESS if
    set, else starts a Ray instance on this machine for the run. `workers`: embedding actors (default:
    one per CPU the cluster has, `cpus_per_worker` each). `device`: where workers run the model (default:
    CUDA where visible). A Ray session already started in this process is used as it is.
    """

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    device: str | None = None
    embedder: type | None = None  # the actor class; None: `Embedder` (tests pass one that fails on cue)

    def connect(self):
        """Connect now (or start a local Ray): a cluster that does not answer fails before any work."""
        return connect(self.address)

    def __call__(self, catalog: Catalog, store: VectorStore, model: ImageTextModel, files: list[str],
                 gone: list[str], batch_size: int = 32, num_workers: int = 2, progress: bool = False
                 ) -> AddReport:
        """Index `files` and forget `gone` ones, as `indexing.index_files` does, embedding on Ray."""
        from tqdm.auto import tqdm

        if self.workers is not None and self.workers < 1:
            raise UserError(f"the number of Ray workers must be at least 1, not {self.workers}")
        report = AddReport()
        with tqdm(total=len(files), unit="img", desc="indexing (ray)", disable=not progress) as bar:
            run = _RayRun(catalog, store, report, bar)
            todo = run.files_to_embed_paths(files)
            if todo:
                ray = self.connect()
                try:
                    with _quiet_ray_data():
                        for batch in self._embedded(ray, model, todo, batch_size, num_workers):
                            run.commit_rows(batch)
                except ray.exceptions.RayError as exc:
                    raise UserError(f"the Ray job failed ({_reason(exc)}); the {report.embedded} images "
                                    "embedded so far are kept: run the same command again to resume"
                                    ) from None
            run.finish(gone)
        return report

    def _embedded(self, ray, model: ImageTextModel, paths: list[str], batch_size: int, threads: int):
        """Batches of worker results, as dicts of numpy columns, in the order of `paths`."""
        from ray.data import ActorPoolStrategy

        blocks = max(1, min(-(-len(paths) // batch_size), 10_000))
        workers = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1) // self.cpus_per_worker))
        workers = min(workers, blocks)  # an actor without a block would only load the model
        dataset = ray.data.from_items([{"path": path} for path in paths], override_num_blocks=blocks)
        options = dataset.context.execution_options
        options.preserve_order = True  # ids in file order, as the single-process path gives them
        options.verbose_progress = False
        dataset.context.enable_progress_bars = False
        dataset = dataset.map_batches(
            self.embedder or Embedder, batch_size=batch_size, batch_format="numpy",
            compute=ActorPoolStrategy(size=workers), num_cpus=self.cpus_per_worker,
            fn_constructor_kwargs={"model_name": model.name, "cwd": os.getcwd(),
                                   "fingerprint": model.fingerprint,
                                   "dtype": _dtype_name(model),
                                   "device": self.device, "threads": threads})
        yield from dataset.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2)


def _dtype_name(model) -> str | None:
    """The name `load_clip` takes for the model's number format (int8 keeps float32 tensors, so its
    `dtype_name` comes first): workers must embed exactly as the driver does."""
    return getattr(model, "dtype_name", None) or _DTYPE_NAMES.get(str(getattr(model, "dtype", "")))


class Embedder:
    """A Ray Data actor: loads the model once, then reads, hashes, decodes and embeds batches of paths.

    For each path it returns what the driver needs to commit it: the size and mtime it saw, the sha256
    of the bytes it read, the image size, the embedding of those same bytes, or the reason it failed
    (the reasons the single-process path gives).
    """

    def __init__(self, model_name: str, cwd: str, fingerprint: str, dtype: str | None, device: str | None,
                 threads: int) -> None:
        from zeroshot.models.clip import load_clip

        # The model is named exactly as the driver named it (the fingerprint covers the config, and the
        # config records the name), so a relative folder is found from the driver's working directory.
        if os.path.isdir(cwd):
            os.chdir(cwd)
        options = {"dtype": dtype} if dtype else {}
        self.model = load_clip(model_name, device=device, **options)
        if self.model.fingerprint != fingerprint:
            raise UserError(f"the Ray worker's copy of {model_name} has fingerprint "
                            f"{self.model.fingerprint}, the driver's {fingerprint}: install the same weights "
                            "on every node")
        self.threads = threads

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from zeroshot.vision.embed import embed_images

        paths = [str(path) for path in batch["path"]]
        count = len(paths)
        sizes = np.zeros(count, dtype=np.int64)
        mtimes = np.zeros(count, dtype=np.int64)
        widths = np.full(count, -1, dtype=np.int64)
        heights = np.full(count, -1, dtype=np.int64)
        digests = [""] * count
        errors = [""] * count
        readable: list[int] = []
        contents: list[bytes] = []
        for row, path in enumerate(paths):
            try:
                info = os.stat(path)
                data = read_image_bytes(path)
            except ImageError as exc:
                errors[row] = str(exc)
                continue
            except OSError as exc:
                errors[row] = _os_reason(exc)
                continue
            sizes[row], mtimes[row] = info.st_size, info.st_mtime_ns
            digests[row] = hashlib.sha256(data).hexdigest()
            width, height = _image_size(data)
            widths[row], heights[row] = (width, height) if width is not None else (-1, -1)
            readable.append(row)
            contents.append(data)  # the bytes that were hashed are the bytes that are embedded
        vectors = np.zeros((count, self.model.embedding_dim), dtype=np.float32)
        if contents:
            indices, embeddings, failures = embed_images(self.model, contents, batch_size=len(contents),
                                                         num_workers=self.threads, progress=False)
            for position, vector in zip(indices, embeddings, strict=True):
                vectors[readable[position]] = vector
            for position, reason in failures:
                row = readable[position]
                errors[row] = reason.replace("image:", f"{paths[row]}:", 1)
        return {"path": np.asarray(paths, dtype=object), "size": sizes, "mtime_ns": mtimes,
                "sha256": np.asarray(digests, dtype=object), "width": widths, "height": heights,
                "error": np.asarray(errors, dtype=object), "embedding": vectors}


class _RayRun(_Run):
    """The single-process run's bookkeeping, fed by whole batches of worker results instead."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.committed: set[str] = set()

    def files_to_embed_paths(self, files: list[str]) -> list[str]:
        """The paths to send to the workers: all but the unchanged ones (same size and mtime)."""
        return [path for path in files if self.changed(path) is not None]

    def commit_rows(self, batch: dict[str, np.ndarray]) -> None:
        """Write one batch of worker results in one transaction, then add its new vectors to the store."""
        new_ids: list[int] = []
        new_vectors: list[np.ndarray] = []
        with self.catalog.transaction() as db:
            for row, path in enumerate(batch["path"]):
                path = str(path)
                if path in self.committed:  # delivered again by a retried task
                    continue
                self.committed.add(path)
                record = self.catalog.file(path)
                width, height = int(batch["width"][row]), int(batch["height"][row])
                item = _File(path, int(batch["size"][row]), int(batch["mtime_ns"][row]),
                             str(batch["sha256"][row]), width if width >= 0 else None,
                             height if height >= 0 else None, known=record is not None)
                if batch["error"][row]:
                    self.fail(item, str(batch["error"][row]))
                elif record and record.sha256 == item.sha256:
                    self.writes.append(("touch", item, record.vector_id))
                    self.report.skipped.append(path)
                    self.bar.update(1)
                elif (vector_id := self.catalog.vector_id(item.sha256)) is not None:
                    self.writes.append(("link", item, vector_id))  # a copy of content already indexed
                else:
                    vector = batch["embedding"][row]
                    vector_id = self.catalog.insert_vector(db, item.sha256, vector)
                    new_ids.append(vector_id)
                    new_vectors.append(vector)
                    self.writes.append(("link", item, vector_id))
            self.apply_writes(db)
        self.report.embedded += len(new_ids)
        if new_ids:
            self.store.add(np.asarray(new_ids, dtype=np.int64), np.stack(new_vectors).astype(np.float32))


def connect(address: str | None = None):
    """The `ray` module, connected: to `address` (or RAY_ADDRESS), else to a new local instance.

    A cluster that does not answer is reported within `PROBE_SECONDS` as a `UserError` (ray.init itself
    would retry for minutes). A session this process already started is used as it is.
    """
    ray = RAY.load()
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address not in (None, "local"):
        _probe(_bootstrap_address(address), address)
    if ray.is_initialized():
        return ray
    logging.getLogger("ray").setLevel(logging.WARNING)
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING,
                 include_dashboard=False if address in (None, "local") else None,
                 ignore_reinit_error=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"cannot connect to the Ray cluster at {address}: {first_line(exc, 300)}") from None
    return ray


def _bootstrap_address(address: str) -> tuple[str, int]:
    """(host, port) to probe for `address`: host:port, ray://host:port, or "auto" (the last `ray start`)."""
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address

        try:
            address = canonicalize_bootstrap_address("auto") or ""
        except (ConnectionError, ValueError) as exc:
            raise UserError(f"no running Ray cluster found for --ray-address auto: {first_line(exc, 300)}"
                            ) from None
    parts = urlsplit(address if "://" in address else f"//{address}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise UserError(f"a Ray address is host:port, ray://host:port or auto, not {address!r}")
    return parts.hostname, port


def _probe(target: tuple[str, int], address: str) -> None:
    try:
        with socket.create_connection(target, timeout=PROBE_SECONDS):
            return
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise UserError(f"the Ray cluster at {address} does not answer ({reason}); start it with "
                        "`ray start --head` or check the address") from None


@contextmanager
def _quiet_ray_data():
    """Ray Data's console lines off the terminal our bar is drawn on (its log files keep them all): its
    progress notices, and a failed job's traceback, which the `UserError` raised from it sums up."""
    importlib.import_module("ray.data")  # configures Ray Data's loggers (on first import)
    consoles = [handler for handler in logging.getLogger("ray.data").handlers
                if not isinstance(handler, logging.FileHandler) and "File" not in type(handler).__name__]
    levels = [handler.level for handler in consoles]
    for handler in consoles:
        handler.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for handler, level in zip(consoles, levels, strict=True):
            handler.setLevel(level)


def _reason(exc: BaseException) -> str:
    """What went wrong: a worker's own `UserError` message where there is one, else the first line."""
    text = str(exc)
    marker = "UserError: "
    if marker in text:
        return text[text.rindex(marker) + len(marker):].splitlines()[0].strip()[:300]
    return first_line(exc, 300)

