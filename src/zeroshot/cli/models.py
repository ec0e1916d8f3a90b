"""`zeroshot models` and `zeroshot models pull NAME`: the models known by name, and installing one.

Like `ollama list` / `ollama pull`: the catalogue is `zeroshot.models.catalogue`, the pull
`zeroshot.models.pull`; a pulled model is then `--model NAME` in every command and in `serve`.
"""

from __future__ import annotations

import json

import typer

from zeroshot.cli import app, options

models_app = typer.Typer(help="The models known by name (like `ollama list`); `pull NAME` installs one.",
                         no_args_is_help=False, invoke_without_command=True)
app.add_typer(models_app, name="models")


@models_app.callback()
def models_group(ctx: typer.Context) -> None:
    """List the models known by name (`zeroshot models list`), or pull one (`zeroshot models pull NAME`)."""
    if ctx.invoked_subcommand is None:
        list_command(output_format="text")


@models_app.command("list")
def list_command(output_format: str = options.output_format()) -> None:
    """The models known by name: parameters, quantisation, size, licence, source, installed or not."""
    from zeroshot.models.catalogue import format_listing, listing

    rows = listing()
    print(json.dumps(rows, indent=2) if output_format == "json" else format_listing(rows))


@models_app.command("pull")
def pull_command(
    name: str = typer.Argument(..., help="A name from `zeroshot models` (or one of its aliases)."),
    quiet: bool = options.quiet(),
    output_format: str = options.output_format(),
) -> None:
    """Download NAME from PyPI (pip, nothing installed into the environment), check its sha256 and put it
    in place; already installed: checked, and said so. Resumes an interrupted pull."""
    from zeroshot.models.pull import pull

    result = pull(name, quiet=quiet)
    print(json.dumps(result.to_dict(), indent=2) if output_format == "json" else result.message())
