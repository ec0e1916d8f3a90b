"""One name for one thing: every command's options against one table, every shared option declared once,
-q wherever a command runs long, and the old spellings' notices."""

from __future__ import annotations

import ast
import pathlib
from collections import defaultdict

import pytest

import zeroshot.cli
from zeroshot.cli import _command, _walk, main, options
from zeroshot.cli.options import (
    CLIP_HELP,
    DEPRECATED,
    LM_HELP,
    OPTION_NAMES,
    QUICK_COMMANDS,
    Shared,
    rewrite_deprecated,
)


def _commands():
    root = _command()
    out = {}

    def visit(command, path):
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                visit(sub, [*path, name])
        else:
            out[" ".join(path)] = command

    visit(root, [])
    return out


COMMANDS = _commands()


def test_every_option_of_every_command_is_in_the_table():
    unknown = {(name, opt) for name, command in COMMANDS.items() for param in command.params
               for opt in [*param.opts, *param.secondary_opts] if opt.startswith("--")
               and not opt.startswith("--no-") and opt not in OPTION_NAMES}
    assert not unknown, f"options missing from cli/options.py OPTION_NAMES: {sorted(unknown)}"


DECLARED = {spec.name: spec for spec in vars(options).values() if isinstance(spec, Shared)}


def _long(param) -> str | None:
    return next((opt for opt in [*param.opts, *param.secondary_opts] if opt.startswith("--")), None)


def _kind(param) -> str:
    """The type a command gives an option (`str | None` is `str`; a repeatable `list[str]` is `str`)."""
    kind = param.bare_type().replace(" | None", "")
    return kind.removeprefix("list[").removesuffix("]") if param.multiple else kind


def _options_by_name() -> dict[str, list]:
    uses = defaultdict(list)
    for name, command in COMMANDS.items():
        for param in command.params:
            if param.param_type_name == "option" and _long(param) != "--help":
                uses[_long(param)].append((name, param))
    return uses


def test_every_option_two_commands_share_is_declared_once_in_options():
    """Same help text, flags, default (or the command's own, from the same declaration), type and
    repeatability in every command: so `--seed` cannot mean two things, nor drift apart in two places."""
    problems = []
    for flag, used in sorted(_options_by_name().items()):
        if len(used) < 2:
            continue
        spec = DECLARED.get(flag)
        names = [name for name, _ in used]
        if spec is None:
            problems.append(f"{flag} ({', '.join(names)}) is not declared in cli/options.py")
            continue
        kinds = {_kind(param) for _, param in used}
        if len(kinds) > 1:
            problems.append(f"{flag} has several types: {sorted(kinds)}")
        for name, param in used:
            if param.help != spec.help:
                problems.append(f"{name} {flag}: its own help text, not the shared one")
            if sorted([*param.opts, *param.secondary_opts]) != sorted(spec.spellings):
                problems.append(f"{name} {flag}: flags {param.opts}, not {spec.spellings}")
            default = spec.default_for(name)
            if default is ...:
                if not param.required:
                    problems.append(f"{name} {flag}: should be required")
            elif param.required or param.default != default:
                problems.append(f"{name} {flag}: default {param.default!r}, declared {default!r}")
            if bool(param.multiple) != (name in spec.repeatable):
                problems.append(f"{name} {flag}: repeatable here, not in its declaration (or the reverse)")
    assert not problems, "\n".join(problems)


def test_no_command_module_declares_a_shared_option_itself():
    """A shared flag spelled in a command's own `typer.Option(...)` is a second declaration, even with the
    shared help text copied: it must come from cli/options.py."""
    folder = pathlib.Path(zeroshot.cli.__file__).parent
    found = []
    for path in sorted(folder.glob("*.py")):
        if path.name == "options.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "Option"):
                flags = {arg.value for arg in node.args if isinstance(arg, ast.Constant)}
                found += [f"{path.name}:{node.lineno} {flag}" for flag in sorted(flags & set(DECLARED))]
    assert not found, f"declare these once in cli/options.py: {found}"


def test_every_long_running_command_accepts_quiet():
    """-q/--quiet on every command except the few quick ones listed, with the reason, in options.py."""
    assert set(QUICK_COMMANDS) <= set(COMMANDS), set(QUICK_COMMANDS) - set(COMMANDS)
    missing = [name for name, command in COMMANDS.items() if name not in QUICK_COMMANDS
               and not any({"--quiet", "-q"} <= set(param.opts) for param in command.params)]
    assert not missing, f"long-running commands without -q/--quiet: {missing}"


def test_serve_limits_are_the_servers():
    from zeroshot.server.settings import ServerSettings

    assert options.max_tokens.default_for("serve") == ServerSettings.max_tokens


def test_model_options_mean_one_thing_everywhere():
    for name, command in COMMANDS.items():
        for param in command.params:
            if "--model" in param.opts:
                assert param.help.startswith(LM_HELP), f"{name}: --model must be the language model"
            if "--clip-model" in param.opts:
                assert param.help.startswith(CLIP_HELP), f"{name}: --clip-model must be the image-text model"
            if "--quiet" in param.opts:
                assert "-q" in param.opts, f"{name}: --quiet needs its short form -q"
            if "--output" in param.opts:
                assert "-o" in param.opts, f"{name}: --output needs its short form -o"
            if "-o" in param.opts:
                assert "--output" in param.opts, f"{name}: -o is always --output (a file)"


