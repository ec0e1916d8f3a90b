"""Issue 33's command-line edges: each gets one line and exit code 2 (or, for the rewriter, the argv the
user meant), before any model loads, and no user file is touched."""

from __future__ import annotations

import pytest

from zeroshot.cli import main
from zeroshot.testing import save_class_folders


def _one_line_exit_2(code: int, capsys, *words: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.startswith("error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, err
    return err


def test_train_clip_csv_field_over_the_csv_limit(tmp_path, capsys):
    captions = tmp_path / "pairs.csv"
    captions.write_text("image,caption\na.png," + "x" * 131_073 + "\n", encoding="utf-8")
    code = main(["train-clip", str(captions), "--output-dir", str(tmp_path / "out"), "--quiet"])
    _one_line_exit_2(code, capsys, "pairs.csv")


def test_train_clip_output_dir_naming_a_file(tmp_path, capsys):
    data = save_class_folders(tmp_path / "data", per_class=3)
    target = tmp_path / "model"
    target.write_text("mine")
    code = main(["train-clip", str(data), "--output-dir", str(target), "--quiet", "--max-steps", "1"])
    _one_line_exit_2(code, capsys, "is a file")
    assert target.read_text() == "mine"


def test_train_clip_refuses_a_tower_that_cannot_fit(tmp_path, capsys):
    data = save_class_folders(tmp_path / "data", per_class=3)
    code = main(["train-clip", str(data), "--output-dir", str(tmp_path / "out"), "--image-size", "100000",
                 "--patch-size", "1", "--quiet"])
    _one_line_exit_2(code, capsys, "--patch-size")
    assert not (tmp_path / "out").exists()


def test_train_clip_refuses_a_step_that_cannot_fit_in_memory(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ZEROSHOT_MEMORY_LIMIT", "100M")
    data = save_class_folders(tmp_path / "data", per_class=3)
    code = main(["train-clip", str(data), "--output-dir", str(tmp_path / "out"), "--image-size", "2048",
                 "--patch-size", "32", "--batch-size", "256", "--quiet"])
    _one_line_exit_2(code, capsys, "GiB")


def test_train_clip_negative_eval_every(tmp_path, capsys):
    data = save_class_folders(tmp_path / "data", per_class=3)
    code = main(["train-clip", str(data), "--output-dir", str(tmp_path / "out"), "--eval-every", "-1",
                 "--quiet"])
    _one_line_exit_2(code, capsys, "eval-every")


def test_export_tokenizer_into_an_impossible_folder(capsys):
    code = main(["export-tokenizer", "--output-dir", "/proc/nope/tok"])
    _one_line_exit_2(code, capsys, "/proc/nope")


def test_export_tokenizer_never_replaces_a_users_folder(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    code = main(["export-tokenizer", "--output-dir", str(folder)])
    _one_line_exit_2(code, capsys, "other files")
    assert (folder / "notes.txt").read_text() == "keep me"


def test_search_on_an_empty_catalog_says_so(tmp_path, capsys):
    db = tmp_path / "index"
    db.mkdir()
    (db / "catalog.sqlite").write_bytes(b"")
    code = main(["search", "a cat", "--db", str(db)])
    err = _one_line_exit_2(code, capsys, "empty or damaged")
    assert "download" not in err
    assert (db / "catalog.sqlite").read_bytes() == b""  # a reader leaves it as it found it


@pytest.mark.parametrize("argv,expected", [
    # an option's value that looks like an old option name is a value
    (["classify-text", "--description", "--json", "some text"],
     ["classify-text", "--description", "--json", "some text"]),
    (["train-clip", "data", "--templates", "--out", "--max-steps", "1"],
     ["train-clip", "data", "--templates", "--out", "--max-steps", "1"]),
    # in option position the old names are still rewritten
    (["classify-text", "--json", "--description", "x", "t"],
     ["classify-text", "--format", "json", "--description", "x", "t"]),
    (["train-clip", "data", "-o", "--out"], ["train-clip", "data", "--output-dir", "--out"]),
    (["index", "imgs", "--model", "m", "--db", "d"], ["index", "imgs", "--clip-model", "m", "--db", "d"]),
])
def test_the_deprecated_name_rewriter_rewrites_options_only(argv, expected, capsys):
    from zeroshot.cli import _command, _value_options
    from zeroshot.cli.options import rewrite_deprecated

    command = _command()
    assert rewrite_deprecated(list(argv), _value_options(command, argv)) == expected


def test_a_full_disk_at_the_first_write_of_a_new_index_is_one_line(tmp_path, monkeypatch):
    """A new index's first write (the model it is built with) on a disk that just filled up: SQLite's
    "database or disk is full" went past the one writer's error mapping as a traceback."""
    import sqlite3

    from zeroshot.errors import UserError
    from zeroshot.models.clip import load_clip
    from zeroshot.search.index import ImageIndex
    from zeroshot.search.stores.catalog import Catalog
    from zeroshot.testing import save_random_clip

    model = load_clip(save_random_clip(tmp_path / "clip"), device="cpu", dtype="fp32")

    def full(self, values):
        error = sqlite3.OperationalError("database or disk is full")
        error.sqlite_errorcode = 13  # SQLITE_FULL, as SQLite sets it
        raise error

    monkeypatch.setattr(Catalog, "set_info", full)
    with pytest.raises(UserError, match="no space left"):
        ImageIndex(tmp_path / "db", model)
