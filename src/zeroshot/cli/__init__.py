"""The `zeroshot` command.

Thin by design: each area's commands live in a module of this package (text, vision, search,
fewshot, serve) that parses arguments, calls the library and prints. `main` turns a `UserError` into
one line on stderr and exit code 2.
"""

from __future__ import annotations

import importlib
import math
import sys

import typer
import typer.main

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
_COMMAND_MODULES = ("text", "lm", "vision", "search", "fewshot", "detect", "serve", "train", "audit",
                    "tokens", "caption", "adapt", "models", "samples", "neurons", "generated")
for _name in _COMMAND_MODULES:
    try:
        importlib.import_module(f"zeroshot.cli.{_name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"zeroshot.cli.{_name}":
            raise


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code (2 for a user error or a usage mistake)."""
    from zeroshot.cli.options import rewrite_deprecated, spell_flag_values

    command = _command()
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = spell_flag_values(rewrite_deprecated(argv, _value_options(command, argv)))
    try:
        # Without standalone mode click *returns* the code of `typer.Exit(n)` and of Ctrl-C (130).
        code = command.main(args=argv, prog_name="zeroshot", standalone_mode=False)
    except UserError as exc:
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        handled = _click_exception(exc)
        if handled is None:
            raise
        return handled
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


def _value_options(command, argv: list[str]):
    """Which option names of the command `argv` names take a value (click knows; the deprecated-name
    rewriter must not read an option's value as an option)."""
    for word in argv[:2]:
        if word.startswith("-") or not hasattr(command, "commands") or word not in command.commands:
            break
        command = command.commands[word]
    names = {name for param in getattr(command, "params", ())
             if not getattr(param, "is_flag", False) and not getattr(param, "count", False)
             and getattr(param, "param_type_name", "") == "option"
             for name in (*param.opts, *param.secondary_opts)}
    return names.__contains__


def _click_exception(exc: Exception) -> int | None:
    """The exit code for click's own exceptions, after one line on stderr; None for anything else.

    Typer raises the exceptions of the click it bundles (`typer._click`) or of the installed `click`,
    depending on its version; the two share no base class, so they are recognised by name and module.
    """
    module = type(exc).__module__ or ""
    if not (module.startswith("click") or module.startswith("typer")):
        return None
    kinds = {cls.__name__ for cls in type(exc).__mro__}
    if "NoArgsIsHelpError" in kinds:  # a bare `zeroshot` or `zeroshot COMMAND`: show what there is
        ctx = getattr(exc, "ctx", None)
        print(ctx.get_help() if ctx is not None else exc, file=sys.stderr)
        return 2
    if "Exit" in kinds:
        return int(getattr(exc, "exit_code", 0))
    if "Abort" in kinds:
        print("aborted", file=sys.stderr)
        return 130
    if "ClickException" in kinds:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if "UsageError" in kinds and ctx is not None else ""
        print(f"error: {_one_line(message)}{hint}", file=sys.stderr)
        return 2 if "UsageError" in kinds else int(getattr(exc, "exit_code", 1))
    return None


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _command():
    """The click command of `app`, with every number given on the command line required to be finite.

    Click's float type accepts "nan" and "inf"; no option of zeroshot means either, and NaN compares
    false with every bound, so it would slip through every range check after it.
    """
    command = typer.main.get_command(app)
    for sub in _walk(command):
        for param in sub.params:
            param.callback = _finite(param.callback)
            if getattr(param, "is_flag", False):  # a flag takes no value: show none, not "<bool>"
                param.metavar = ""
    return command


def _walk(command):
    """`command` and every command below it (groups such as `audit` nest)."""
    yield command
    for sub in getattr(command, "commands", {}).values():
        yield from _walk(sub)


def _finite(callback):
    def check(ctx, param, value):
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if isinstance(item, float) and not math.isfinite(item):
                raise UserError(f"{param.opts[0] if param.opts else param.name} must be a finite number, "
                                f"not {item}")
        return callback(ctx, param, value) if callback is not None else value

    return check


if __name__ == "__main__":
    sys.exit(main())
