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
    max_tokens: int = options.max_tokens(),
    temperature: float = options.temperature(),
    top_k: int = options.top_k(),
    top_p: float = options.top_p(),
    repetition_penalty: float = options.repetition_penalty(),
    num_beams: int = options.num_beams(),
    stop: list[str] = typer.Option(None, "--stop", help="Stop before this text; repeatable."),
    seed: int = options.seed("generate"),
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
    lengths: str = options.lengths(),
    output: Path = options.output_file("bench-lm"),
    quiet: bool = options.quiet(),
) -> None:
    """Load time and generation speed (--lengths new tokens) of each installed backend (the GPT-J cost
    table, on your model); writes the JSON to --output."""
    from zeroshot.errors import UserError
    from zeroshot.models.lm_bench import format_table, run_bench_lm, write_results
    from zeroshot.validation import split_ints, split_list

    # Parsed here; the rules (known backends, positive lengths) are run_bench_lm's, before it loads a model.
    token_counts = split_ints(lengths, "--lengths")
    names = split_list(backends, "--backends")
    rows, skipped = run_bench_lm(model, names, token_counts, progress=not quiet)
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
    models: list[str] = options.lm_model(),
    lengths: str = options.lengths(),
    max_tokens: int = options.max_tokens("bench-lm-ladder"),
    rounds: int = typer.Option(
        3, "--rounds", min=1, help="Alternating rounds (scoring, bare eval) per length."
    ),
    output: Path = options.output_file("bench-lm-ladder"),
    threads: int = options.threads(),
    quiet: bool = options.quiet(),
) -> None:
    """The cost table across model sizes: load, generation (--max-tokens for the gen tok/s column) and
    scoring tokens/s, memory; scoring against llama.cpp's bare prompt processing (`Llama.eval`) of the
    same tokens. Without --model, the built-in model and every installed ladder model (`make
    setup-ladder`) are timed."""
    import json

    from zeroshot.files import make_output_dir
    from zeroshot.models.ladder import installed_ladder
    from zeroshot.models.lm import GenerationConfig
    from zeroshot.models.lm_bench import bench_ladder_model, format_ladder_table
    from zeroshot.validation import split_ints

    GenerationConfig.from_options(max_tokens=max_tokens)  # --max-tokens: the decoding rule, before a load
    token_counts = split_ints(lengths, "--lengths", minimum=1)
    names: list[str | None] = list(models) if models else [None, *map(str, installed_ladder())]
    make_output_dir(output.parent)  # before the first model loads, not after its minutes of timing
    rows = []
    for name in names:
        rows.append(bench_ladder_model(name, token_counts, max_tokens, rounds, threads))
        if not quiet:  # each model's row as it finishes; the whole table follows on stdout
            print(format_ladder_table(rows[-1:]), file=sys.stderr)
        output.write_text(json.dumps({"rows": [r.to_dict() for r in rows]}, indent=2))  # kept as it goes
    print(format_ladder_table(rows))
    print(f"wrote {output}", file=sys.stderr)
