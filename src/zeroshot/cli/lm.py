"""`zeroshot generate` and `zeroshot bench-lm`: text generation and the inference-cost table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from zeroshot.cli import app, options


@app.command("generate")
def generate_command(
    prompt: str = typer.Argument(..., help="Text to continue (raw completion unless --chat)."),
    model: str = options.lm_model(),
    backend: str = options.lm_backend(),
    max_tokens: int = typer.Option(64, "--max-tokens", help="Most tokens to generate."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 is greedy decoding."),
    top_k: int = typer.Option(0, "--top-k", help="Sample from the k likeliest tokens (0: off)."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling mass (1: off)."),
    repetition_penalty: float = typer.Option(1.0, "--repetition-penalty", help="1 is off."),
    num_beams: int = typer.Option(1, "--num-beams", help="Beam search width (transformers only)."),
    stop: list[str] = typer.Option(None, "--stop", help="Stop before this text; repeatable."),
    seed: int = typer.Option(None, "--seed", help="Seed for sampling (drawn and printed if not given)."),
    chat: bool = typer.Option(False, "--chat", help="Apply the model's chat template."),
    stream: bool = typer.Option(True, "--stream/--no-stream", help="Print tokens as they are decoded."),
    output_format: str = options.output_format(),
) -> None:
    """Continue PROMPT with a language model."""
    from zeroshot.errors import UserError
    from zeroshot.models.lm import GenerationConfig
    from zeroshot.models.loader import load_lm

    config = GenerationConfig.from_options(max_tokens=max_tokens, temperature=temperature, top_k=top_k,
                                           top_p=top_p, repetition_penalty=repetition_penalty,
                                           num_beams=num_beams, stop=stop, seed=seed, chat=chat)
    if not prompt.strip():
        raise UserError("the prompt is empty: give some text to continue")
    lm = load_lm(model, backend=backend)
    print(f"model: {Path(lm.name).name}  backend: {lm.backend}  loaded in {lm.load_seconds:.1f}s",
          file=sys.stderr)
    if output_format == "json":
        print(json.dumps(lm.complete(prompt, config).to_dict(), indent=2))
        return
    from zeroshot.text.completion import empty_completion_note

    text = ""
    if stream:
        for piece in lm.stream(prompt, config):
            text += piece
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    else:
        text = lm.generate(prompt, config)
        print(text)
    if not text:
        print(empty_completion_note(lm, config), file=sys.stderr)
    if lm.last_seed is not None:
        print(f"seed: {lm.last_seed}", file=sys.stderr)


@app.command("bench-lm")
def bench_lm_command(
    model: str = options.lm_model(),
    backends: str = typer.Option("transformers,llama.cpp", "--backends", help="Comma-separated backends."),
    lengths: str = typer.Option("32,128,512", "--lengths", help="Comma-separated numbers of new tokens."),
    output: Path = options.output_file("JSON file to write.", Path("results/bench-lm.json")),
) -> None:
    """Load time and generation speed of each installed backend (the GPT-J cost table, on your model)."""
    from zeroshot.errors import UserError
    from zeroshot.models.lm_bench import format_table, run_bench_lm, write_results
    from zeroshot.validation import split_ints, split_list

    token_counts = split_ints(lengths, "--lengths", minimum=1)
    names = split_list(backends, "--backends")
    rows, skipped = run_bench_lm(model, names, token_counts)
    if not rows:  # nothing was measured: a result file would only record the failure as data
        reasons = "; ".join(f"{name}: {reason}" for name, reason in skipped.items())
        raise UserError(f"no backend could run, nothing written ({reasons})")
    print(format_table(rows))
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}", file=sys.stderr)
    path = write_results(rows, skipped, output)
    print(f"wrote {path}", file=sys.stderr)


@app.command("bench-lm-ladder")
def bench_lm_ladder_command(
    models: list[str] = typer.Option(
        None, "--model", help=options.LM_HELP + " Repeatable; without it, the built-in model and every "
        "installed ladder model (`make setup-ladder`) are timed."
    ),
    lengths: str = typer.Option("32,128,512", "--lengths", help="Comma-separated prompt lengths to score."),
    max_tokens: int = typer.Option(
        16, "--max-tokens", min=1, help="Tokens generated for the gen tok/s column."
    ),
    rounds: int = typer.Option(
        3, "--rounds", min=1, help="Alternating rounds (scoring, bare eval) per length."
    ),
    output: Path = typer.Option(
        Path("bench/results/bench_lm_ladder.json"), "-o", "--output", help="JSON to write."
    ),
    threads: int = typer.Option(
        None, "--threads", min=1, help="CPU threads for both sides (default: llama-cpp-python's; on a busy "
        "machine 1 keeps threads from waiting on each other)."
    ),
) -> None:
    """The cost table across model sizes: load, generation and scoring tokens/s, memory; scoring against
    llama.cpp's bare prompt processing (`Llama.eval`) of the same tokens."""
    import json

    from zeroshot.files import make_output_dir
    from zeroshot.models.ladder import installed_ladder
    from zeroshot.models.lm_bench import bench_ladder_model, format_ladder_table
    from zeroshot.validation import split_ints

    token_counts = split_ints(lengths, "--lengths", minimum=1)
    names: list[str | None] = list(models) if models else [None, *map(str, installed_ladder())]
    make_output_dir(output.parent)  # before the first model loads, not after its minutes of timing
    rows = []
    for name in names:
        rows.append(bench_ladder_model(name, token_counts, max_tokens, rounds, threads))
        print(format_ladder_table(rows[-1:]), file=sys.stderr)
        output.write_text(json.dumps({"rows": [r.to_dict() for r in rows]}, indent=2))  # kept as it goes
    print(format_ladder_table(rows))
    print(f"wrote {output}", file=sys.stderr)
