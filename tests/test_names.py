"""One name for one thing: every command's options against one table, and the old spellings' notices."""

from __future__ import annotations

import pytest

from zeroshot.cli import _command, _walk, main
from zeroshot.cli.options import CLIP_HELP, DEPRECATED, LM_HELP, OPTION_NAMES, rewrite_deprecated


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


def test_model_options_mean_one_thing_everywhere():
    for name, command in COMMANDS.items():
        for param in command.params:
            if "--model" in param.opts:
                assert param.help == LM_HELP, f"{name}: --model must be the language model"
            if "--clip-model" in param.opts:
                assert param.help == CLIP_HELP, f"{name}: --clip-model must be the image-text model"
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
    (["detect", "a.png", "-m", "clip", "-o=d"], ["detect", "a.png", "--clip-model", "clip", "--output-dir=d"]),
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
