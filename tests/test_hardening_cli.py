"""Issue 20, CLI: every usage mistake and every bad value is one line on stderr and exit code 2.

Each case is a reproduction from the issue; on the code before it most were a click traceback with
exit 1 (typer raises its bundled click's exceptions, which `main` did not recognise) or an exit 0.
Nothing here loads a language model.
"""

from __future__ import annotations

import os

import pytest

from zeroshot.cli import main


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: "), err
    return err


@pytest.mark.parametrize("argv", [
    ["no-such-command"],
    ["search"],                                     # a missing required option
    ["search", "cat", "--db", "x", "-k", "abc"],    # not a number
    ["serve", "--port", "abc"],
    ["serve", "--port", "70000"],
    ["serve", "--port", "0"],
    ["classify-text", "a", "--labels", "a,b", "--max-chars", "0"],
    ["classify-text", "a", "--labels", "a,b", "--max-chars", "-5"],
    ["eval-text", "bbc-news", "--limit", "0"],
    ["eval-text", "bbc-news", "--limit", "-3"],
    ["fewshot-curve", "bbc-news", "--limit", "0"],
    ["fewshot-curve", "bbc-news", "--limit", "-3"],
])
def test_usage_errors_are_one_line_and_exit_2(argv, capsys):
    assert main(argv) == 2
    _one_line_error(capsys)


def test_bare_command_shows_help_and_exits_2(capsys):
    assert main([]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "Usage" in captured.err + captured.out


@pytest.mark.parametrize("argv", [
    ["search", "cat", "--db", "x", "--min-score", "nan"],
    ["generate", "hello", "--temperature", "nan"],
    ["generate", "hello", "--top-p", "inf"],
    ["serve", "--max-upload-mb", "nan"],
])
def test_nan_and_infinity_are_refused(argv, capsys):
    assert main(argv) == 2
    assert "finite" in _one_line_error(capsys)


def test_empty_prompt_is_refused_before_any_model_loads(capsys):
    assert main(["generate", ""]) == 2
    assert "empty" in _one_line_error(capsys)


def test_fewshot_curve_refuses_a_non_utf8_file_and_an_out_that_is_a_file(tmp_path, capsys):
    task = tmp_path / "task.jsonl"
    task.write_bytes(b'{"text": "caf\xe9", "label": "a"}\n')
    assert main(["fewshot-curve", str(task), "--output-dir", str(tmp_path / "runs")]) == 2
    assert "UTF-8" in _one_line_error(capsys)
    taken = tmp_path / "taken"
    taken.write_text("keep me")
    assert main(["fewshot-curve", str(task), "--output-dir", str(taken)]) == 2
    assert "is a file" in _one_line_error(capsys)
    assert taken.read_text() == "keep me"


def test_bench_lm_with_a_missing_model_writes_nothing(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench-lm", "--model", str(tmp_path / "missing"), "--lengths", "4",
            "--output", str(out)]) == 2
    assert "nothing written" in capsys.readouterr().err
    assert not out.exists()


def test_index_of_an_empty_folder_exits_2_like_classify_images(tmp_path, tiny_clip_dir, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["index", str(empty), "--db", str(tmp_path / "db"), "-m", str(tiny_clip_dir), "-q"]) == 2
    assert "no image files" in capsys.readouterr().err


def test_serve_refuses_bad_allowed_origins(capsys):
    assert main(["serve", "--allowed-origins", "evil.example"]) == 2
    assert "origin" in _one_line_error(capsys)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_image_is_refused_not_waited_on(tmp_path, tiny_clip_dir, capsys):
    import signal

    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("blocked on a FIFO")))
    signal.alarm(60)  # a hang (the old behaviour) becomes a failure
    # A FIFO blocked these commands forever; each now names it and exits 2 at once.
    assert main(["similarity", str(fifo), str(fifo), "-m", str(tiny_clip_dir)]) == 2
    assert "not a regular file" in capsys.readouterr().err
    argv = ["classify-images", str(fifo), "-l", "a,b", "-m", str(tiny_clip_dir), "-q", "--no-cache"]
    assert main(argv) == 2
    assert "not a regular file" in " ".join(capsys.readouterr().err.split())  # rich wraps lines
    signal.alarm(0)
