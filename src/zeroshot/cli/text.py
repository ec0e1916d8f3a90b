"""Commands for text tasks: `demo`, `classify-text`, `eval-text`. Parse, call the library, print."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from zeroshot.cli import app
from zeroshot.errors import UserError

MODEL_HELP = (
    "Hugging Face id, local model folder or .gguf file (default: the built-in SmolLM2-135M-Instruct)."
)
BACKEND_HELP = "auto (llama.cpp when installed), transformers or llama.cpp."
NORMALIZATION_HELP = "Score normalisation: sum (total log-prob), token (per token) or char (per character)."


def _load_lm(model: str | None, backend: str):
    from zeroshot.models.lm import load_lm

    lm = load_lm(model, backend=backend)
    typer.echo(
        f"model: {Path(lm.name).name}  backend: {lm.backend}  (loaded in {lm.load_seconds:.1f} s)", err=True
    )
    return lm


def _split_labels(labels: str) -> list[str]:
    from zeroshot.text.classify import check_labels

    return check_labels(part.strip() for part in labels.split(",")) if labels.strip() else check_labels([])


@app.command("demo")
def demo(
    n_articles: int = typer.Option(5, "--articles", help="How many held-out BBC News articles to classify."),
    shots: int = typer.Option(
        5, "--shots", help="Demonstrations in the few-shot prompt (one per topic at 5)."
    ),
    seed: int = typer.Option(0, help="Seed for drawing the demonstrations."),
    model: str = typer.Option(None, "--model", help=MODEL_HELP),
    backend: str = typer.Option("auto", help=BACKEND_HELP),
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
    typer.echo(_demo_epilogue(model))


def _demo_epilogue(model: str | None) -> str:
    """What the default model does well and badly (measured, docs/notes/issue-13.md), and how to go bigger."""
    from zeroshot.models.ladder import installed_ladder

    lines = []
    if model is None:
        lines.append(
            "\nAbout this model (measured, docs/notes/issue-13.md): SmolLM2-135M is the zero-set-up "
            "default, small enough for any laptop. Well: calibrated zero-shot topic choice, 60% on 100 "
            "held-out BBC articles (chance 20%, plain scores 32%), and it picks up an answer format from "
            "demonstrations. Badly: demonstrations do not make its BBC topics better (one demonstration "
            "made them worse), and it rarely knows facts (country name to ISO code: 2% zero-shot, "
            "8% with demonstrations). Larger models gain more from the same prompts."
        )
    bigger = installed_ladder()
    if bigger:
        lines.append("Larger models installed; rerun with one of them:")
        lines += [f"  zeroshot demo --model {path}" for path in bigger]
    else:
        lines.append("Larger models (270M to 1.5B, 1.9 GB in all): `make setup-ladder`, then "
                     "`zeroshot demo --model <path it prints>`.")
    return "\n".join(lines)


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
    as_json: bool = typer.Option(False, "--json", help="Print the probability table as JSON."),
    model: str = typer.Option(None, "--model", help=MODEL_HELP),
    backend: str = typer.Option("auto", help=BACKEND_HELP),
) -> None:
    """Classify TEXTs into --labels by likelihood, zero-shot or few-shot; prints every label's probability."""
    from zeroshot.text.classify import ZeroShotTextClassifier
    from zeroshot.text.scoring import check_normalization

    label_list = _split_labels(labels)
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
    )
    clf.fit(pool_texts or None, pool_labels or None)
    proba = clf.predict_proba(texts)
    if as_json:
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
    output_dir: Path = typer.Option(
        Path("results"), "--output-dir", "--out", help="Folder for the JSON results and the PNG plots."
    ),
    models: list[str] = typer.Option(
        None, "--model", help=MODEL_HELP + " Repeat for several models: same documents, seeds and "
        "demonstrations for each, plus the scaling figures."
    ),
    backend: str = typer.Option("auto", help=BACKEND_HELP),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar."),
) -> None:
    """Accuracy per K (mean and spread over seeds) on TASK; writes JSON and PNGs of accuracy against K
    (and, with several --model, against parameter count)."""
    from zeroshot.eval.runs import parse_shots
    from zeroshot.eval.scaling import evaluate_models, format_scaling_table, scaling_paths
    from zeroshot.eval.tasks import load_task
    from zeroshot.text.scoring import check_normalization

    shot_list = parse_shots(shots)
    check_normalization(normalization)
    task = load_task(task_name, max_chars=max_chars)
    task.check_shots(shot_list)  # before any model loads: bad input fails fast
    for name in models or []:
        from zeroshot.models.lm import resolve_model

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
        chat_template=chat_template, max_new_tokens=max_tokens,
    )
    if len(scaling.reports) > 1:
        typer.echo(format_scaling_table(scaling))
    json_path, k_path, params_path = scaling_paths(task.name, output_dir)
    typer.echo(f"wrote {json_path}, {k_path} and {params_path}")
