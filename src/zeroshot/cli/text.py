"""Commands for text tasks: `demo`, `classify-text`, `eval-text`. Parse, call the library, print."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from zeroshot.cli import app, options
from zeroshot.errors import UserError
from zeroshot.validation import check_calibrate, check_labels


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
    n_articles: int = typer.Option(None, "--articles", show_default=False,
                                   help="How many held-out BBC News articles to classify [default: 24]."),
    shots: str = options.shots("demo"),
    seed: int = options.seed(),
    model: str = options.lm_model(),
    backend: str = options.lm_backend(),
) -> None:
    """Classify a few real BBC News articles zero-shot and few-shot (10 shots: two per topic) with the
    default model."""
    from zeroshot.eval.demo import DemoConfig, demo_epilogue, run_demo

    articles = {} if n_articles is None else {"n_articles": n_articles}  # None: the library's default
    # Checked when built: before the model loads.
    config = DemoConfig(**articles, shots=options.one_number(shots, "--shots"), seed=seed)
    lm = _load_lm(model, backend)
    result = run_demo(lm, config)
    for name, seconds in result.seconds.items():
        typer.echo(f"{name}: {config.n_articles} articles in {seconds:.1f} s", err=True)
    typer.echo(result.format())
    typer.echo(demo_epilogue(lm.name))


@app.command("classify-text")
def classify_text(
    texts: list[str] = typer.Argument(..., help="Texts to classify."),
    labels: str = options.labels_option("classify-text"),
    description: str = typer.Option("", help="Task description placed before the demonstrations."),
    examples: Path = typer.Option(None, "--examples", help='JSONL file of {"text", "label"} demonstrations.'),
    shots: str = options.shots(),
    seed: int = options.seed(),
    balanced: bool = options.balanced(),
    calibrate: str = options.calibrate(),
    normalization: str = options.normalization(),
    max_chars: int = options.max_chars(),
    output_format: str = options.output_format(),
    soft_prompt: Path = options.soft_prompt(),
    model: str = options.lm_model(),
    backend: str = options.lm_backend(),
) -> None:
    """Classify TEXTs into --labels by likelihood, zero-shot or few-shot (--shots demonstrations drawn
    from --examples); prints every label's probability. --calibrate auto chooses by leave-one-out on
    --examples; without them it scores plain and says so."""
    from zeroshot.text.classify import ZeroShotTextClassifier
    from zeroshot.text.scoring import check_normalization

    # The classifier checks these when it is fitted, after the model loaded; checked here too so that a
    # typo fails in a second, not after the load (the estimator keeps scikit-learn's check-at-fit).
    label_list = check_labels(labels)
    check_normalization(normalization)
    calibrate = check_calibrate(calibrate)
    n_shots = options.one_number(shots, "--shots")
    pool_texts: list[str] = []
    pool_labels: list[str] = []
    if examples is not None:
        from zeroshot.eval.tasks import load_examples

        for example in load_examples(examples):
            pool_texts.append(example.text)
            pool_labels.append(example.answer)
    elif n_shots:
        raise UserError("--shots needs demonstrations: pass --examples FILE.jsonl")
    n_shots = len(pool_texts) if n_shots is None else n_shots
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
        f"{', calibrated' if result.calibrate else ''}"
    )
    if clf.calibration_ is not None:
        typer.echo(f"calibration auto: {clf.calibration_.describe()}")
    for text, p in zip(texts, result.probabilities, strict=True):
        order = p.argsort()[::-1]
        table = "  ".join(f"{label_list[j]}={p[j]:.3f}" for j in order)
        typer.echo(f"{label_list[order[0]]}\t{text[:60]!r}\t{table}")


@app.command("eval-text")
def eval_text(
    task_name: str = typer.Argument(
        ..., metavar="TASK", help="A JSONL task file, or the built-in 'bbc-news'."
    ),
    shots: str = options.shots("eval-text"),
    seeds: int = options.seeds(),
    first_seed: int = typer.Option(0, "--first-seed", help="Seeds used are first-seed, first-seed+1, ..."),
    limit: int = options.limit(),
    calibrate: str = options.calibrate(),
    normalization: str = options.normalization(),
    balanced: bool = options.balanced(),
    max_chars: int = options.max_chars(),
    chat_template: bool = typer.Option(
        None, "--chat-template/--no-chat-template",
        help="Put description, demonstrations and query in the model's chat template (default: the task "
        "file's chat_template setting, else off).",
    ),
    max_tokens: int = options.max_tokens("eval-text"),
    log_samples: bool = typer.Option(
        False, "--log-samples", help="Write one JSONL record per document and run (prompt, scores, answer)."
    ),
    output_dir: Path = options.output_dir("eval-text"),
    soft_prompt: Path = options.soft_prompt(),
    models: list[str] = options.lm_model(),
    backend: str = options.lm_backend(),
    quiet: bool = options.quiet(),
) -> None:
    """Accuracy per K (mean and spread over seeds) on TASK; writes JSON and PNGs of accuracy against K
    (and, with several --model, against parameter count) into --output-dir. Several --model answer the
    same documents with the same seeds and demonstrations."""
    from zeroshot.eval.runs import EvalConfig, format_table
    from zeroshot.eval.scaling import evaluate_models, format_scaling_table, scaling_paths
    from zeroshot.eval.tasks import load_task

    # Every rule about the evaluation is checked here, by building its config, before any model loads.
    config = EvalConfig(load_task(task_name, max_chars=max_chars), shots=shots, seeds=seeds,
                        first_seed=first_seed, limit=limit, normalization=normalization, calibrate=calibrate,
                        balanced=balanced, chat_template=chat_template, max_new_tokens=max_tokens,
                        soft_prompt=soft_prompt)
    task = config.task
    if soft_prompt is not None:
        if models and len(models) > 1:
            raise UserError("--soft-prompt belongs to one base model: give at most one --model with it")
        base, backend = _soft_prompt_model(soft_prompt, models[0] if models else None, backend)
        models = [base]
    for name in models or []:
        from zeroshot.models.loader import resolve_model

        resolve_model(name)  # a missing second model fails before the first one runs for minutes

    def report_model(report) -> None:
        typer.echo(f"{task.name} ({task.kind}) with {Path(report.model).name}: {report.n_docs} documents, "
                   f"pool of {report.n_pool}, seeds {report.seeds}, {report.seconds:.0f} s")
        typer.echo(format_table(report))

    scaling = evaluate_models(models or [None], config, output_dir, lambda name: _load_lm(name, backend),
                              log_samples=log_samples, on_model=report_model, progress=not quiet)
    if len(scaling.reports) > 1:
        typer.echo(format_scaling_table(scaling))
    json_path, k_path, params_path = scaling_paths(task.name, output_dir)
    typer.echo(f"wrote {json_path}, {k_path} and {params_path}")
