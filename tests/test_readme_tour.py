"""The README's tour runs as printed: every line of its first bash block, `serve` aside, in a fresh folder.

The fast tests read the tour and check that each line names a real command with options that parse, and
that every file it reads is one `zeroshot samples .` or an earlier line writes. The slow test runs the
lines one after the other through `python -m zeroshot.cli` (this checkout's code) and checks each exit
code and the files each line says it writes; where a line shows `--limit`, it runs with a smaller one.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

import zeroshot
from zeroshot.eval.samples import SAMPLE_NAMES

README = Path(__file__).resolve().parents[1] / "README.md"
SKIPPED = {"serve"}  # runs until stopped; tests/test_server*.py start real servers
# The --limit the slow test gives a line instead of the printed one: as small as the line still works
# with (fewshot-curve needs 16 labelled examples per class for K=16, in a half of 5 classes).
SMALL_LIMITS = {"eval-text": "3", "fewshot-curve": "200", "audit lm-gender": "5"}
OUTPUT_OPTIONS = ("-o", "--output", "--output-dir", "--db")
INPUT_SUFFIXES = (".jpg", ".jsonl", ".idx")


def tour_lines() -> list[list[str]]:
    """The tour's commands, as argv lists (comments and the venv activation left out)."""
    section = README.read_text(encoding="utf-8").split("\n## A tour\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("\n```", 1)[0]
    lines = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words and words != [".", ".venv/bin/activate"]:
            lines.append(words)
    return lines


def command_name(words: list[str]) -> str:
    """`audit lm-gender` for a command of a group, else the command: what SKIPPED and SMALL_LIMITS name."""
    return " ".join(words[1:3]) if words[1] == "audit" else words[1]


def outputs(words: list[str]) -> list[str]:
    """The files and folders a line says it writes."""
    if command_name(words) == "samples":
        return list(SAMPLE_NAMES)
    return [words[i + 1] for i, word in enumerate(words[:-1]) if word in OUTPUT_OPTIONS]


def inputs(words: list[str]) -> list[str]:
    """The words of a line that name a file or folder to read (`photos/`, `query.jpg`, `my-clip` ...)."""
    written = set(outputs(words))
    return [word for word in words[2:] if word not in written and not word.startswith("-")
            and (word.endswith("/") or word.endswith(INPUT_SUFFIXES) or word == "my-clip")]


def test_the_tour_starts_with_the_samples_and_keeps_its_lines():
    lines = tour_lines()
    assert lines[0] == ["zeroshot", "samples", "."]
    assert all(words[0] == "zeroshot" for words in lines)
    assert {command_name(words) for words in lines} >= {"classify-text", "eval-text", "train-clip",
                                                          "classify-images", "search", "detect", "serve"}


def test_every_tour_line_is_a_command_whose_options_parse():
    """Parsed as the command line parses them (option callbacks included), without running anything."""
    from zeroshot.cli import _command
    from zeroshot.cli.options import rewrite_deprecated

    root = _command()
    for words in tour_lines():
        args = words[1:]
        assert rewrite_deprecated(list(args)) == args, f"an old spelling in the tour: {shlex.join(words)}"
        command, name = root, "zeroshot"
        while hasattr(command, "commands"):  # the root, then a group such as audit
            assert args and args[0] in command.commands, f"no such command: {shlex.join(words)}"
            name, command, args = args[0], command.commands[args[0]], args[1:]
        command.make_context(name, list(args))  # raises click's usage error on a bad option or value


def test_every_file_the_tour_reads_is_written_before_it():
    """The bug of issue 27: the tour named files nobody had (`my_task.jsonl`, `photos/`, `query.jpg`)."""
    written: set[str] = set()
    for words in tour_lines():
        missing = [path for path in inputs(words) if path.rstrip("/") not in written]
        assert not missing, f"{shlex.join(words)} reads {missing}, which no earlier line writes"
        written |= {path.rstrip("/") for path in outputs(words)}


def _argv(words: list[str]) -> list[str]:
    argv = list(words[1:])
    small = SMALL_LIMITS.get(command_name(words))
    if "--limit" in argv and small is not None:
        at = argv.index("--limit") + 1
        argv[at] = str(min(int(argv[at]), int(small)))
    return argv


@pytest.mark.slow
def test_the_tour_runs_as_printed(tmp_path):
    """Each line, in order, in one fresh folder: exit 0 and the files it names. About 4 minutes on 2
    cores, a quarter of it starting Python and importing torch, once per line as a user's shell does."""
    source = str(Path(zeroshot.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([source, os.environ.get("PYTHONPATH", "")]),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    timings = []
    for words in tour_lines():
        if command_name(words) in SKIPPED:
            continue
        argv = _argv(words)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "zeroshot.cli", *argv], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
        timings.append((time.perf_counter() - started, shlex.join(["zeroshot", *argv])))
        assert done.returncode == 0, (f"{shlex.join(words)} exited {done.returncode}:\n"
                                      f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        for path in outputs(words):
            target = tmp_path / path
            assert target.exists(), f"{shlex.join(words)} did not write {path}"
            assert target.is_file() or any(target.iterdir()), f"{shlex.join(words)} left {path} empty"
        if words[2:4] == ["--image", "query.jpg"]:  # the toy CLIP finds the cat by its close-up
            assert done.stdout.splitlines()[1].endswith("photos/cat.jpg"), done.stdout
    print("\n".join(f"{seconds:6.1f} s  {line}" for seconds, line in timings))
