"""Commands that train a sliver of a frozen LM: `tune-prompt` (soft prompts) and `recycle-lm`.

Parse, call the library (`zeroshot.train.soft_prompt`, `zeroshot.train.recycle`), print.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from zeroshot.cli import app, options
from zeroshot.errors import UserError


@app.command("tune-prompt")
def tune_prompt(
    task_name: str = typer.Argument(
        ..., metavar="TASK", help="A JSONL classification task file, or 'bbc-news'."
    ),
    output_dir: Path = options.output_dir("tune-prompt"),
    virtual_tokens: int = typer.Option(20, "--virtual-tokens", help="Number of trained virtual tokens."),
    init: str = options.init(),
    shots: str = options.shots(),
    epochs: int = options.epochs("tune-prompt"),
    lr: float = options.lr("tune-prompt"),
    batch_size: int = options.batch_size("tune-prompt"),
    patience: int = options.patience(),
    dev_fraction: float = options.dev_fraction("tune-prompt"),
    max_chars: int = options.max_chars(),
    seed: int = options.seed(),
    resume: bool = options.resume(),
    model: str = options.lm_model(),
    fmt: str = options.output_format(),
    quiet: bool = options.quiet(),
) -> None:
    """Train a soft prompt for TASK with the LM frozen; writes safetensors, JSON and loss.png.

    A .gguf --model (the default too) is de-quantised once into a cached float32 Hugging Face folder.
    """
    from zeroshot.eval.tasks import load_task
    from zeroshot.train.soft_prompt import SoftPromptConfig, sample_per_label, train_soft_prompt

    config = SoftPromptConfig(
        n_virtual_tokens=virtual_tokens,
        init=init,
        epochs=epochs,
        learning_rate=lr,
        batch_size=batch_size,
        patience=patience,
        dev_fraction=dev_fraction,
        seed=seed,
    )
    task = load_task(task_name, max_chars=max_chars)
    if task.kind != "classification":
        raise UserError(f"soft prompts are trained for classification tasks; {task.name} is {task.kind}")
    pool_labels = [d.target for d in task.pool]
    chosen = sample_per_label(pool_labels, options.one_number(shots, "--shots"), seed)
    result = train_soft_prompt(
        model,  # loaded by the trainer, after the checks that need no model
        [task.pool[i].query for i in chosen],
        [pool_labels[i] for i in chosen],
        output_dir,
        config,
        description=task.description,
        template=task.template,
        label_set=task.labels,
        resume=resume,
        progress=not quiet,
    )
    if fmt == "json":
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    dev = f", dev loss {result.dev_loss[result.best_epoch - 1]:.3f}" if result.dev_loss else ""
    typer.echo(
        f"soft prompt of {result.n_virtual_tokens} tokens: {result.trainable_params:,} of "
        f"{result.total_params:,} parameters trained ({result.trained_share:.4%}); "
        f"{result.n_train} train / {result.n_dev} dev examples; kept epoch {result.best_epoch} of "
        f"{result.epochs_run}{dev}; {result.seconds:.1f} s"
    )
    typer.echo(f"wrote {output_dir} (adapter_model.safetensors, soft_prompt.json, loss.png)")


@app.command("recycle-lm")
def recycle_lm_command(
    corpus: Path = typer.Argument(
        ..., help="A folder of UTF-8 .txt files (or one file) in the target language."
    ),
    output_dir: Path = options.output_dir("recycle-lm"),
    vocab_size: int = typer.Option(None, "--vocab-size", help="BPE vocabulary size (default: the base's)."),
    init: str = options.init("recycle-lm"),
    full: bool = typer.Option(
        False, "--full", help="Train the whole model (reference), not only embeddings."
    ),
    steps: int = typer.Option(1000, help="Optimizer steps."),
    seq_len: int = typer.Option(128, "--seq-len", help="Tokens per training window."),
    batch_size: int = options.batch_size("recycle-lm"),
    lr: float = options.lr("recycle-lm"),
    eval_paragraphs: int = typer.Option(
        100, "--eval-paragraphs", min=0, help="Held-out paragraphs scored at the end (0: none)."
    ),
    seed: int = options.seed(),
    resume: bool = options.resume(),
    model: str = options.lm_model(),
    device: str = options.device(),
    fmt: str = options.output_format(),
    quiet: bool = options.quiet(),
) -> None:
    """Recycle an English LM for CORPUS's language: new BPE, new embeddings, body frozen."""
    from zeroshot.train.recycle import (
        RecycleConfig,
        bits_per_byte,
        read_corpus,
        recycle_lm,
        split_corpus,
    )

    config = RecycleConfig(
        vocab_size=vocab_size,
        init=init,
        mode="full" if full else "embeddings",
        steps=steps,
        seq_len=seq_len,
        batch_size=batch_size,
        learning_rate=lr,
        seed=seed,
    )
    train, held_out = split_corpus(read_corpus(corpus))
    result = recycle_lm(
        model, train, output_dir, config, resume=resume, device=device, progress=not quiet
    )
    report = result.to_dict() | {"train_paragraphs": len(train), "held_out_paragraphs": len(held_out)}
    if eval_paragraphs and held_out:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        recycled = AutoModelForCausalLM.from_pretrained(output_dir)
        tokenizer = AutoTokenizer.from_pretrained(output_dir)
        report["held_out"] = bits_per_byte(
            recycled, tokenizer, held_out[:eval_paragraphs], seq_len=seq_len
        ).to_dict()
    if fmt == "json":
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(
        f"recycled {Path(result.base_model).name}: vocabulary {result.vocab_size:,}, {result.steps} steps "
        f"({result.mode}), {result.trainable_params:,} of {result.total_params:,} parameters trained; "
        f"{result.seconds:.1f} s; final loss {result.train_loss[-1]:.3f}"
    )
    if "held_out" in report:
        h = report["held_out"]
        typer.echo(
            f"held-out ({min(eval_paragraphs, len(held_out))} paragraphs): {h['bits_per_byte']:.3f} "
            f"bits/byte, {h['tokens_per_byte']:.3f} tokens/byte"
        )
    typer.echo(f"wrote {output_dir} (load it with --model {output_dir})")
