"""`zeroshot detect-generated`: was this text written by a language model? Parse, call
`zeroshot.audit.generated`, print."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from zeroshot.cli import app, options
from zeroshot.errors import UserError


@app.command("detect-generated")
def detect_generated(
    texts: list[str] = typer.Argument(None, help="Texts to judge (or --texts-file)."),
    texts_file: Path = options.texts_file(),
    context: str = typer.Option(None, "--context", help="Text every text continues (a prompt, a headline): "
                                                        "read by the models, not judged."),
    detector: str = typer.Option("binoculars", "--detector",
                                 help="binoculars (two models of one tokenizer), log-likelihood, log-rank "
                                      "or entropy (one model)."),
    model: str = options.lm_model(),
    performer: str = options.performer(),
    backend: str = options.lm_backend(),
    threshold: float = options.threshold("detect-generated"),
    calibration: Path = typer.Option(None, "--calibration",
                                     help="A calibration file from --fit-calibration (default: the one "
                                          "shipped for the default models, if the models match)."),
    fit_calibration: Path = typer.Option(None, "--fit-calibration",
                                         help="Write a calibration fitted on --texts-file's labelled rows "
                                              "to this file (threshold at 1 % of the human texts flagged)."),
    min_tokens: int = typer.Option(32, "--min-tokens", help="Shortest text judged, in tokens; shorter ones "
                                                            "are refused, not guessed."),
    output: Path = options.output_file(),
    output_format: str = options.output_format(),
    quiet: bool = options.quiet(),
) -> None:
    """Judge whether each text was machine-written, zero-shot, from frozen LMs' likelihoods (GLTR,
    Binoculars). Prints a score (higher: more machine-like), P(machine) and a decision per text. --model
    observes (default: qwen2.5-coder-1.5b for binoculars, qwen2.5-coder-0.5b for the others; `zeroshot
    models pull` them). Evidence, not proof: see docs/audit.md."""
    from zeroshot.audit import generated

    config = generated.DetectConfig(detector, model, performer, backend, min_tokens,
                                    threshold=threshold,
                                    calibration=str(calibration) if calibration else None)
    config.check()  # every rule before a model loads
    if fit_calibration is not None and texts_file is None:
        raise UserError("--fit-calibration needs --texts-file with a label on every row")
    if texts and texts_file is not None:
        raise UserError("give texts as arguments or --texts-file, not both")
    if texts_file is not None:
        file = generated.read_texts_file(texts_file)
        if context is not None and any(file.contexts):
            raise UserError("--context and the file's own contexts: give one or the other")
        contexts = [context] * len(file.texts) if context is not None else file.contexts
    elif texts:
        file = generated.TextsFile(list(texts), [context] * len(texts), [None] * len(texts))
        contexts = file.contexts
    else:
        raise UserError("nothing to judge: give texts or --texts-file")
    if fit_calibration is not None and any(label is None for label in file.labels):
        raise UserError('--fit-calibration needs a "label" (human or machine) on every row of --texts-file')
    generated.check_texts(file.texts)
    observer, second = generated.load_models(config)
    result = generated.score_texts(file.texts, observer, second, config, contexts, progress=not quiet)
    if fit_calibration is not None:
        fitted = generated.calibrate_on(file, result, config)
        fitted.save(fit_calibration)
        dev = fitted.dev
        typer.echo(f"calibration: threshold {fitted.threshold:.4f} (dev: {dev['fpr']:.1%} of human texts "
                   f"flagged, {dev['tpr']:.1%} of machine ones; AUROC {dev['auroc']:.3f}) -> "
                   f"{fit_calibration}", err=True)
    data = result.to_dict()
    if output is not None:
        from zeroshot.files import write_atomic

        write_atomic(output, json.dumps(data, indent=1) + "\n")
    if output_format == "json":
        typer.echo(json.dumps(data, indent=2))
        return
    if not quiet:
        for item in result.texts:
            verdict = "-" if item.machine is None else ("machine" if item.machine else "human")
            chance = "" if item.probability is None else f"  P(machine) {item.probability:.2f}"
            typer.echo(f"{item.index:>4}  {verdict:<8} score {item.score:+.4f}{chance}  "
                       f"({item.tokens} tokens)  {file.texts[item.index][:60]!r}")
    rule = ("no threshold: scores only (give --threshold, or --calibration from --fit-calibration)"
            if result.threshold is None else f"threshold {result.threshold:+.4f} ({result.threshold_source})")
    typer.echo(f"{result.detector}: {rule}; {result.tokens_per_second:.0f} tokens/s", err=True)
