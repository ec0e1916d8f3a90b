"""Few-shot learning on frozen embeddings: scikit-learn estimators that never touch the encoder.

`ZeroShotHead` (label-prompt prior), `LinearProbe` (CLIP-paper probe), `KernelAdapter` (functional
gradient descent in an RKHS from the prior), `TipAdapter` (training-free cache model); save and load
them with `save_estimator` / `load_estimator` (safetensors, no pickle). See docs/fewshot.md.
"""

from zeroshot.fewshot._validation import FewShotInputError
from zeroshot.fewshot.kernel_adapter import KernelAdapter
from zeroshot.fewshot.linear_probe import LinearProbe
from zeroshot.fewshot.persistence import load_estimator, save_estimator
from zeroshot.fewshot.tip_adapter import TipAdapter
from zeroshot.fewshot.zero_shot_head import ZeroShotHead

__all__ = [
    "FewShotInputError",
    "KernelAdapter",
    "LinearProbe",
    "TipAdapter",
    "ZeroShotHead",
    "load_estimator",
    "save_estimator",
]
