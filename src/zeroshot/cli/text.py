"""Commands for text tasks: `demo`, `classify-text`, `eval-text`. Parse, call the library, print."""

from __future__ import annotations

import json
import time
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
    from zeroshot.eval.tasks import bbc_news_task
    from zeroshot.text.classify import ZeroShotTextClassifier
    from zeroshot.text.prompts import sample_demonstrations

    if n_articles < 1:
        raise UserError(f"--articles must be at least 1, got {n_articles}")
    task = bbc_news_task()
    docs = task.docs[:n_articles]
    task.check_shots([shots])
    lm = _load_lm(model, backend)
    demos = sample_demonstrations(task.demonstration_pool(), shots, seed, balanced=True)
    texts = [d.query for d in docs]
    answers = {}
    for name, examples in (("zero-shot", []), (f"{shots}-shot", demos)):
        clf = ZeroShotTextClassifier(
            lm, task.labels, task.description, examples, task.template, calibrate=True
        )
        started = time.perf_counter()
        answers[name] = clf.predict_proba(texts)
        typer.echo(f"{name}: {len(texts)} articles in {time.perf_counter() - started:.1f} s", err=True)
    typer.echo(
        f"\nTask: {task.description}\nLabels: {', '.join(task.labels)}; calibrated scores; "
        f"{shots} demonstrations drawn with seed {seed} from the training split.\n"
    )
    for i, doc in enumerate(docs):
        title = doc.query.split(" ", 12)
        typer.echo(f"[{i + 1}] {' '.join(title[:12])} ...")
        typer.echo(f"    true topic: {doc.target}")
        for name, proba in answers.items():
            best = int(proba[i].argmax())
            mark = "right" if task.labels[best] == doc.target else "wrong"
            typer.echo(f"    {name:>9}: {task.labels[best]:<13} p={proba[i, best]:.2f}  ({mark})")
    for name, proba in answers.items():
        hits = sum(task.labels[int(p.argmax())] == d.target for p, d in zip(proba, docs, strict=True))
        typer.echo(f"{name}: {hits}/{len(docs)} right")


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
    proba = clf.predict_proba(texts)
    if output_format == "json":
        rows = [
            {
                "text": t,
                "label": label_list[int(p.argmax())],
                "probabilities": dict(zip(label_list, map(float, p), strict=True)),
            }
            for t, p in zip(texts, proba, strict=True)
        ]
        typer.echo(
            json.dumps(
                {
                    "model": lm.name,
                    "backend": lm.backend,
                    "shots": len(clf.demonstrations_),
                    "seed": seed,
                    "calibrate": calibrate,
                    "normalization": normalization,
                    "results": rows,
                },
                indent=2,
            )
        )
        return
    typer.echo(
        f"{len(clf.demonstrations_)} demonstrations (seed {seed}), normalization {normalization}"
        f"{', calibrated' if calibrate else ''}"
    )
    for text, p in zip(texts, proba, strict=True):
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
    output_dir: Path = options.output_dir("eval-text", "Folder for the JSON results and the PNG plot."),
    soft_prompt: Path = typer.Option(None, "--soft-prompt", help=SOFT_PROMPT_HELP),
    model: str = options.lm_model(),
    backend: str = options.lm_backend(),
) -> None:
    """Accuracy per K (mean and spread over seeds) on TASK; writes JSON and a PNG of accuracy against K."""
    from zeroshot.eval.runs import evaluate, format_table, save_report
    from zeroshot.eval.tasks import load_task
    from zeroshot.text.scoring import check_normalization

    shot_list = split_ints(shots, "--shots", minimum=0)
    check_normalization(normalization)
    task = load_task(task_name, max_chars=max_chars)
    task.check_shots(shot_list)  # before the model loads: bad input fails fast
    model, backend = _soft_prompt_model(soft_prompt, model, backend)
    lm = _load_lm(model, backend)
    report = evaluate(lm, task, shot_list, seeds, limit, normalization, calibrate, balanced, first_seed,
                      soft_prompt=soft_prompt)
    typer.echo(
        f"{task.name} ({task.kind}): {report.n_docs} documents, pool of {report.n_pool}, "
        f"seeds {report.seeds}, {report.seconds:.0f} s"
    )
    typer.echo(format_table(report))
    json_path, png_path = save_report(report, output_dir)
    typer.echo(f"wrote {json_path} and {png_path}")
