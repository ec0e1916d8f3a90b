"""`zeroshot generate` and `zeroshot bench-lm`: text generation and the inference-cost table."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from zeroshot.cli import app

MODEL_HELP = "Hub id, local folder or .gguf file (default: SmolLM2-135M)."


@app.command("generate")
def generate_command(
    prompt: str = typer.Argument(..., help="Text to continue (raw completion unless --chat)."),
    model: str = typer.Option(None, "--model", help=MODEL_HELP),
    backend: str = typer.Option("auto", "--backend", help="auto, transformers or llama.cpp."),
    max_tokens: int = typer.Option(64, "--max-tokens", help="Most tokens to generate."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 is greedy decoding."),
    top_k: int = typer.Option(0, "--top-k", help="Sample from the k likeliest tokens (0: off)."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling mass (1: off)."),
    repetition_penalty: float = typer.Option(1.0, "--repetition-penalty", help="1 is off."),
    beams: int = typer.Option(1, "--beams", help="Beam search width (transformers only)."),
    stop: list[str] = typer.Option(None, "--stop", help="Stop before this text; repeatable."),
    seed: int = typer.Option(None, "--seed", help="Seed for sampling (drawn and printed if not given)."),
    chat: bool = typer.Option(False, "--chat", help="Apply the model's chat template."),
    stream: bool = typer.Option(True, "--stream/--no-stream", help="Print tokens as they are decoded."),
) -> None:
    """Continue PROMPT with a language model."""
    from zeroshot.errors import UserError
    from zeroshot.models.lm import GenerationConfig, load_lm

    config = GenerationConfig(max_new_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                              repetition_penalty=repetition_penalty, num_beams=beams, stop=list(stop or []),
                              seed=seed, chat=chat)
    config.validate()
    if not prompt.strip():
        raise UserError("the prompt is empty: give some text to continue")
    lm = load_lm(model, backend=backend)
    print(f"model: {Path(lm.name).name}  backend: {lm.backend}  loaded in {lm.load_seconds:.1f}s",
          file=sys.stderr)
    if stream:
        for piece in lm.stream(prompt, config):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    else:
        print(lm.generate(prompt, config))
    if lm.last_seed is not None:
        print(f"seed: {lm.last_seed}", file=sys.stderr)


@app.command("bench-lm")
def bench_lm_command(
    model: str = typer.Option(None, "--model", help=MODEL_HELP),
    backends: str = typer.Option("transformers,llama.cpp", "--backends", help="Comma-separated backends."),
    lengths: str = typer.Option("32,128,512", "--lengths", help="Comma-separated numbers of new tokens."),
    out: Path = typer.Option(None, "--out", help="JSON to write (default: bench/results/bench_lm.json)."),
) -> None:
    """Load time and generation speed of each installed backend (the GPT-J cost table, on your model)."""
    from zeroshot.errors import UserError
    from zeroshot.models.lm_bench import format_table, run_bench_lm, write_results

    try:
        token_counts = [int(x) for x in lengths.split(",") if x.strip()]
    except ValueError as exc:
        raise UserError(f"--lengths must be comma-separated integers, got {lengths!r}") from exc
    names = [b.strip() for b in backends.split(",") if b.strip()]
    rows, skipped = run_bench_lm(model, names, token_counts)
    if not rows:  # nothing was measured: a result file would only record the failure as data
        reasons = "; ".join(f"{name}: {reason}" for name, reason in skipped.items())
        raise UserError(f"no backend could run, nothing written ({reasons})")
    print(format_table(rows))
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}", file=sys.stderr)
    path = write_results(rows, skipped, out or Path("bench/results/bench_lm.json"))
    print(f"wrote {path}", file=sys.stderr)


@app.command("bench-lm-ladder")
def bench_lm_ladder_command(
    models: list[str] = typer.Option(
        None, "--model", help="GGUF to time; repeatable (default: the built-in model and every installed "
        "ladder model, see `make setup-ladder`)."
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
) -> None:
    """The cost table across model sizes: load, generation and scoring tokens/s, memory; scoring against
    llama.cpp's bare prompt processing (`Llama.eval`) of the same tokens."""
    import json

    from zeroshot.errors import UserError
    from zeroshot.models.ladder import installed_ladder
    from zeroshot.models.lm_bench import bench_ladder_model, format_ladder_table

    try:
        token_counts = [int(x) for x in lengths.split(",") if x.strip()]
    except ValueError as exc:
        raise UserError(f"--lengths must be comma-separated integers, got {lengths!r}") from exc
    names: list[str | None] = list(models) if models else [None, *map(str, installed_ladder())]
    rows = []
    for name in names:
        rows.append(bench_ladder_model(name, token_counts, max_tokens, rounds))
        print(format_ladder_table(rows[-1:]), file=sys.stderr)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({"rows": [r.to_dict() for r in rows]}, indent=2))  # kept as it goes
    print(format_ladder_table(rows))
    print(f"wrote {output}", file=sys.stderr)
