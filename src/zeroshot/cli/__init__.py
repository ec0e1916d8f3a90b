"""The `zeroshot` command.

Thin by design: each area's commands live in a module of this package (text, vision, search,
fewshot, serve) that parses arguments, calls the library and prints. `main` turns a `UserError` into
one line on stderr and exit code 2.
"""

from __future__ import annotations

import importlib
import sys

import typer

from zeroshot.errors import UserError

app = typer.Typer(
    name="zeroshot",
    help="Zero-shot and few-shot learning with frozen pre-trained Transformers (GPT-style LMs, CLIP).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    # Keeps `zeroshot` a command group even while only one area's command is registered
    # (typer otherwise runs a lone command without its name).
    """Zero-shot and few-shot learning with frozen pre-trained Transformers (GPT-style LMs, CLIP)."""

# Each module registers its commands on `app` when imported; a module that is not written yet is skipped.
_COMMAND_MODULES = ("text", "lm", "vision", "search", "fewshot", "detect", "serve", "train", "audit")
for _name in _COMMAND_MODULES:
    try:
        importlib.import_module(f"zeroshot.cli.{_name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"zeroshot.cli.{_name}":
            raise


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code (2 for a user error)."""
    try:
        # Without standalone mode typer *returns* the code of `typer.Exit(n)` and of Ctrl-C (130).
        code = app(args=argv, standalone_mode=False)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # click's own usage errors carry their exit code
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        if isinstance(exc, click.exceptions.Exit):
            return exc.exit_code
        if isinstance(exc, click.exceptions.Abort):
            print("aborted", file=sys.stderr)
            return 130
        raise
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


if __name__ == "__main__":
    sys.exit(main())
