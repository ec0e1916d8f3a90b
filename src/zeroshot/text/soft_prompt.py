"""Soft prompts at prediction time (Lester et al. 2021): a few trained virtual token embeddings that a
frozen LM reads before every context.

A saved prompt is a folder: PEFT's `adapter_model.safetensors` + `adapter_config.json`, and our
`soft_prompt.json` (base model, its fingerprint, template, labels, training history). `load_soft_prompt`
reads it; `SoftPromptLM` is a `LanguageModel` that puts the virtual tokens in front of every context,
so `ZeroShotTextClassifier(..., soft_prompt=DIR)` scores labels with the unchanged likelihood scorer.

Training a prompt is `zeroshot.train.soft_prompt` (a higher layer: `text/` never imports `train/`). Its
names are still answered here for one release, with a `DeprecationWarning`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from zeroshot import _deprecated
from zeroshot.errors import UserError
from zeroshot.models.lm import check_scoring_request
from zeroshot.models.lm_transformers import TransformersLM, _cropped_copy, _new_cache
from zeroshot.text.prompts import PromptTemplate
from zeroshot.validation import check_tensors

META_FILE = "soft_prompt.json"
WEIGHTS_FILE = "adapter_model.safetensors"
FORMAT = "zeroshot-soft-prompt/1"

# The training half moved up to `zeroshot.train.soft_prompt`; the old names work until 0.3.
__getattr__ = _deprecated.forward_names(
    __name__,
    {
        name: "zeroshot.train.soft_prompt"
        for name in (
            "INITS",
            "SoftPromptConfig",
            "SoftPromptResult",
            "sample_per_label",
            "split_dev",
            "train_soft_prompt",
            "trainable_model",
        )
    },
)


# ---------------------------------------------------------------------------------------------------
# Identity of a base model


def model_fingerprint(model) -> str:
    """A short hash of a model's architecture and input embeddings: what a soft prompt is tied to.

    Two folders holding the same weights give the same fingerprint; a different base (or a recycled
    vocabulary) gives another, so a prompt is never silently used on a model it was not trained for.
    """
    weight = model.get_input_embeddings().weight.detach().to(torch.float32).cpu().contiguous()
    digest = hashlib.sha256()
    digest.update(f"{model.config.model_type}|{tuple(weight.shape)}".encode())
    digest.update(weight.numpy().tobytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------
# Loading and prediction


@dataclass
class SoftPrompt:
    """A trained prompt: its embeddings (n_virtual_tokens, hidden) and what it was trained with."""

    embeddings: torch.Tensor
    meta: dict
    folder: str

    @property
    def template(self) -> PromptTemplate:
        return PromptTemplate(**self.meta["template"])

    @property
    def base_model(self) -> str:
        return self.meta["base_model"]


def load_soft_prompt(folder: str | os.PathLike) -> SoftPrompt:
    """Read a soft prompt folder; `UserError` if it is not one."""
    from safetensors.torch import load_file

    path = Path(folder)
    meta_path, weights_path = path / META_FILE, path / WEIGHTS_FILE
    if not meta_path.is_file() or not weights_path.is_file():
        raise UserError(
            f"{path} is not a soft prompt folder (it needs {META_FILE} and {WEIGHTS_FILE}; "
            "make one with `zeroshot tune-prompt`)"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the soft prompt in {path}: {META_FILE}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{path} is not a soft prompt saved by this version of zeroshot")
    _check_meta(path, meta)  # before the weights: a bad record is refused without reading them
    try:
        tensors = load_file(str(weights_path))
    except Exception as exc:  # safetensors' own error type for a truncated, empty or foreign file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot read the soft prompt in {path}: {WEIGHTS_FILE}: {first}") from None
    embeddings = tensors.get("prompt_embeddings")
    if embeddings is not None and embeddings.dim() != 2:
        raise UserError(f"{path}/{WEIGHTS_FILE}: prompt_embeddings has shape {tuple(embeddings.shape)}, "
                        "not (virtual tokens, hidden size); train the prompt again")
    shape = (meta["n_virtual_tokens"], embeddings.shape[1]) if embeddings is not None else None
    check_tensors(tensors, {"prompt_embeddings": (shape, None)}, f"{path}/{WEIGHTS_FILE}",
                  "train the prompt again")
    return SoftPrompt(embeddings.float(), meta, str(path))


# What `train_soft_prompt` writes into soft_prompt.json and prediction reads back.
_META_TYPES = {"base_model": str, "base_fingerprint": str, "n_virtual_tokens": int, "labels": list,
               "template": dict}


def _check_meta(path: Path, meta: dict) -> None:
    """The record of a soft prompt, checked once on load: the fields prediction reads, with their types
    and values, so a tampered file fails here with one line and not mid-classification."""
    where = f"{path}/{META_FILE}"
    for key, kind in _META_TYPES.items():
        value = meta.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise UserError(f"{where}: {key} is {value!r}, not a {kind.__name__}; train the prompt again")
    if not 1 <= meta["n_virtual_tokens"] <= 100_000:
        raise UserError(f"{where}: n_virtual_tokens is {meta['n_virtual_tokens']}; train the prompt again")
    if not all(isinstance(label, str) for label in meta["labels"]):
        raise UserError(f"{where}: labels must be strings; train the prompt again")
    fields = {"query", "answer", "example_separator", "head", "special"}
    if not set(meta["template"]) <= fields:
        raise UserError(f"{where}: the template has unknown fields "
                        f"{sorted(set(meta['template']) - fields)}; train the prompt again")
    try:
        PromptTemplate(**meta["template"])
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    except TypeError as exc:
        raise UserError(f"{where}: the template cannot be read ({exc}); train the prompt again") from None


def soft_prompt_model(folder: str | os.PathLike, model: str | None, backend: str = "auto") -> tuple[str, str]:
    """The (model, backend) to load for a soft prompt: its recorded base unless `model` is given.

    A prompt trained on the built-in model's de-quantised folder finds that folder again (exported on
    demand) when the recorded path is not on this machine.
    """
    prompt = load_soft_prompt(folder)
    if backend == "llama.cpp":
        raise UserError("a soft prompt runs on the transformers backend: drop --backend llama.cpp")
    if model is not None:
        return model, "transformers"
    base = prompt.base_model
    if not Path(base).exists() and Path(base).name.startswith("SmolLM2-135M-Instruct"):
        from zeroshot.models.dequantise import gguf_to_hf_folder

        base = str(gguf_to_hf_folder())
    return base, "transformers"


class SoftPromptLM(TransformersLM):
    """A frozen transformers LM that reads the soft prompt's virtual tokens before every context.

    Only scoring is offered (what classification needs); the continuations are scored on the key/value
    cache of prompt + context exactly as `TransformersLM` does.
    """

    def __init__(self, base: TransformersLM, prompt: SoftPrompt) -> None:
        super().__init__(base.model, base.tokenizer, base.name)
        fingerprint = model_fingerprint(base.model)
        if fingerprint != prompt.meta.get("base_fingerprint"):
            raise UserError(
                f"the soft prompt in {prompt.folder} was trained for the base model {prompt.base_model} "
                f"(fingerprint {prompt.meta.get('base_fingerprint')}), not for {base.name} "
                f"(fingerprint {fingerprint}): pass --model {prompt.base_model} or train a prompt for it"
            )
        hidden = int(base.model.get_input_embeddings().weight.shape[1])
        if prompt.embeddings.shape[1] != hidden:  # a fingerprint match makes this impossible, unless forged
            raise UserError(f"the soft prompt in {prompt.folder} is {prompt.embeddings.shape[1]} wide, but "
                            f"{base.name}'s embeddings are {hidden}: train a prompt for this model")
        self.prompt = prompt
        self.n_virtual = int(prompt.embeddings.shape[0])
        dtype = base.model.get_input_embeddings().weight.dtype
        self._prompt_embeds = prompt.embeddings.to(device=self.device, dtype=dtype)[None]
        self.name = base.name

    def _embeds(self, ids: list[int]) -> torch.Tensor:
        tokens = self.model.get_input_embeddings()(torch.tensor([ids], device=self.device))
        return torch.cat([self._prompt_embeds, tokens], dim=1)

    @torch.inference_mode()
    def continuation_logprobs(
        self, context: Sequence[int], continuations: Sequence[Sequence[int]], reuse_cache: bool = True
    ) -> list[np.ndarray]:
        context = [int(t) for t in context]
        conts = [[int(t) for t in c] for c in continuations]
        check_scoring_request(context, conts, self.context_length - self.n_virtual)
        with self._lock:
            if not reuse_cache:
                return [self._score_from_scratch(context, c) for c in conts]
            out = self.model(
                inputs_embeds=self._embeds(context),
                past_key_values=_new_cache(self.model),
                use_cache=True,
                logits_to_keep=1,
            )
            next_logp = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
            cache = _cropped_copy(out.past_key_values, self.n_virtual + len(context))
            return self._score_on_cache(cache, self.n_virtual + len(context), next_logp, conts)

    def _score_from_scratch(self, context: list[int], cont: list[int]) -> np.ndarray:
        if not cont:
            return np.zeros(0)
        logits = self.model(inputs_embeds=self._embeds(context + cont[:-1]), use_cache=False).logits
        logp = torch.log_softmax(logits[0, self.n_virtual + len(context) - 1 :].float(), dim=-1)
        return logp[torch.arange(len(cont)), torch.tensor(cont)].double().cpu().numpy()

    def generate(self, prompt, config=None):  # noqa: D102 - refused, see class docstring
        raise UserError("a soft prompt is for classification; generate without --soft-prompt")

    def stream(self, prompt, config=None):  # noqa: D102
        raise UserError("a soft prompt is for classification; generate without --soft-prompt")


def attach_soft_prompt(lm, soft_prompt: str | os.PathLike | SoftPrompt) -> SoftPromptLM:
    """`lm` reading the soft prompt first; `UserError` if the prompt was trained for another model."""
    prompt = soft_prompt if isinstance(soft_prompt, SoftPrompt) else load_soft_prompt(soft_prompt)
    if isinstance(lm, SoftPromptLM):
        lm = TransformersLM(lm.model, lm.tokenizer, lm.name)
    if not isinstance(lm, TransformersLM):
        raise UserError(
            "a soft prompt needs the transformers backend: load the model with --backend "
            f"transformers (got {getattr(lm, 'backend', type(lm).__name__)})"
        )
    return SoftPromptLM(lm, prompt)
