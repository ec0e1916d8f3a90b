"""zeroshot: zero-shot and few-shot learning with frozen pre-trained Transformers (GPT-style LMs, CLIP).

The public API, importable from the package root::

    from zeroshot import load_lm, ZeroShotTextClassifier
    lm = load_lm()                                   # the default model (`zeroshot models` marks it)
    ZeroShotTextClassifier(lm, ["sport", "politics"]).predict(["The match ended 2-1."])

Names are imported on first use (PEP 562), so `import zeroshot` stays fast and pulls in neither torch
nor llama.cpp until a model is asked for.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from zeroshot import _deprecated

_deprecated.install()  # `zeroshot.vision.search` and the other pre-0.2 paths, with a warning

try:
    __version__ = version("zeroshot")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

# name -> the module that defines it (one line per public name; the README imports these).
_PUBLIC = {
    "UserError": "zeroshot.errors",
    # language models
    "GenerationConfig": "zeroshot.models.lm",
    "LanguageModel": "zeroshot.models.lm",
    "load_lm": "zeroshot.models.loader",
    "register_backend": "zeroshot.models.registry",
    "gguf_to_hf_folder": "zeroshot.models.dequantise",
    "load_sentence_encoder": "zeroshot.models.sentence",
    # CLIP-style models
    "ImageTextModel": "zeroshot.models.clip",
    "load_clip": "zeroshot.models.clip",
    # text tasks
    "ZeroShotTextClassifier": "zeroshot.text.classify",
    "MultipleChoiceScorer": "zeroshot.text.classify",
    # vision tasks
    "ZeroShotImageClassifier": "zeroshot.vision.classify",
    "text_classifier": "zeroshot.vision.classify",
    "get_templates": "zeroshot.vision.templates",
    "ImageIndex": "zeroshot.search.index",
    "ZeroShotDetector": "zeroshot.detect.detector",
    "RegionProposer": "zeroshot.detect.proposals",
    "CocoBuilder": "zeroshot.detect.coco",
    "TrainConfig": "zeroshot.train.clip",
    "train_clip": "zeroshot.train.clip",
    # few-shot adapters on frozen embeddings
    "KernelAdapter": "zeroshot.fewshot",
    "LinearProbe": "zeroshot.fewshot",
    "TipAdapter": "zeroshot.fewshot",
    "ZeroShotHead": "zeroshot.fewshot",
    "save_estimator": "zeroshot.fewshot",
    "load_estimator": "zeroshot.fewshot",
    # evaluation
    "load_task": "zeroshot.eval.tasks",
}

__all__ = [  # the names of _PUBLIC, spelled out for linters (a test checks they agree)
    "__version__", "UserError", "GenerationConfig", "LanguageModel", "load_lm", "register_backend",
    "gguf_to_hf_folder", "load_sentence_encoder", "ImageTextModel", "load_clip",
    "ZeroShotTextClassifier", "MultipleChoiceScorer", "ZeroShotImageClassifier", "text_classifier",
    "get_templates", "ImageIndex", "ZeroShotDetector", "RegionProposer", "CocoBuilder", "TrainConfig",
    "train_clip", "KernelAdapter", "LinearProbe", "TipAdapter", "ZeroShotHead", "save_estimator",
    "load_estimator", "load_task",
]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'zeroshot' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for editors and type checkers: the same names, imported eagerly
    from zeroshot.detect.coco import CocoBuilder
    from zeroshot.detect.detector import ZeroShotDetector
    from zeroshot.detect.proposals import RegionProposer
    from zeroshot.errors import UserError
    from zeroshot.eval.tasks import load_task
    from zeroshot.fewshot import (
        KernelAdapter,
        LinearProbe,
        TipAdapter,
        ZeroShotHead,
        load_estimator,
        save_estimator,
    )
    from zeroshot.models.clip import ImageTextModel, load_clip
    from zeroshot.models.dequantise import gguf_to_hf_folder
    from zeroshot.models.lm import GenerationConfig, LanguageModel
    from zeroshot.models.loader import load_lm
    from zeroshot.models.registry import register_backend
    from zeroshot.models.sentence import load_sentence_encoder
    from zeroshot.search.index import ImageIndex
    from zeroshot.text.classify import MultipleChoiceScorer, ZeroShotTextClassifier
    from zeroshot.train.clip import TrainConfig, train_clip
    from zeroshot.vision.classify import ZeroShotImageClassifier, text_classifier
    from zeroshot.vision.templates import get_templates
