"""Commands for text tasks: `demo`, `classify-text`, `eval-text`. Parse, call the library, print."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from zeroshot.cli import app, options
from zeroshot.errors import UserError
from zeroshot.validation import check_labels, split_ints

NORMALIZATION_HELP = "Score normalisation: sum (total log-prob), token (per token) or char (per character)."
SOFT_PROMPT_HELP = "A soft prompt folder from `zeroshot tune-prompt` (loads its base model unless --model)."


def _soft_prompt_model(soft_prompt: Path | None, model: str | None, backend: str) -> tuple[str | None, str]:
    if soft_prompt is None:
        return model, backend
    from zeroshot.text.soft_prompt import soft_prompt_model

    return soft_prompt_model(soft_prompt, model, backend)


def _load_lm(model: str | None, backend: str):
    from zeroshot.models.loader import load_lm

    lm = load_lm(model, backend=backend)
    typer.echo(
        f"model: {Path(lm.name).name}  backend: {lm.backend}  (loaded in {lm.load_seconds:.1f} s)", err=True
    )
    return lm


@app.command("demo")
def demo(
    n_articles: int = typer.Option(5, "--articles", help="How many held-out BBC News articles to classify."),
    shots: int = typer.Option(
        5, "--shots", help="Demonstrations in the few-shot prompt (one per topic at 5)."
    ),
    seed: int = typer.Option(0, help="Seed for drawing the demonstrations."),
    model: str = options.lm_model(),
    backend: str = options.lm_backend(),
) -> None:
    """Classify a few real BBC News articles zero-shot and few-shot with the default model."""
    from zeroshot.eval.demo import demo_epilogue, run_demo

    if n_articles < 1:  # before the model loads
        raise UserError(f"--articles must be at least 1, got {n_articles}")
    result = run_demo(_load_lm(model, backend), n_articles, shots, seed)
    for name, seconds in result.seconds.items():
        typer.echo(f"{name}: {n_articles} articles in {seconds:.1f} s", err=True)
    typer.echo(result.format())
    typer.echo(demo_epilogue(model))


@app.command("classify-text")
def classify_text(
    texts: list[str] = typer.Argument(..., help="Texts to classify."),
    labels: str = typer.Option(..., "--labels", help="Comma-separated labels, e.g. sport,politics,business."),
    description: str = typer.Option("", help="Task description placed before the demonstrations."),
    examples: Path = typer.Option(None, "--examples", help='JSONL file of {"text", "label"} demonstrations.'),
    shots: int = typer.Option(
        None, "--shots", help="How many demonstrations to draw from --examples (default: all)."
    ),
    seed: int = typer.Option(0, help="Seed for drawing the demonstrations."),
    balanced: bool = typer.Option(False, help="Draw demonstrations class-balanced."),
    calibrate: bool = typer.Option(
        False, help="Subtract each label's score given the content-free input 'N/A'."
    ),
    normalization: str = typer.Option("sum", help=NORMALIZATION_HELP),
    max_chars: int = typer.Option(
        None, "--max-chars", min=1, help="Shorten each text to this many characters."
    ),
    output_format: str = options.output_format(),
    soft_prompt: Path = typer.Option(None, "--soft-prompt", help=SOFT_PROMPT_HELP),
    model: str = options.lm_model(),
    backend: str = options.lm_backend(),
) -> None:
    """Classify TEXTs into --labels by likelihood, zero-shot or few-shot; prints every label's probability."""
    from zeroshot.text.classify import ZeroShotTextClassifier
    from zeroshot.text.scoring import check_normalization

    label_list = check_labels(labels)
    check_normalization(normalization)
    pool_texts: list[str] = []
    pool_labels: list[str] = []
    if examples is not None:
        from zeroshot.eval.tasks import load_examples

        for example in load_examples(examples):
            pool_texts.append(example.text)
            pool_labels.append(example.answer)
    elif shots:
        raise UserError("--shots needs demonstrations: pass --examples FILE.jsonl")
    n_shots = len(pool_texts) if shots is None else shots
    model, backend = _soft_prompt_model(soft_prompt, model, backend)
    lm = _load_lm(model, backend)
    clf = ZeroShotTextClassifier(
        lm,
        label_list,
        description,
        normalization=normalization,
        calibrate=calibrate,
        max_chars=max_chars,
        n_shots=n_shots,
        seed=seed,
        balanced=balanced,
        soft_prompt=soft_prompt,
    )
    clf.fit(pool_texts or None, pool_labels or None)
    result = clf.classify(texts)
    if output_format == "json":
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    typer.echo(
        f"{result.shots} demonstrations (seed {seed}), normalization {normalization}"
        f"{', calibrated' if calibrate else ''}"
    )
    for text, p in zip(texts, result.probabilities, strict=True):
        order = p.argsort()[::-1]
        table = "  ".join(f"{label_list[j]}={p[j]:.3f}" for j in order)
        typer.echo(f"{label_list[order[0]]}\t{text[:60]!r}\t{table}")


