"""The models one server shares between all requests, and the threads that run them.

Each model gets exactly one worker thread: llama.cpp contexts (and a torch model used by several threads)
are not safe to share, and one thread per model serialises generation without any lock juggling. The
event loop never runs model code; it hands work to these threads and waits.

Models load lazily, on the thread that will use them, the first time a request needs them (or at
start-up with `preload`). A model that cannot be loaded answers 503, not 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from zeroshot.detect.detector import ZeroShotDetector
from zeroshot.errors import UserError
from zeroshot.models.loader import load_lm
from zeroshot.search.index import ImageIndex, index_model
from zeroshot.server.batching import MicroBatcher
from zeroshot.server.settings import ServerSettings, public_name
from zeroshot.text.classify import ZeroShotTextClassifier
from zeroshot.text.prompts import PromptTemplate
from zeroshot.validation import DEFAULT_CALIBRATE
from zeroshot.vision.classify import ZeroShotImageClassifier

T = TypeVar("T")


class Unavailable(UserError):
    """A capability this server cannot offer right now (a model that cannot be loaded): 503."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status_code=503)


@dataclass(frozen=True)
class TextTask:
    """What makes two text-classification requests share one classifier (and one batched LM call)."""

    labels: tuple[str, ...]
    description: str = ""
    demonstrations: tuple[tuple[str, str], ...] = ()
    template: PromptTemplate | None = None
    normalization: str = "sum"
    calibrate: str = DEFAULT_CALIBRATE  # checked: auto, on or off, so true and "on" share a classifier


@dataclass(frozen=True)
class ImageTask:
    """What makes two image-classification requests share one classifier (and one batched CLIP call)."""

    labels: tuple[str, ...]
    templates: tuple[str, ...] | None = None


@contextlib.contextmanager
def unprocessable() -> Iterator[None]:
    """Inside: a library check that refuses a request's content answers 422, as pydantic's checks do."""
    try:
        yield
    except UserError as exc:
        if exc.status_code != 400:
            raise
        raise UserError(str(exc), 422) from None


