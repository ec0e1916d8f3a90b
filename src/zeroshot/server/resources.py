"""The models one server shares between all requests, and the threads that run them.

Each model gets exactly one worker thread: llama.cpp contexts (and a torch model used by several threads)
are not safe to share, and one thread per model serialises generation without any lock juggling. The
event loop never runs model code; it hands work to these threads and waits.

Models load lazily, on the thread that will use them, the first time a request needs them (or at
start-up with `preload`). A capability whose module is not installed answers 503, not 500.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from zeroshot.errors import UserError
from zeroshot.server.batching import MicroBatcher
from zeroshot.server.settings import ServerSettings

T = TypeVar("T")


class Unavailable(UserError):
    """A capability this server cannot offer right now (module not installed, model not loadable): 503."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status_code=503)


def require(module: str, attribute: str, what: str) -> Any:
    """`module.attribute`, or `Unavailable` naming the missing capability."""
    try:
        return getattr(importlib.import_module(module), attribute)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            raise Unavailable(f"capability not installed: {what} needs {module}, which this installation "
                              f"does not have") from exc
        raise
    except AttributeError as exc:
        raise Unavailable(f"capability not installed: {module} has no {attribute} ({what})") from exc


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
            load_lm = require("zeroshot.models.loader", "load_lm", "text generation and classification")
            with self._lock:
                if self._lm is None:
                    try:
                        self._lm = load_lm(self.settings.model, backend=self.settings.backend)
                    except (UserError, ImportError) as exc:  # ImportError: a backend half-installed
                        raise Unavailable(f"the language model could not be loaded: {exc}") from exc
        return self._lm

    def clip(self):
        """The shared CLIP model (loaded on first call)."""
        if self._clip is None:
            load_clip = require("zeroshot.models.clip", "load_clip", "image classification")
            with self._lock:
                if self._clip is None:
                    from zeroshot.models.clip import DEFAULT_CLIP

                    try:
                        self._clip = load_clip(self.settings.clip_model or DEFAULT_CLIP, self.settings.device)
                    except UserError as exc:
                        raise Unavailable(f"the CLIP model could not be loaded: {exc}") from exc
        return self._clip

    def index(self):
        """The image-search index in `--db` (opened on first call)."""
        if self.settings.db is None:
            raise Unavailable("image search is off: start the server with --db DIR (an index built by "
                              "`zeroshot index`)")
        if self._index is None:
            image_index = require("zeroshot.vision.search", "ImageIndex", "image search")
            model = self.clip()
            with self._lock:
                if self._index is None:
                    try:
                        self._index = image_index(self.settings.db, model, create=False)
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
            "lm": None if lm is None else {"name": lm.name, "backend": lm.backend,
                                           "context_length": lm.context_length},
            "clip": None if clip is None else {"name": clip.name, "device": clip.device,
                                               "embedding_dim": clip.embedding_dim},
            "index": None if self._index is None else {"db": str(self.settings.db),
                                                       "images": len(self._index)},
        }

    # --- batched calls (run on the model threads) ---------------------------------------------------
    def _classify_texts(self, key: Hashable, texts: list[str]) -> list[Any]:
        labels, description, demonstrations, template, normalization, calibrate = key
        classifier_class = require("zeroshot.text.classify", "ZeroShotTextClassifier", "text classification")
        prompt_template = require("zeroshot.text.prompts", "PromptTemplate", "text classification")
        lm = self.lm()
        classifier = self._text_classifiers.get_or_build(key, lambda: classifier_class(
            lm, list(labels), description=description,
            demonstrations=[tuple(pair) for pair in demonstrations] or None,
            template=None if template is None else prompt_template(*template),
            normalization=normalization, calibrate=calibrate))
        return list(classifier.predict_proba(texts))

    def _classify_images(self, key: Hashable, images: list[Any]) -> list[Any]:
        labels, templates = key
        classifier_class = require("zeroshot.vision.classify", "ZeroShotImageClassifier",
                                   "image classification")
        model = self.clip()
        classifier = self._image_classifiers.get_or_build(key, lambda: classifier_class(
            model, list(labels), templates=list(templates) if templates else None, num_workers=1,
            cache_dir=False))  # kept in this LRU only: label sets sent by clients leave no files
        return list(classifier.predict_proba(images))

    def detector(self, detector_class: type, model: Any, queries: tuple[str, ...], examples: list,
                 threshold: float) -> Any:
        """A detector for `queries` and example images ((name, image) pairs), reused while cached."""
        digest = hashlib.sha256()
        for _, image in examples:
            digest.update(f"{image.size}".encode())
            digest.update(image.tobytes())
        return self._detectors.get_or_build((queries, digest.hexdigest(), threshold), lambda: detector_class(
            model, queries=queries, examples=[image for _, image in examples], threshold=threshold))

    async def close(self) -> None:
        await self.text_batcher.close()
        await self.image_batcher.close()
        self.lm_executor.shutdown(wait=False, cancel_futures=True)
        self.clip_executor.shutdown(wait=False, cancel_futures=True)


def public_name(name: str) -> str:
    """How a model is named to clients: a local path only by its last part, never the server's folders."""
    return Path(name).name if ("/" in name and Path(name).exists()) or Path(name).is_absolute() else name


def _quietly(load: Callable[[], Any]) -> None:
    import logging

    try:
        load()
    except UserError as exc:
        logging.getLogger("zeroshot.server").warning("preload: %s", exc)
