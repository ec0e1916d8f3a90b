"""`zeroshot index / search / similarity`: exit codes, output formats, and resuming after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from test_search import make_images
from zeroshot.cli import main
from zeroshot.search.index import ImageIndex


@pytest.fixture
def indexed(tmp_path, tiny_clip_dir) -> tuple[Path, list[Path]]:
    images = make_images(tmp_path / "photos", 8)
    db = tmp_path / "db"
    argv = ["index", str(images[0].parent), "--db", str(db), "--clip-model", str(tiny_clip_dir), "-q"]
    assert main(argv) == 0
    return db, images


def test_index_and_search_outputs(indexed, tmp_path, capsys):
    db, images = indexed
    capsys.readouterr()
    assert main(["search", "a photo of a cat", "--db", str(db), "-k", "3"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["rank", "score", "path"] and len(table) == 4

    assert main(["search", "--image", str(images[2]), "--db", str(db), "-k", "2", "--format", "json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert results[0]["path"] == str(images[2]) and results[0]["score"] > 0.999

    sheet = tmp_path / "sheet.html"
    assert main(["search", "cat", "--db", str(db), "--format", "html", "--output", str(sheet)]) == 0
    page = sheet.read_text()
    assert page.count("data:image/jpeg;base64,") == 8 and str(images[0]) in page


def test_rerun_reports_nothing_to_do(indexed, tiny_clip_dir, capsys):
    db, images = indexed
    capsys.readouterr()
    assert main(["index", str(images[0].parent), "--db", str(db), "-q"]) == 0  # the recorded model
    summary = capsys.readouterr().out
    assert summary.startswith("0 added, 0 updated, 8 unchanged, 0 removed, 0 failed (0 embedded)")


def test_similarity(tmp_path, tiny_clip_dir, capsys):
    images = make_images(tmp_path / "photos", 3)
    assert main(["similarity", str(images[0]), str(images[0]), "--clip-model", str(tiny_clip_dir)]) == 0
    assert float(capsys.readouterr().out) == pytest.approx(1.0, abs=1e-5)
    assert main(["similarity", *map(str, images), "--clip-model", str(tiny_clip_dir)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4


@pytest.mark.parametrize("argv, message", [
    (["search", "cat", "--db", "{tmp}/nowhere"], "no image index"),
    (["search", "--db", "{db}"], "exactly one"),
    (["search", "cat", "--db", "{db}", "--format", "pdf"], "choose one of table, json, html"),
    (["search", "cat", "--db", "{db}", "--format", "html"], "needs --output"),
    (["search", "cat", "--db", "{db}", "-k", "0"], "at least 1"),
    (["search", "--image", "{tmp}/missing.jpg", "--db", "{db}"], "no such file"),
    (["index", "{tmp}/nothing", "--db", "{db}"], "no such file"),
    (["index", "{tmp}/bad.jpg", "--db", "{tmp}/db2", "--clip-model", "{model}"], "none of the 1 files"),
    (["similarity", "{tmp}/bad.jpg", "{tmp}/bad.jpg", "--clip-model", "{model}"], "not an image"),
    (["similarity", "{tmp}/bad.jpg", "--clip-model", "{model}"], "at least two"),
    (["index", "{tmp}/photos", "--db", "{tmp}/db3", "--clip-model", "{tmp}/no-model"], "no such model"),
])
def test_user_errors_exit_2_with_one_line(indexed, tmp_path, tiny_clip_dir, capsys, argv, message):
    db, _ = indexed
    (tmp_path / "bad.jpg").write_text("text, not pixels")
    argv = [a.format(tmp=tmp_path, db=db, model=tiny_clip_dir) for a in argv]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    last = err.splitlines()[-1]  # after the progress bar and per-file notes, if any
    assert last.startswith("error: ") and message in last


def test_killed_run_resumes_without_loss(tmp_path, tiny_clip_dir):
    """SIGKILL `zeroshot index` mid-run: what it committed is intact, a re-run finishes each file once."""
    total = 240
    images = make_images(tmp_path / "photos", total)
    db = tmp_path / "db"
    command = [sys.executable, "-m", "zeroshot.cli", "index", str(images[0].parent), "--db", str(db),
               "--clip-model", str(tiny_clip_dir), "--batch-size", "4", "-q"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent / "src")}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    committed = 0
    deadline = time.monotonic() + 120
    while committed < 12 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
        committed = _files_in(db / "catalog.sqlite")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 0 < committed and process.returncode == -signal.SIGKILL, "the run ended before it could be killed"

    survivors = _files_in(db / "catalog.sqlite")
    assert committed <= survivors < total
    with sqlite3.connect(db / "catalog.sqlite") as catalog:
        assert catalog.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        dangling = catalog.execute("SELECT count(*) FROM files "
                                   "WHERE vector_id NOT IN (SELECT id FROM vectors)")
        assert dangling.fetchone()[0] == 0

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{total - survivors} added" in done.stdout and f"{survivors} unchanged" in done.stdout
    index = ImageIndex(db)
    assert sorted(index.paths()) == sorted(str(p) for p in images)  # each file once
    store = index._synced_store(durable=False)
    assert np.array_equal(np.sort(store.ids()), index.catalog.vector_ids())
    index.close()


def _files_in(catalog: Path) -> int:
    if not catalog.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=5) as db:
            return int(db.execute("SELECT count(*) FROM files").fetchone()[0])
    except sqlite3.DatabaseError:
        return 0  # the schema is being created
