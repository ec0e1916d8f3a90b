"""`zeroshot neurons FOLDER`: what units of a CLIP image tower respond to. Parse, call
`zeroshot.audit.neurons`, write, print.

Writes `neurons.json` (every unit's top and bottom images, words and tests; the same for the same seed),
`neurons.timing.json`, `neurons.html` and per layer a montage PNG of dataset examples and a strip of
feature visualisations into --output-dir. The config is built (every rule checked) before the model
loads; layers and units are checked against the loaded model before any image is embedded.
"""

from __future__ import annotations

from pathlib import Path

import typer

from zeroshot.cli import app, options


@app.command("neurons")
def neurons(
    folder: Path = typer.Argument(..., help="Folder of images; class subfolders (if any) label them."),
    layer: list[str] = typer.Option(None, "--layer",
                                    help="Layer to look into, repeatable: layerN (residual stream after "
                                         "block N), layerN.mlp (its MLP units) or pooled; negative N "
                                         "counts from the end (default: layer-1.mlp)."),
    units: str = typer.Option(None, "--units", help="Comma-separated unit numbers to show in each layer "
                                                    "(default: the --top-units of highest variance)."),
    top_units: int = typer.Option(16, "--top-units", help="Units of highest variance over the folder to "
                                                          "show in each layer (without --units)."),
    top_k: int = options.top_k("neurons"),
    tokens: str = typer.Option("mean", "--tokens", help="One activation per image: mean over the tokens "
                                                        "(class token and patches) or cls (class token)."),
    labels: str = options.labels_option(),
    labels_file: Path = options.labels_file(),
    words_file: Path = typer.Option(None, "--words-file", help="More words to name units by, one per "
                                                               "line (besides the class folders' names "
                                                               "and --labels)."),
    templates: str = options.templates("neurons"),
    direction: str = typer.Option("auto", "--direction",
                                  help="A unit's direction in the joint space, for its words: auto "
                                       "(projection for pooled, covariance otherwise), projection, "
                                       "covariance or top (mean embedding of its top -k images)."),
    visualize: bool = typer.Option(True, "--visualize/--no-visualize",
                                   help="Make a feature visualisation of every unit."),
    vis_steps: int = typer.Option(256, "--vis-steps", help="Gradient steps of each feature visualisation."),
    lr: float = options.lr("neurons"),
    seed: int = options.seed(),
    limit: int = options.limit(),
    batch_size: int = options.batch_size(),
    threads: int = options.threads(),
    clip_model: str = options.clip_model(),
    device: str = options.device(),
    output_dir: Path = options.output_dir("neurons"),
    quiet: bool = options.quiet(),
) -> None:
    """Dataset examples, feature visualisations and best-aligned words for units of a CLIP image tower,
    and whether each unit fires on both a concept's images and its written name (Goh et al. 2021)."""
    from zeroshot.audit import neurons as explorer
    from zeroshot.validation import split_ints, split_list

    words = split_list(labels, "--labels") if labels is not None else []
    if labels_file is not None:
        from zeroshot.vision.results import read_labels

        words += read_labels(None, labels_file)
    if words_file is not None:
        words += explorer.read_words(words_file)
    config = explorer.NeuronsConfig(  # every rule, checked before the model loads
        str(folder), tuple(layer or ("layer-1.mlp",)),
        tuple(split_ints(units, "--units")) if units is not None else None, top_units, top_k, tokens,
        tuple(dict.fromkeys(words)), templates, visualize=visualize, steps=vis_steps, lr=lr, seed=seed,
        limit=limit, batch_size=batch_size, direction=direction)
    explorer.check_model_folder(clip_model, config)  # layers and units against config.json, before the load
    out = _out_dir(output_dir)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    from zeroshot.models.clip import DEFAULT_CLIP, load_clip

    # fp32, not --dtype auto: the visualisations need gradients (int8 has none) and the rankings
    # should not move with the number format the auto probe picks on this CPU
    model = load_clip(clip_model or DEFAULT_CLIP, device=device, dtype="fp32")
    result = _run(lambda: explorer.run_neurons(model, config, progress=not quiet), explorer.neurons_report,
                  out)
    summary = result.summary()
    if not quiet:
        for layer_name in result.layers:
            for record in result.units[layer_name]:
                words_line = ", ".join(w["word"] for w in (record["words"] or [])[:3]) or "-"
                concept = record["concept"]
                mm = record["multimodal"]
                line = f"{layer_name} #{record['unit']}: words {words_line}"
                if concept:
                    line += f"; top {concept['of']}: {concept['count']} {concept['majority']}"
                if mm and mm["concepts"]:
                    line += f"; multimodal for {', '.join(mm['concepts'])}"
                typer.echo(line)
    share = summary["share_one_concept"]
    typer.echo(f"{summary['units']} units; "
               + (f"{100 * share:.0f}% with top images of one concept "
                  f"(chance {100 * summary['chance_share_one_concept']:.1f}%); " if share is not None else "")
               + (f"{summary['multimodal_units']} multimodal" if summary["multimodal_units"] is not None
                  else "multimodal test skipped (no class folders)"))


def _out_dir(out: Path) -> Path:
    """The report folder, made now: a bad --output-dir fails before the model loads, not after the work."""
    from zeroshot.files import make_output_dir

    return make_output_dir(out, "report folder")


def _run(run, report_of, out: Path):
    """Run the explorer; on Ctrl-C write what finished, then let the interrupt end the command."""
    from zeroshot.audit.report import AuditInterrupted

    try:
        result = run()
    except AuditInterrupted as stop:
        paths = report_of(stop.partial).write(out, stop.partial.to_dict(), stop.partial.timing or None)
        typer.echo("stopped: the part that finished is in " + ", ".join(str(p) for p in paths.values()),
                   err=True)
        raise KeyboardInterrupt from None
    paths = report_of(result).write(out, result.to_dict(), result.timing or None)
    typer.echo("wrote " + ", ".join(str(p) for p in paths.values()), err=True)
    return result

