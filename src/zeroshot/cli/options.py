"""One name for one thing in every command: the shared options, and the old spellings still accepted.

Each shared option is declared once here and used by every command that takes it, so `--model` is
always the language model, `--clip-model` always the image-text model, `-o/--output` always a file,
`--output-dir` always a folder, `--format` always how results are printed and `-q/--quiet` always
quiet. `OPTION_NAMES` is the vocabulary a test checks every command's options against.

Spellings from before the names were unified keep working for one release: `rewrite_deprecated`
turns them into today's names and says so in one line on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

LM_HELP = ("Language model: .gguf file, Hugging Face folder or hub id "
           "(default: the built-in SmolLM2-135M-Instruct).")
BACKEND_HELP = "Language-model backend: auto (llama.cpp when it works here), transformers or llama.cpp."
CLIP_HELP = ("Image-text (CLIP-style) model: hub id or local Hugging Face folder "
             "(default: openai/clip-vit-base-patch32).")
FORMATS = ("text", "json")


def lm_model() -> Any:
    """`--model`: the language model."""
    return typer.Option(None, "--model", help=LM_HELP)


def lm_backend() -> Any:
    """`--backend`: the language-model backend."""
    return typer.Option("auto", "--backend", help=BACKEND_HELP)


def clip_model() -> Any:
    """`--clip-model`: the image-text model."""
    return typer.Option(None, "--clip-model", help=CLIP_HELP)


def output_file(help: str, default: Path | None = None) -> Any:
    """`-o/--output`: one file to write."""
    return typer.Option(default, "--output", "-o", help=help)


def output_dir(command: str, help: str) -> Any:
    """`--output-dir`: the folder a command writes its files into (default `results/<command>`)."""
    return typer.Option(default_output_dir(command), "--output-dir", help=help)


def default_output_dir(command: str) -> Path:
    """Where a command writes its folder of results unless told otherwise: `results/<command>`."""
    return Path("results") / command


def output_format(default: str = "text", choices: tuple[str, ...] = FORMATS) -> Any:
    """`--format`: how results are printed on stdout."""

    def check(value: str) -> str:
        if value not in choices:
            raise typer.BadParameter(f"choose one of {', '.join(choices)}, not {value!r}")
        return value

    return typer.Option(default, "--format", help=f"How to print the results: {', '.join(choices)}.",
                        callback=check)


def device() -> Any:
    """`--device`: where the image-text model runs."""
    return typer.Option(None, "--device", help="cpu, cuda, cuda:1 ... (default: cuda if available).")


def dtype() -> Any:
    """`--dtype`: the number format of the image-text model (default auto, or `$ZEROSHOT_DTYPE`)."""
    from zeroshot.models.dtype import DTYPE_HELP

    def check(value: str | None) -> str | None:
        from zeroshot.errors import UserError
        from zeroshot.models.dtype import check_dtype

        try:
            return None if value is None else check_dtype(value)
        except UserError as exc:
            raise typer.BadParameter(str(exc)) from exc

    return typer.Option(None, "--dtype", help=DTYPE_HELP, callback=check, show_default=False)


TEMPLATES_HELP = ("Prompt templates for the class names: a shipped set (imagenet, imagenet-simple, cifar, "
                  "textures, food, pets, flowers, cars, photo, pipeline), a file (one per line, or JSON), or "
                  "one template with {} or {label}.")


def templates(default: str | None = "imagenet") -> Any:
    """`-t/--templates`: the prompt templates class names go into."""
    return typer.Option(default, "--templates", "-t", help=TEMPLATES_HELP)


def labels_option() -> Any:
    """`-l/--labels`: comma-separated class names (or give `--labels-file`)."""
    return typer.Option(None, "--labels", "-l", help="Comma-separated class names: cat,dog,car.")


def labels_file() -> Any:
    """`--labels-file`: class names from a file."""
    return typer.Option(None, "--labels-file", help="File of class names, one per line (or a JSON list).")


def quiet(help: str = "No progress bar and no table.") -> Any:
    """`-q/--quiet`."""
    return typer.Option(False, "--quiet", "-q", help=help)


# Every long option any command may have, and what it means. A new command reuses these names; a
# test fails when an option is missing here, so a new name is a deliberate decision.
OPTION_NAMES: dict[str, str] = {
    "--model": "the language model", "--backend": "the language-model backend",
    "--clip-model": "the image-text model", "--text-model": "the text tower to train from",
    "--output": "one file to write", "--output-dir": "a folder to write into",
    "--format": "how results are printed", "--quiet": "no progress bar or table",
    "--seed": "the random seed", "--seeds": "how many seeds", "--first-seed": "the first seed",
    "--limit": "use only the first N items", "--labels": "comma-separated class names",
    "--labels-file": "class names from a file", "--templates": "prompt templates",
    "--top-k": "how many best results", "--batch-size": "items per model call",
    "--workers": "decoding threads", "--device": "cpu or cuda", "--dtype": "number format",
    "--threads": "CPU threads", "--max-tokens": "most tokens to generate",
    "--temperature": "sampling temperature", "--top-p": "nucleus sampling mass",
    "--repetition-penalty": "repetition penalty", "--num-beams": "beam search width",
    "--stop": "stop sequence", "--chat": "use the chat template", "--stream": "print tokens as decoded",
    "--description": "task description", "--examples": "demonstrations file", "--shots": "demonstrations K",
    "--balanced": "class-balanced demonstrations", "--calibrate": "content-free calibration",
    "--normalization": "score normalisation", "--max-chars": "shorten texts", "--articles": "how many",
    "--backends": "backends to compare", "--lengths": "token counts", "--db": "index folder",
    "--store": "vector store", "--milvus-uri": "Milvus URI", "--image": "query image",
    "--min-score": "lowest score kept", "--methods": "few-shot methods", "--encoder": "sentence encoder",
    "--test-fraction": "held-out share", "--split-seed": "split seed", "--query": "what to find",
    "--example": "example image", "--example-label": "example's name", "--example-mode": "how examples score",
    "--threshold": "lowest score kept", "--example-threshold": "lowest example similarity",
    "--proposals": "region proposals", "--method": "proposal method", "--search-mode": "search mode",
    "--context-padding": "context around boxes", "--nms-iou": "NMS overlap", "--no-cache": "skip the cache",
    "--host": "address", "--port": "port", "--image-root": "readable image folder", "--api-key": "API key",
    "--allowed-origins": "CORS origins", "--max-upload-mb": "largest upload", "--max-pixels": "largest image",
    "--max-prompt-chars": "longest prompt", "--preload": "load models at start", "--mode": "CLIP or LiT",
    "--image-size": "image size", "--patch-size": "patch size", "--image-width": "ViT width",
    "--image-layers": "ViT layers", "--image-heads": "ViT heads", "--projection": "embedding size",
    "--epochs": "epochs", "--lr": "learning rate", "--text-lr": "text tower learning rate",
    "--dev-fraction": "dev share", "--eval-every": "steps per evaluation", "--patience": "early stopping",
    "--checkpoint-every": "steps between checkpoints", "--max-steps": "step budget", "--resume": "continue",
    "--overwrite": "replace", "--occupations": "occupations", "--template": "prompt template",
    "--female": "female words", "--male": "male words", "--bootstrap": "bootstrap samples",
    "--compare-naive": "also the naive way", "--groups": "groups", "--samples": "samples",
    "--text": "overlaid text", "--sizes": "sizes", "--positions": "positions", "--colours": "colours",
    "--opacities": "opacities", "--variants": "variants", "--grid": "grid", "--added": "added labels",
    "--child": "child labels", "--group-column": "group column", "--path-column": "path column",
    "--rounds": "timing rounds", "--chat-template": "use the model's chat template",
    "--log-samples": "one JSONL record per document", "--captioner": "a trained captioner folder",
    "--embeddings": "precomputed embeddings", "--text-encoder": "sentence encoder", "--texts-file": "texts",
    "--layers": "mapper layers", "--mapper": "mlp or transformer", "--prefix-length": "LM prefix vectors",
    "--soft-prompt": "a trained soft prompt folder", "--virtual-tokens": "soft prompt length",
    "--init": "how new embeddings start", "--vocab-size": "tokenizer vocabulary size",
    "--full": "train the whole model", "--steps": "optimizer steps", "--seq-len": "tokens per window",
    "--eval-paragraphs": "held-out paragraphs scored", "--engine": "where the work runs",
    "--ray-address": "Ray cluster address", "--ray-workers": "Ray embedding actors",
    "--help": "help",
}

# Spellings from before the names were unified: command -> {old option: its replacement tokens}.
_CLIP_RENAMES = {"--model": ("--clip-model",), "-m": ("--clip-model",)}
_FOLDER_RENAMES = {"--out": ("--output-dir",)}
DEPRECATED: dict[str, dict[str, tuple[str, ...]]] = {
    "classify-text": {"--json": ("--format", "json")},
    "eval-text": _FOLDER_RENAMES,
    "generate": {"--beams": ("--num-beams",)},
    "caption": {"--beams": ("--num-beams",)},
    "bench-lm": {"--out": ("--output",)},
    "classify-images": _CLIP_RENAMES,
    "index": _CLIP_RENAMES,
    "search": {**_CLIP_RENAMES, "-f": ("--format",)},
    "similarity": _CLIP_RENAMES,
    "fewshot-curve": _FOLDER_RENAMES,
    "detect": {**_CLIP_RENAMES, "--out": ("--output-dir",), "-o": ("--output-dir",)},
    "train-clip": {"--out": ("--output-dir",), "-o": ("--output-dir",)},
    "audit lm-gender": _FOLDER_RENAMES,
    "audit lm-sentiment": _FOLDER_RENAMES,
    "audit typographic": {**_CLIP_RENAMES, **_FOLDER_RENAMES},
    "audit denigration": {**_CLIP_RENAMES, **_FOLDER_RENAMES},
}


def rewrite_deprecated(argv: list[str]) -> list[str]:
    """`argv` with old option spellings replaced by today's, one notice on stderr for each."""
    words = [word for word in argv[:2] if not word.startswith("-")]
    command = " ".join(words[:2]) if " ".join(words[:2]) in DEPRECATED else (words[0] if words else "")
    renames = DEPRECATED.get(command)
    if not renames:
        return argv
    start = len(command.split())
    out = list(argv[:start])
    for index, word in enumerate(argv[start:], start):
        if word == "--":  # everything after is an argument, never an option
            return out + argv[index:]
        name, sep, value = word.partition("=")
        new = renames.get(name)
        if new is None:
            out.append(word)
            continue
        print(f"warning: `zeroshot {command} {name}` is deprecated and will be removed in the next release; "
              f"use {' '.join(new)}", file=sys.stderr)
        out.extend(new[:-1] + ((new[-1] + sep + value),) if sep else new)
    return out