@app.command("eval-text")
def eval_text(
    task_name: str = typer.Argument(
        ..., metavar="TASK", help="A JSONL task file, or the built-in 'bbc-news'."
    ),
    shots: str = typer.Option("0,1,2,4,8", help="Comma-separated numbers of demonstrations K."),
    seeds: int = typer.Option(5, help="Seeds per K (K=0 runs once: it has no randomness)."),
    first_seed: int = typer.Option(0, "--first-seed", help="Seeds used are first-seed, first-seed+1, ..."),
    limit: int = typer.Option(
        None, min=1, help="Evaluate only the first N documents of the evaluation split."
    ),
    calibrate: bool = typer.Option(False, help="Also report calibrated accuracy (content-free input 'N/A')."),
    normalization: str = typer.Option("sum", help=NORMALIZATION_HELP),
    balanced: bool = typer.Option(False, help="Draw demonstrations class-balanced."),
    max_chars: int = typer.Option(
        None, "--max-chars", min=1, help="Shorten each text field to N characters (bbc-news default: 400)."
    ),
    chat_template: bool = typer.Option(
        None, "--chat-template/--no-chat-template",
        help="Put description, demonstrations and query in the model's chat template (default: the task "
        "file's chat_template setting, else off).",
    ),
    max_tokens: int = typer.Option(
        32, "--max-tokens", min=1, help="Most tokens generated per free-form answer."
    ),
    log_samples: bool = typer.Option(
        False, "--log-samples", help="Write one JSONL record per document and run (prompt, scores, answer)."
    ),
    output_dir: Path = options.output_dir("eval-text", "Folder for the JSON results and the PNG plots."),
    soft_prompt: Path = typer.Option(None, "--soft-prompt", help=SOFT_PROMPT_HELP),
    models: list[str] = typer.Option(
        None, "--model", help=options.LM_HELP + " Repeat for several models: same documents, seeds and "
        "demonstrations for each, plus the scaling figures."
    ),
    backend: str = options.lm_backend(),
    quiet: bool = options.quiet("No progress bar."),
) -> None:
    """Accuracy per K (mean and spread over seeds) on TASK; writes JSON and PNGs of accuracy against K
    (and, with several --model, against parameter count)."""
    from zeroshot.eval.scaling import evaluate_models, format_scaling_table, scaling_paths
    from zeroshot.eval.tasks import load_task
    from zeroshot.text.scoring import check_normalization

    shot_list = split_ints(shots, "--shots", minimum=0)
    check_normalization(normalization)
    task = load_task(task_name, max_chars=max_chars)
    task.check_shots(shot_list)  # before any model loads: bad input fails fast
    if soft_prompt is not None:
        if models and len(models) > 1:
            raise UserError("--soft-prompt belongs to one base model: give at most one --model with it")
        base, backend = _soft_prompt_model(soft_prompt, models[0] if models else None, backend)
        models = [base]
    for name in models or []:
        from zeroshot.models.loader import resolve_model

        resolve_model(name)  # a missing file fails before the first model runs for minutes

    def report_model(report) -> None:
        from zeroshot.eval.runs import format_table

        typer.echo(f"{task.name} ({task.kind}) with {Path(report.model).name}: {report.n_docs} documents, "
                   f"pool of {report.n_pool}, seeds {report.seeds}, {report.seconds:.0f} s")
        typer.echo(format_table(report))

    scaling = evaluate_models(
        models or [None], task, output_dir, lambda name: _load_lm(name, backend), log_samples=log_samples,
        on_model=report_model, shots=shot_list, seeds=seeds, limit=limit, normalization=normalization,
        calibrate=calibrate, balanced=balanced, first_seed=first_seed, progress=not quiet,
        chat_template=chat_template, max_new_tokens=max_tokens, soft_prompt=soft_prompt,
    )
    if len(scaling.reports) > 1:
        typer.echo(format_scaling_table(scaling))
    json_path, k_path, params_path = scaling_paths(task.name, output_dir)
    typer.echo(f"wrote {json_path}, {k_path} and {params_path}")