def test_old_spellings_are_gone_from_every_help():
    for command_name, renames in DEPRECATED.items():
        command = COMMANDS[command_name]
        spelled = {opt for param in command.params for opt in [*param.opts, *param.secondary_opts]}
        assert not spelled & set(renames), f"{command_name} still declares {spelled & set(renames)}"


def test_no_flag_shows_a_value_in_help():
    for command in _walk(_command()):
        for param in command.params:
            if getattr(param, "is_flag", False):
                assert param.metavar == "", f"{command.name}: {param.opts} would show <bool>"


@pytest.mark.parametrize(("argv", "expected"), [
    (["eval-text", "bbc-news", "--out", "r"], ["eval-text", "bbc-news", "--output-dir", "r"]),
    (["classify-text", "x", "--json"], ["classify-text", "x", "--format", "json"]),
    (["detect", "a.png", "-m", "clip", "-o=d"],
     ["detect", "a.png", "--clip-model", "clip", "--output-dir=d"]),
    (["audit", "lm-gender", "--out", "r"], ["audit", "lm-gender", "--output-dir", "r"]),
    (["generate", "--", "--beams"], ["generate", "--", "--beams"]),  # after --, an argument
    (["generate", "hi", "--beams", "2"], ["generate", "hi", "--num-beams", "2"]),
])
def test_old_spellings_still_work_with_one_notice(argv, expected, capsys):
    assert rewrite_deprecated(argv) == expected
    notices = capsys.readouterr().err.strip().splitlines()
    assert len(notices) == sum(a != b for a, b in zip(argv, expected, strict=False))
    assert all("deprecated" in line and "next release" in line for line in notices)


def test_an_old_spelling_runs_the_command(tmp_path, capsys):
    # `--out` on fewshot-curve reaches the new `--output-dir` check: a file where a folder is needed.
    taken = tmp_path / "file"
    taken.write_text("x")
    task = tmp_path / "t.npy"
    assert main(["fewshot-curve", str(task), "--out", str(taken)]) == 2
    err = capsys.readouterr().err
    assert "deprecated" in err and f"--output-dir {taken}: is a file" in err


# --- HTTP: one table for the request fields ---------------------------------------------------------
# Each concept's CLI option and HTTP field: OpenAI's and Hugging Face's names in the API, the same words
# on the command line.
SHARED = {
    "model": "--model", "max_tokens": "--max-tokens", "temperature": "--temperature", "top_p": "--top-p",
    "top_k": "--top-k", "repetition_penalty": "--repetition-penalty", "num_beams": "--num-beams",
    "stop": "--stop", "seed": "--seed", "labels": "--labels", "templates": "--templates",
    "description": "--description", "normalization": "--normalization", "calibrate": "--calibrate",
    "threshold": "--threshold", "min_score": "--min-score", "context": "--context", "detector": "--detector",
    "min_tokens": "--min-tokens",
}
# Fields that only exist over HTTP (bodies, uploads, OpenAI protocol fields).
HTTP_ONLY = {
    "prompt", "stream", "texts", "demonstrations", "template", "text", "label", "query", "answer",
    "example_separator", "paths", "image_path", "path", "queries", "example_paths", "n", "stream_options",
    "logprobs", "echo", "suffix", "best_of", "presence_penalty", "frequency_penalty", "logit_bias", "user",
    "messages", "role", "content", "input", "encoding_format", "dimensions", "tokens", "add_special_tokens",
    "with_pieces", "images", "max_completion_tokens", "tools", "tool_choice", "response_format",
    "parallel_tool_calls", "top_logprobs", "name", "image", "image_url", "url", "detail", "type",
    "prefix_length", "num_return_sequences", "length_penalty", "encoder", "lm", "add_special",
}


def _request_models():
    import importlib
    import inspect
    import pkgutil

    from pydantic import BaseModel

    import zeroshot.server

    found = {}
    for info in pkgutil.iter_modules(zeroshot.server.__path__):
        module = importlib.import_module(f"zeroshot.server.{info.name}")
        for name, value in vars(module).items():
            defined_here = inspect.isclass(value) and value.__module__ == module.__name__
            if defined_here and issubclass(value, BaseModel) and (
                    name.endswith("Request") or name in ("Template", "Demonstration")):
                found[f"{module.__name__}.{name}"] = value
    return found


def test_every_request_field_is_in_the_table():
    models = _request_models()
    assert len(models) >= 6
    unknown = {(name, field) for name, model in models.items() for field in model.model_fields
               if field not in SHARED and field not in HTTP_ONLY}
    assert not unknown, f"request fields missing from the naming table: {sorted(unknown)}"


def test_shared_names_are_the_cli_options():
    for field, option in SHARED.items():
        assert option in OPTION_NAMES, option
        assert option.removeprefix("--").replace("-", "_") == field


def test_decoding_options_are_one_set_everywhere():
    """`GenerationConfig.from_options` is the one list: the CLI's `generate` and `/v1/generate` take
    exactly its options under its names (adding one there fails here until both doors have it)."""
    import inspect

    from zeroshot.models.lm import GenerationConfig
    from zeroshot.server.routes_text import GenerateRequest

    library = set(inspect.signature(GenerationConfig.from_options).parameters)
    http = set(GenerateRequest.model_fields) - {"prompt", "stream"}
    cli = {param.name for param in COMMANDS["generate"].params} - {"prompt", "model", "backend", "stream",
                                                                  "output_format"}
    assert http == library - {"chat"}  # the chat template is a CLI convenience; HTTP has chat routes
    assert cli == library
