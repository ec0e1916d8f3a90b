"""Zero-shot semantic image search: index a collection of images once, query it by text or by image.

    index = ImageIndex("photos.idx", load_clip())
    index.add(["~/Pictures"])                 # incremental: only new or changed files are embedded
    for hit in index.search(text="a red car in the snow", k=5):
        print(f"{hit.score:.3f}  {hit.path}")

An index is a folder: `catalog.sqlite` (the truth: metadata and every embedding, see
`stores/catalog.py`) plus a vector store derived from it — FAISS by default (`stores/faiss_store.py`),
or a Milvus collection (`stores/milvus_store.py`). The folder records the model that wrote it (name,
fingerprint of its weights, embedding size) and refuses any other, so vectors of two models never mix.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from zeroshot.errors import UserError, storage_error
from zeroshot.models.clip import DEFAULT_CLIP, ImageTextModel, load_clip
from zeroshot.search.indexing import AddReport, absolute, forget_files, index_files
from zeroshot.search.stores import VectorStore, open_store, sync
from zeroshot.search.stores.catalog import TEMP_PREFIX, Catalog, database_error
from zeroshot.validation import check_exactly_one
from zeroshot.vision.images import ImageError, expand_paths

__all__ = ["AddReport", "ImageIndex", "SearchHit", "SearchResults", "image_similarity", "index_model"]

CATALOG_NAME = "catalog.sqlite"


@dataclass(frozen=True)
class SearchHit:
    """One result: the image, its cosine similarity to the query, and what the catalog knows of it.

    Byte-identical files share one vector and one hit: `path` is the first of them, the others are in
    `duplicates`.
    """

    path: str
    score: float
    sha256: str
    size: int
    mtime: float
    width: int | None
    height: int | None
    duplicates: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {**asdict(self), "score": round(float(self.score), 6), "duplicates": list(self.duplicates)}


@dataclass
class SearchResults:
    """A query and its hits, as the CLI (`--format json`), the server and Python report them."""

    query: dict  # {"text": ...} or {"image": the path or name of the query image}
    index_size: int
    hits: list[SearchHit]

    def to_dict(self) -> dict:
        return {"query": self.query, "index_size": self.index_size,
                "results": [hit.to_dict() for hit in self.hits]}


class ImageIndex:
    """A searchable index of image files kept in the folder `db` (see the module docstring).

    `model` embeds images and text queries; when None it is loaded on first need from the name the
    index recorded. `store` is "faiss" (embedded, default) or "milvus"; `store_options` go to the store
    (FAISS: `k_factor`, `threads`; Milvus: `uri`, `collection`, `token`, `index_type`). Safe to share
    between threads.
    """

    def __init__(self, db: str | os.PathLike, model: ImageTextModel | None = None, *, store: str = "faiss",
                 store_options: dict | None = None, batch_size: int = 32, num_workers: int = 2,
                 progress: bool = False, create: bool = True) -> None:
        self.folder = Path(db).expanduser()
        self.store_kind = store
        self.store_options = dict(store_options or {})
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.progress = progress
        self._lock = threading.RLock()
        made_folder = self._prepare_folder(create)
        try:
            self.catalog = Catalog(self.folder / CATALOG_NAME, create=create)
        except BaseException:
            if made_folder:  # leave nothing half-created behind (a full disk, Ctrl-C)
                with contextlib.suppress(OSError):
                    self.folder.rmdir()
            raise
        self._model = model
        self._store: VectorStore | None = None
        if model is not None:
            self._check_model(model)

    def _prepare_folder(self, create: bool) -> bool:
        """Check (and with `create`, make) the index folder; whether this call made it."""
        if self.folder.exists() and not self.folder.is_dir():
            raise UserError(f"{self.folder}: is a file; --db takes a folder (new, or made by "
                            "`zeroshot index`)")
        if (self.folder / CATALOG_NAME).exists():
            return False
        if not self.folder.exists():
            if not create:
                raise UserError(f"{self.folder}: no image index here (run `zeroshot index ... --db` first)")
            try:
                self.folder.mkdir(parents=True)
            except FileExistsError:
                return False  # another process is creating it at this moment
            except OSError as exc:
                raise storage_error(exc, self.folder, "creating the index folder") or exc from exc
            return True
        # Another process may be creating the catalog right now (its temporary file, its lock), or may
        # have just finished (the catalog and SQLite's -wal/-shm files appear after the check above).
        if any(not (p.name.startswith((TEMP_PREFIX, CATALOG_NAME)) or p.name == "write.lock")
               for p in self.folder.iterdir()):
            raise UserError(f"{self.folder}: a folder with other files in it, not an image index; "
                            "give a new or empty folder to --db")
        elif not create:
            raise UserError(f"{self.folder}: no image index here (run `zeroshot index ... --db` first)")
        return False

    # --- model ----------------------------------------------------------------------------------------

    @property
    def info(self) -> dict[str, str]:
        """What the index records: format, model name and fingerprint, embedding size, version."""
        return self.catalog.info()

    @property
    def model(self) -> ImageTextModel:
        """The model of this index: the one given, else the recorded one, loaded on first need
        (`index_model`). An empty index without a model is a `UserError`: the Python API never picks a
        model for you."""
        with self._lock:
            if self._model is None:
                self.use_model(index_model(self.info, fallback=None, where=self.folder))
            return self._model

    def load_model(self, name: str | None = None, device: str | None = None,
                   dtype: str | None = None) -> ImageTextModel:
        """Load the CLIP this index uses (`index_model`: `name`, else the recorded model, else zeroshot's
        default for a new index) on `device` in `dtype`, and embed with it from now on; `UserError` if
        it is not the model the index was built with."""
        with self._lock:
            if name is None and device is None and dtype is None and self._model is not None:
                return self._model
            model = index_model(self.info, name, device=device, dtype=dtype, where=self.folder)
            self.use_model(model)
            return model

    def use_model(self, model: ImageTextModel) -> None:
        """Embed with `model` from now on; `UserError` if it is not the model this index was built with."""
        with self._lock:
            self._check_model(model)
            self._model = model

    def _check_model(self, model: ImageTextModel) -> None:
        info = self.info
        name = absolute(model.name) if Path(model.name).expanduser().exists() else model.name  # any cwd
        mine = {"model_name": name, "model_fingerprint": model.fingerprint,
                "embedding_dim": str(model.embedding_dim)}
        if "model_fingerprint" not in info:
            # the first write to a new index: a disk that filled up while the catalog was made fails
            # here, and gets the same one line as any other write (issue 33: it was a traceback)
            with self._database_errors():
                self.catalog.set_info(mine)
            return
        if info["embedding_dim"] != mine["embedding_dim"] or not model.matches(info["model_fingerprint"]):
            raise UserError(
                f"{self.folder} was indexed with the model {info['model_name']} ({info['embedding_dim']}-d, "
                f"fingerprint {info['model_fingerprint']}), not {model.name} ({mine['embedding_dim']}-d, "
                f"fingerprint {mine['model_fingerprint']}); vectors of two models cannot be mixed: use that "
                "model, or a new --db folder")

    # --- store -------------------------------------------------------------------------------------------

    def _synced_store(self, durable: bool) -> VectorStore | None:
        dim = self.info.get("embedding_dim")
        if dim is None:
            return None
        if self._store is None:
            self._store = open_store(self.store_kind, self.folder, int(dim), catalog=self.catalog,
                                     **self.store_options)
        sync(self._store, self.catalog, durable=durable, progress=self.progress)
        return self._store

    @contextmanager
    def _writing(self) -> Iterator[VectorStore]:
        with self._lock, _WriteLock(self.folder / "write.lock"):
            store = self._synced_store(durable=True)
            assert store is not None
            try:
                yield store
            except BaseException:
                # Even after an error or Ctrl-C the catalog holds every finished batch; record that, but
                # report the first error (a full disk fails this save too).
                with contextlib.suppress(Exception):
                    sync(store, self.catalog, durable=True)
                raise
            sync(store, self.catalog, durable=True)

    # --- public API ----------------------------------------------------------------------------------------

    def add(self, paths: Iterable[str | os.PathLike], engine: Callable[..., AddReport] | None = None
            ) -> AddReport:
        """Index image files and folders (walked recursively): embed what is new or changed.

        Files that were indexed under a folder given here but are no longer on disk are removed, as are
        listed files that no longer exist. Unreadable files are reported in `AddReport.failed`.
        `engine` embeds: None is this process (`indexing.index_files`), `ray_indexing.RayEngine(...)` a
        Ray cluster; both take the same arguments and write the same index.
        """
        with self._lock, self._database_errors():
            model = self.model
            files, gone = self._resolve(paths)
            with self._writing() as store:
                return (engine or index_files)(self.catalog, store, model, files, gone, self.batch_size,
                                               self.num_workers, self.progress)

    def remove(self, paths: Iterable[str | os.PathLike]) -> list[str]:
        """Remove files (or every file under a folder) from the index; the files on disk are untouched."""
        wanted: list[str] = []
        for path in paths:
            name = absolute(path)
            wanted.extend(self.catalog.files_under(name) or [name])
        with self._lock, self._database_errors(), self._writing() as store:
            return forget_files(self.catalog, store, wanted)

    def search(self, text: str | None = None, image=None, k: int = 10,
               min_score: float | None = None) -> list[SearchHit]:
        """The `k` images most similar to a text or to an image (path, bytes or PIL image), best first.

        Scores are cosine similarities in the model's space (for CLIP, text-to-image matches score about
        0.2-0.35, image-to-image 0.5-1); `min_score` drops weaker hits.
        """
        if check_exactly_one("query", text=text, image=image) == "text" and not text.strip():
            raise UserError("the search text is empty")
        query = self.embed_text(text) if text is not None else self.embed_image(image)
        return self.search_vector(query, k, min_score)

    def query(self, text: str | None = None, image=None, k: int = 10, min_score: float | None = None,
              image_name: str | None = None) -> SearchResults:
        """`search`, as a `SearchResults` naming the query (`image_name` names an image given as bytes)."""
        hits = self.search(text=text, image=image, k=k, min_score=min_score)
        named = {"text": text} if text is not None else {"image": image_name or _image_name(image)}
        return SearchResults(named, len(self), hits)

    def search_vector(self, query: np.ndarray, k: int = 10, min_score: float | None = None
                      ) -> list[SearchHit]:
        """`search` with a ready query embedding (L2-normalised, the index's dimension)."""
        if k < 1:
            raise UserError(f"k must be at least 1, not {k}")
        if min_score is not None and not math.isfinite(min_score):
            raise UserError(f"the minimum score must be a finite number, not {min_score}")
        with self._lock, self._database_errors():
            store = self._synced_store(durable=False)
            if store is None or len(store) == 0:
                return []
            query = np.asarray(query, dtype=np.float32).reshape(1, -1)
            if query.shape[1] != store.dim:
                raise UserError(f"the query has {query.shape[1]} dimensions, the index {store.dim}")
            # A vector whose files were all removed by a concurrent writer has no hit: ask for a few more.
            scores, ids = store.search(query, k + 8)
            files = self.catalog.files_for_vectors(i for i in ids[0] if i >= 0)
        hits = []
        for score, vector_id in zip(scores[0], ids[0], strict=True):
            records = files.get(int(vector_id))
            if not records or (min_score is not None and score < min_score):
                continue
            first = records[0]
            hits.append(SearchHit(first.path, float(score), first.sha256, first.size, first.mtime_ns / 1e9,
                                  first.width, first.height, tuple(r.path for r in records[1:])))
        return hits[:k]

    def embed_text(self, text: str) -> np.ndarray:
        """The model's embedding of a text query."""
        return self.model.encode_texts([text])[0]

    def embed_image(self, image) -> np.ndarray:
        """The model's embedding of one image (path, bytes or PIL image); `ImageError` if unusable."""
        return embed_one_image(self.model, image)

    def paths(self) -> list[str]:
        """Every indexed path, sorted."""
        return sorted(self.catalog.files_under("/"))

    def close(self) -> None:
        """Release the catalog and the store."""
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
            self.catalog.close()

    def __enter__(self) -> ImageIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        with self._database_errors():
            return self.catalog.count_files()

    @contextmanager
    def _database_errors(self) -> Iterator[None]:
        # Damage past the header shows only when a damaged page is read; every write is a transaction
        # that rolls back, so the file is left as it was.
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise database_error(exc, self.catalog.path, "using the index") from exc
        except OSError as exc:
            error = storage_error(exc, self.folder, "writing the index")
            if error is None:
                raise
            raise error from exc

    def _resolve(self, paths: Iterable[str | os.PathLike]) -> tuple[list[str], list[str]]:
        """(files to index, indexed files to forget): folders are walked and pruned of deleted files."""
        files: dict[str, None] = {}
        gone: dict[str, None] = {}
        for item in paths:
            path = Path(item).expanduser()
            if path.is_dir():
                found = [absolute(p) for p in expand_paths([path])]
                files.update(dict.fromkeys(found))
                present = set(found)
                indexed = self.catalog.files_under(absolute(path))
                gone.update(dict.fromkeys(p for p in indexed if p not in present))
            elif path.exists():
                files[absolute(path)] = None
            elif self.catalog.file(absolute(path)) is not None:
                gone[absolute(path)] = None
            else:
                files.update(dict.fromkeys(absolute(p) for p in expand_paths([item])))  # a glob, or an error
        return list(files), [p for p in gone if p not in files]


def index_model(info: Mapping[str, str], clip_model: str | None = None, *, device: str | None = None,
                dtype: str | None = None, fallback: str | None = DEFAULT_CLIP,
                where: str | os.PathLike = "the index") -> ImageTextModel:
    """Load the CLIP an index uses: the one rule of `zeroshot index`/`search`, the server and `ImageIndex`.

    `info` is what the index recorded (`ImageIndex.info`; empty for a new index). The model is
    `clip_model` when given, else the model the index recorded, else `fallback` (zeroshot's default CLIP;
    None refuses instead, naming `where`). With dtype auto (the default) it loads in the dtype the index
    was built in, read from the recorded fingerprint, so new vectors and old never mix numerics. An
    explicit `clip_model` (or dtype) that is not the index's model is refused when the index gets it
    (`ImageIndex.use_model`), as vectors of two models cannot be compared.
    """
    name = clip_model or info.get("model_name") or fallback
    if name is None:
        raise UserError(f"{where}: the index is empty; give a CLIP model to add images")
    return load_clip(name, device=device, dtype=dtype, match_fingerprint=info.get("model_fingerprint"))


def embed_one_image(model: ImageTextModel, image) -> np.ndarray:
    """One image's L2-normalised embedding; raises `ImageError` with the reason if it cannot be used."""
    from zeroshot.vision.embed import embed_images

    _, embeddings, failures = embed_images(model, [image], progress=False)
    if failures:
        raise ImageError(failures[0][1])
    return embeddings[0]


def image_similarity(model: ImageTextModel, images: Sequence) -> np.ndarray:
    """Cosine similarities between images (paths, bytes or PIL images): an (n, n) matrix."""
    vectors = np.stack([embed_one_image(model, image) for image in images])
    return vectors @ vectors.T


class _WriteLock:
    """An exclusive lock on the index folder for the duration of a write (released if the process dies)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = None

    def __enter__(self) -> _WriteLock:
        try:
            import fcntl
        except ImportError:  # Windows: SQLite's own locking still keeps the catalog consistent
            return self
        try:
            self._handle = open(self.path, "a")  # noqa: SIM115
        except OSError as exc:
            raise (storage_error(exc, self.path.parent, "taking the write lock")
                   or UserError(f"{self.path.parent}: cannot write here ({exc.strerror})")) from exc
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._handle.close()
            self._handle = None
            raise UserError(f"{self.path.parent}: another process is writing this index; "
                            "try again when it finishes") from exc
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.close()


def _image_name(image) -> str:
    """How a query image is named in results: its path, else what kind of object it was."""
    if isinstance(image, str | os.PathLike):
        return str(image)
    return "uploaded image"