class _LRU(OrderedDict):
    """A small least-recently-used cache of built classifiers (class-weight matrices are costly)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_or_build(self, key: Hashable, build: Callable[[], T]) -> T:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = build()
        while len(self) > self.size:
            self.popitem(last=False)
        return value


class Resources:
    """Lazily loaded models, their worker threads, and the micro-batchers in front of them."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.lm_executor = ThreadPoolExecutor(1, thread_name_prefix="zeroshot-lm")
        self.clip_executor = ThreadPoolExecutor(1, thread_name_prefix="zeroshot-clip")
        self._lock = threading.Lock()
        self._lm = None
        self._performer = None
        self._clip = None
        self._index = None
        self._text_classifiers = _LRU(16)
        self._image_classifiers = _LRU(16)
        self._detectors = _LRU(8)
        self.text_batcher = MicroBatcher(self._classify_texts, self.lm_executor, settings.batch_window_ms,
                                         settings.max_batch_items, name="text-classify")
        self.image_batcher = MicroBatcher(self._classify_images, self.clip_executor, settings.batch_window_ms,
                                          settings.max_batch_items, name="image-classify")

    # --- running work on a model's own thread -------------------------------------------------------
    async def on_lm(self, work: Callable[[Any], T]) -> T:
        """`work(lm)` on the LM's thread (loading the LM first if needed)."""
        return await asyncio.get_running_loop().run_in_executor(self.lm_executor, lambda: work(self.lm()))

    async def on_clip(self, work: Callable[[Any], T]) -> T:
        """`work(clip_model)` on the CLIP thread."""
        return await asyncio.get_running_loop().run_in_executor(self.clip_executor,
                                                                lambda: work(self.clip()))

    async def on_index(self, work: Callable[[Any], T]) -> T:
        """`work(image_index)` on the CLIP thread (the index embeds queries with CLIP)."""
        return await asyncio.get_running_loop().run_in_executor(self.clip_executor,
                                                                lambda: work(self.index()))

    # --- models ------------------------------------------------------------------------------------
    def lm(self):
        """The shared language model (loaded on first call)."""
        if self._lm is None:
            with self._lock:
                if self._lm is None:
                    try:
                        self._lm = load_lm(self.settings.model, backend=self.settings.backend)
                    except (UserError, ImportError) as exc:  # ImportError: a backend half-installed
                        raise Unavailable(f"the language model could not be loaded: {exc}") from exc
        return self._lm

    def performer(self):
        """Binoculars' second LM (`--performer`), loaded on first call and checked against the LM's
        tokenizer; None when the server has none."""
        if self.settings.performer is None:
            return None
        if self._performer is None:
            observer = self.lm()
            with self._lock:
                if self._performer is None:
                    from zeroshot.audit.generated import check_same_tokenizer

                    try:
                        performer = load_lm(self.settings.performer, backend=self.settings.backend)
                        check_same_tokenizer(observer, performer)
                    except (UserError, ImportError) as exc:
                        raise Unavailable(f"the performer model could not be used: {exc}") from exc
                    self._performer = performer
        return self._performer

    def clip(self):
        """The shared CLIP model (loaded on first call): the `--db` index's model, by the rule the CLI
        follows too (`zeroshot.search.index.index_model`)."""
        if self._clip is None:
            with self._lock:
                if self._clip is None:
                    try:
                        self._clip = index_model(self._index_info(), self.settings.clip_model,
                                                 device=self.settings.device, dtype=self.settings.dtype)
                    except UserError as exc:
                        raise Unavailable(f"the CLIP model could not be loaded: {exc}") from exc
        return self._clip

    def _index_info(self) -> dict[str, str]:
        """What the `--db` index recorded (empty without one, or when it cannot be opened: `index()`
        then says why, and classification still works)."""
        if self.settings.db is None:
            return {}
        try:
            with ImageIndex(self.settings.db, create=False) as index:
                return index.info
        except UserError:
            return {}

    def index(self):
        """The image-search index in `--db` (opened on first call)."""
        if self.settings.db is None:
            raise Unavailable("image search is off: start the server with --db DIR (an index built by "
                              "`zeroshot index`)")
        if self._index is None:
            model = self.clip()
            with self._lock:
                if self._index is None:
                    try:
                        self._index = ImageIndex(self.settings.db, model, create=False)
                    except UserError as exc:
                        raise Unavailable(f"the image index could not be opened: {exc}") from exc
        return self._index

    def preload(self) -> None:
        """Load the LM and CLIP now, each on its own thread; report what failed instead of raising."""
        for executor, load in ((self.lm_executor, self.lm), (self.clip_executor, self.clip)):
            executor.submit(_quietly, load)

    def loaded(self) -> dict[str, Any]:
        """What is loaded now, for `/v1/info` (never loads anything)."""
        lm, clip = self._lm, self._clip
        return {
            "lm": None if lm is None else {"name": public_name(lm.name), "backend": lm.backend,
                                           "context_length": lm.context_length},
            "clip": None if clip is None else {"name": public_name(clip.name), "device": clip.device,
                                               "dtype": clip.dtype_name, "embedding_dim": clip.embedding_dim},
            "index": None if self._index is None else {"db": public_name(self.settings.db),
                                                       "images": len(self._index)},
        }

    # --- batched calls (run on the model threads) ---------------------------------------------------
    def text_classifier(self, task: TextTask) -> ZeroShotTextClassifier:
        """The classifier of `task`, built once and kept while recently used."""
        return self._text_classifiers.get_or_build(task, lambda: ZeroShotTextClassifier(
            self.lm(), list(task.labels), description=task.description,
            demonstrations=list(task.demonstrations) or None, template=task.template,
            normalization=task.normalization, calibrate=task.calibrate).fit())

    def _classify_texts(self, task: TextTask, texts: list[str]) -> list[Any]:
        return list(self.text_classifier(task).predict_proba(texts))

    def image_classifier(self, task: ImageTask) -> ZeroShotImageClassifier:
        """The classifier of `task`, built once and kept while recently used."""
        return self._image_classifiers.get_or_build(task, lambda: ZeroShotImageClassifier(
            self.clip(), list(task.labels), templates=list(task.templates) if task.templates else None,
            num_workers=1, cache_dir=False))  # kept in this LRU only: client label sets leave no files

    def _classify_images(self, task: ImageTask, images: list[Any]) -> list[Any]:
        return list(self.image_classifier(task).predict_proba(images))

    def detector(self, model: Any, queries: tuple[str, ...], examples: list,
                 threshold: float) -> ZeroShotDetector:
        """A detector for `queries` and example images ((name, image) pairs), reused while cached."""
        digest = hashlib.sha256()
        for _, image in examples:
            digest.update(f"{image.size}".encode())
            digest.update(image.tobytes())
        key = (queries, digest.hexdigest(), threshold)
        # Kept in this LRU only (`cache_dir=False`): a client's query set must not leave a file behind.
        return self._detectors.get_or_build(key, lambda: ZeroShotDetector(
            model, queries=queries, examples=[image for _, image in examples], threshold=threshold,
            cache_dir=False))

    async def close(self) -> None:
        await self.text_batcher.close()
        await self.image_batcher.close()
        self.lm_executor.shutdown(wait=False, cancel_futures=True)
        self.clip_executor.shutdown(wait=False, cancel_futures=True)


def _quietly(load: Callable[[], Any]) -> None:
    import logging

    try:
        load()
    except UserError as exc:
        logging.getLogger("zeroshot.server").warning("preload: %s", exc)
