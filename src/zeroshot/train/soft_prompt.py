"""Soft prompt tuning (Lester et al. 2021): learn a few virtual token embeddings, keep the LM frozen.

PEFT's `PromptTuningConfig` holds the prompt (initialised from the task description's token
embeddings, or randomly) and prepends it to every input during training. The loss is the negative
log-likelihood of the correct label's tokens after the same prompt the in-context classifier builds
(template, no demonstrations): the verbalizer is the label words.

This is the training half; the prompt's format, loading and the `LanguageModel` that reads it
(`SoftPromptLM`) are `zeroshot.text.soft_prompt`, which every classifier can use without training code.
The checkpoint (after every epoch: the prompt, the best prompt, the optimizer and the random states)
is the training runtime's (`zeroshot.train.checkpoint`), so `--resume` continues a killed run where it
stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from zeroshot.errors import UserError
from zeroshot.files import write_atomic
from zeroshot.models.lm_transformers import TransformersLM
from zeroshot.text.prompts import PromptBuilder, PromptTemplate
from zeroshot.text.soft_prompt import FORMAT, META_FILE, SoftPromptLM, model_fingerprint
from zeroshot.train.checkpoint import Checkpoint, plot_losses, run_fingerprint

INITS = ("text", "random")



@dataclass
class SoftPromptConfig:
    """How a soft prompt is trained. `dev_fraction` of the examples (stratified) stop training early
    when every label has at least `min_dev_per_label` / `dev_fraction` examples; else all train and the
    run lasts `epochs`."""

    n_virtual_tokens: int = 20
    init: str = "text"  # "text": the task description's token embeddings; "random"
    epochs: int = 20
    learning_rate: float = 0.03
    batch_size: int = 4  # examples per optimizer step
    patience: int = 3  # epochs without a better dev loss before stopping
    dev_fraction: float = 0.25
    min_dev_per_label: int = 1
    max_steps: int | None = None  # stop after this many optimizer steps in all (a compute budget)
    seed: int = 0

    def check(self) -> None:
        if self.n_virtual_tokens < 1:
            raise UserError(f"the number of virtual tokens must be at least 1, got {self.n_virtual_tokens}")
        if self.init not in INITS:
            raise UserError(f"unknown prompt init {self.init!r}: choose text or random")
        if self.epochs < 1:
            raise UserError(f"epochs must be at least 1, got {self.epochs}")
        if not self.learning_rate > 0:
            raise UserError(f"the learning rate must be > 0, got {self.learning_rate}")
        if self.batch_size < 1:
            raise UserError(f"the batch size must be at least 1, got {self.batch_size}")
        if self.max_steps is not None and self.max_steps < 1:
            raise UserError(f"max steps must be at least 1, got {self.max_steps}")
        if self.patience < 1:
            raise UserError(f"patience must be at least 1 epoch, got {self.patience}")
        if not 0 <= self.dev_fraction < 1:
            raise UserError(f"the dev fraction must be in [0, 1), got {self.dev_fraction}")


@dataclass
class SoftPromptResult:
    """What a training run produced: where it is, how it went, what it cost."""

    output_dir: str
    base_model: str
    n_virtual_tokens: int
    trainable_params: int
    total_params: int
    n_train: int
    n_dev: int
    epochs_run: int
    best_epoch: int
    stopped_early: bool
    train_loss: list[float] = field(default_factory=list)
    dev_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    seed: int = 0

    @property
    def trained_share(self) -> float:
        return self.trainable_params / self.total_params

    def to_dict(self) -> dict:
        return {**asdict(self), "trained_share": self.trained_share}


def split_dev(labels: Sequence[str], fraction: float, seed: int, min_per_label: int = 1) -> tuple[list, list]:
    """Indices (train, dev): `fraction` of every label held out, or no dev set if a label is too small."""
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    n_dev = {label: int(math.floor(len(idx) * fraction)) for label, idx in by_label.items()}
    if (
        fraction <= 0
        or min(n_dev.values()) < min_per_label
        or any(len(idx) - n_dev[label] < 1 for label, idx in by_label.items())
    ):
        return list(range(len(labels))), []
    rng = random.Random(seed)
    train, dev = [], []
    for label in sorted(by_label):
        idx = list(by_label[label])
        rng.shuffle(idx)
        dev.extend(idx[: n_dev[label]])
        train.extend(idx[n_dev[label] :])
    return sorted(train), sorted(dev)


def _run_key(base_fp: str, config: SoftPromptConfig, texts, labels, template: PromptTemplate) -> str:
    """What makes two runs the same run (a `--resume` folder must match it)."""
    data = hashlib.sha256()
    for text, label in zip(texts, labels, strict=True):
        data.update(text.encode("utf-8", "surrogatepass") + b"\0" + label.encode() + b"\1")
    return run_fingerprint(base_fp, asdict(config), asdict(template), data.hexdigest())


def train_soft_prompt(
    lm: TransformersLM | str | os.PathLike | None,
    texts: Sequence[str],
    labels: Sequence[str],
    output_dir: str | os.PathLike,
    config: SoftPromptConfig | None = None,
    description: str = "",
    template: PromptTemplate | None = None,
    label_set: Sequence[str] | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[int, float, float | None], None] | None = None,
) -> SoftPromptResult:
    """Train a soft prompt classifying `texts` into `labels` with the frozen `lm`; save it to `output_dir`.

    `lm` is a loaded transformers-backend LM, or a model name, path or GGUF (None: the built-in model),
    which is loaded (a GGUF de-quantised once) after every check that needs no model has passed.

    `description` initialises the prompt (with `init="text"`) and is recorded; at prediction time the
    soft prompt takes its place. `template` is the query/answer format (recorded, reused when loaded).
    """
    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model
    from tqdm.auto import tqdm

    config = config or SoftPromptConfig()
    config.check()
    texts, labels = [str(t) for t in texts], [str(y) for y in labels]
    if not texts or len(texts) != len(labels):
        raise UserError("soft prompt training needs at least one text and one label per text")
    label_set = sorted(set(labels)) if label_set is None else list(label_set)
    unknown = sorted(set(labels) - set(label_set))
    if unknown:
        raise UserError(f"training labels not among the labels: {', '.join(unknown)}")
    if config.init == "text" and not description.strip():
        raise UserError(
            "--init text needs a task description to copy embeddings from: give one, or use --init random"
        )
    template = template or PromptTemplate()
    out = Path(output_dir)
    if lm is None or isinstance(lm, str | os.PathLike):
        # The half of the resume rule that needs no model, before the model loads.
        Checkpoint(out, None).check_start(resume, finished=META_FILE)
        from zeroshot.models.loader import load_lm

        lm = load_lm(trainable_model(lm), backend="transformers")
    if not isinstance(lm, TransformersLM) or isinstance(lm, SoftPromptLM):
        raise UserError(
            "soft prompts train through the transformers backend: load the model with "
            "--backend transformers (a .gguf is de-quantised to a Hugging Face folder first)"
        )
    model = lm.model
    base_fp = model_fingerprint(model)
    run_key = _run_key(base_fp, config, texts, labels, template)
    checkpoint = Checkpoint(out, run_key, what="model, data or settings")
    state = checkpoint.check_start(resume, finished=META_FILE)  # before PEFT wraps the model
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(config.seed)
    peft_config = PromptTuningConfig(
        task_type=TaskType.CAUSAL_LM,
        num_virtual_tokens=config.n_virtual_tokens,
        prompt_tuning_init=PromptTuningInit.TEXT if config.init == "text" else PromptTuningInit.RANDOM,
        prompt_tuning_init_text=description if config.init == "text" else None,
        tokenizer_name_or_path=lm.name if config.init == "text" else None,
    )
    peft_model = get_peft_model(model, peft_config)
    prompt_param = peft_model.prompt_encoder["default"].embedding.weight
    trainable = int(sum(p.numel() for p in peft_model.parameters() if p.requires_grad))
    total = int(sum(p.numel() for p in model.parameters())) + trainable
    optimizer = torch.optim.AdamW([prompt_param], lr=config.learning_rate, weight_decay=0.0)

    builder = PromptBuilder(lm, "", [], template)
    answer_ids = {y: lm.tokenize(template.format_answer(y)) for y in label_set}
    encoded = []
    for text, label in zip(texts, labels, strict=True):
        context = builder.build(" ".join(text.split()), len(answer_ids[label])).context
        if len(context) + len(answer_ids[label]) + config.n_virtual_tokens > lm.context_length:
            raise UserError(
                f"a training text of {len(context)} tokens plus the soft prompt exceeds the "
                f"model's context of {lm.context_length} tokens: shorten the texts"
            )
        encoded.append((context, answer_ids[label]))
    train_idx, dev_idx = split_dev(labels, config.dev_fraction, config.seed, config.min_dev_per_label)

    history = {"train": [], "dev": []}
    best = (math.inf, 0)
    started_epoch, seconds = 0, 0.0
    if state is not None:
        saved = checkpoint.restore(optimizer).get("prompt", {})
        best_prompt = prompt_param.detach().clone()
        checkpoint.load_into({"prompt": prompt_param, "best": best_prompt}, saved)
        history, started_epoch, seconds = state["history"], state["epoch"], state["seconds"]
        best = (state["best_loss"], state["best_epoch"])
    else:
        best_prompt = prompt_param.detach().clone()

    model.eval()  # dropout off: the body is a fixed function of its input
    rng = random.Random(config.seed)
    for _ in range(started_epoch):  # the shuffles a resumed run would have drawn
        rng.shuffle(list(train_idx))
    steps_per_epoch = math.ceil(len(train_idx) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    done_steps = min(started_epoch * steps_per_epoch, total_steps)
    bar = tqdm(total=total_steps, initial=done_steps, desc="soft prompt", unit="step", disable=not progress)
    stopped_early = False
    epoch = started_epoch
    try:
        while epoch < config.epochs and done_steps < total_steps:
            if dev_idx and epoch - best[1] >= config.patience and epoch > 0:
                stopped_early = True
                break
            started = time.perf_counter()
            order = list(train_idx)
            rng.shuffle(order)
            losses = []
            for start in range(0, len(order), config.batch_size):
                if done_steps >= total_steps:
                    break
                done_steps += 1
                batch = order[start : start + config.batch_size]
                optimizer.zero_grad(set_to_none=True)
                total_loss = 0.0
                for i in batch:
                    loss = _example_loss(peft_model, *encoded[i]) / len(batch)
                    loss.backward()
                    total_loss += loss.item()
                optimizer.step()
                losses.append(total_loss)
                bar.update(1)
                bar.set_postfix_str(f"epoch {epoch + 1} loss {total_loss:.3f}")
            history["train"].append(float(np.mean(losses)))
            dev_loss = None
            if dev_idx:
                with torch.no_grad():
                    dev_loss = float(
                        np.mean([_example_loss(peft_model, *encoded[i]).item() for i in dev_idx])
                    )
                history["dev"].append(dev_loss)
            epoch += 1
            watched = dev_loss if dev_loss is not None else history["train"][-1]
            if watched < best[0]:
                best = (watched, epoch)
                best_prompt = prompt_param.detach().clone()
            seconds += time.perf_counter() - started
            checkpoint.save(
                {"epoch": epoch, "history": history, "best_loss": best[0], "best_epoch": best[1],
                 "seconds": seconds},
                {"prompt": {"prompt": prompt_param, "best": best_prompt}},
                optimizer,
            )
            if on_epoch is not None:
                on_epoch(epoch, history["train"][-1], dev_loss)
    finally:
        bar.close()

    with torch.no_grad():
        prompt_param.copy_(best_prompt)
    peft_model.save_pretrained(str(out))
    _fix_adapter_config(out, lm.name)
    result = SoftPromptResult(
        output_dir=str(out),
        base_model=lm.name,
        n_virtual_tokens=config.n_virtual_tokens,
        trainable_params=trainable,
        total_params=total,
        n_train=len(train_idx),
        n_dev=len(dev_idx),
        epochs_run=epoch,
        best_epoch=best[1],
        stopped_early=stopped_early,
        train_loss=history["train"],
        dev_loss=history["dev"],
        seconds=seconds,
        seed=config.seed,
    )
    meta = {
        "format": FORMAT,
        "base_model": lm.name,
        "base_fingerprint": base_fp,
        "n_virtual_tokens": config.n_virtual_tokens,
        "labels": list(label_set),
        "description": description,
        "template": asdict(template),
        "config": asdict(config),
        "run_key": run_key,
        "result": result.to_dict(),
    }
    write_atomic(out / META_FILE, json.dumps(meta, indent=2) + "\n")
    epochs = list(range(1, len(history["train"]) + 1))
    plot_losses(
        out / "loss.png",
        {"train": (epochs, history["train"]), "dev": (epochs[: len(history["dev"])], history["dev"])},
        "epoch",
        "-log p(label) per example",
        kept_at=best[1],
    )
    _unwrap(peft_model)
    checkpoint.remove()
    return result


def _unwrap(peft_model) -> None:
    """Leave the base model as it was (PEFT's prompt tuning adds no layers, only froze parameters)."""
    for p in peft_model.get_base_model().parameters():
        p.requires_grad_(False)


def _fix_adapter_config(out: Path, base: str) -> None:
    path = out / "adapter_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base
    config["tokenizer_name_or_path"] = base if config.get("tokenizer_name_or_path") else None
    write_atomic(path, json.dumps(config, indent=2) + "\n")


def _example_loss(peft_model, context: list[int], answer: list[int]) -> torch.Tensor:
    """-log p(answer | soft prompt + context): logits are kept only where answer tokens are predicted."""
    ids = torch.tensor([context + answer], device=peft_model.device)
    out = peft_model(input_ids=ids, attention_mask=torch.ones_like(ids), logits_to_keep=len(answer) + 1)
    logits = out.logits[0, :-1].float()
    targets = torch.tensor(answer, device=logits.device)
    return torch.nn.functional.cross_entropy(logits, targets, reduction="sum")



def trainable_model(model: str | os.PathLike | None) -> str:
    """A Hugging Face folder or hub id for `model`: a GGUF (None: the built-in one) is de-quantised once."""
    from zeroshot.models.dequantise import gguf_to_hf_folder
    from zeroshot.models.loader import resolve_model

    kind, location = resolve_model(model)
    return str(gguf_to_hf_folder(location)) if kind == "gguf" else location


def sample_per_label(labels: Sequence[str], k: int | None, seed: int) -> list[int]:
    """Indices of `k` examples of every label (all of them when `k` is None), seeded and nested in k."""
    if k is None:
        return list(range(len(labels)))
    if k < 1:
        raise UserError(f"--shots must be at least 1 example per label, got {k}")
    rng = random.Random(seed)
    chosen = []
    for label in sorted(set(labels)):
        members = [i for i, y in enumerate(labels) if y == label]
        if len(members) < k:
            raise UserError(
                f"the label {label!r} has only {len(members)} training examples, fewer than --shots {k}"
            )
        rng.shuffle(members)
        chosen.extend(members[:k])
    return sorted(chosen)
