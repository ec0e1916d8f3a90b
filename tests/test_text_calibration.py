"""`--calibrate auto`: leave-one-out on the pool picks the better scoring, never sees the documents, and
reaches the JSON and the terminal; `--calibrate` keeps its old flag spellings."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest

from zeroshot.cli import main
from zeroshot.cli.options import spell_flag_values
from zeroshot.errors import UserError
from zeroshot.eval.runs import EvalConfig, evaluate
from zeroshot.eval.tasks import Doc, Task, load_task
from zeroshot.testing import FakeLM, save_sentiment_task, write_jsonl
from zeroshot.text.calibration import CalibrationChoice, choose_calibration
from zeroshot.text.classify import ZeroShotTextClassifier
from zeroshot.text.prompts import Demonstration, PromptTemplate

# The query is the text itself and the answer follows it with no space, so a label's score is
# table[last byte of the text, label byte]: a text ending in "1" is an "x", one ending in "2" a "y",
# and the content-free input "N/A" ends in "A".
TEMPLATE = PromptTemplate(query="{text}", answer="{answer}", example_separator="\n")
LABELS = ["x", "y"]
POOL = [Demonstration(f"pool {i} {'12'[i % 2]}", "xy"[i % 2]) for i in range(10)]


def scored_lm(rows: dict[str, tuple[float, float]]) -> FakeLM:
    """A FakeLM whose log p(x), log p(y) after a text ending in each character of `rows` are given."""
    lm = FakeLM()
    for last, (x, y) in rows.items():
        lm.table[ord(last), ord("x")], lm.table[ord(last), ord("y")] = x, y
    return lm


# A prior for "y" that outweighs the evidence: plain says "y" for every text (half right); the
# content-free input shows the prior, and dividing it out leaves the evidence (all right).
BIASED = {"1": (-2.0, -1.0), "2": (-4.0, -1.0), "A": (-3.0, -1.0)}
# A fair model, but a content-free input that pulls hard towards "y": calibrating it away says "x" to
# everything (half right) where plain was right every time.
FAIR_BUT_ODD_NA = {"1": (-1.0, -2.0), "2": (-2.0, -1.0), "A": (-5.0, -1.0)}


@pytest.mark.parametrize("k", [0, 1, 4])
def test_auto_calibrates_where_a_label_prior_swamps_the_evidence(k):
    choice = choose_calibration(scored_lm(BIASED), POOL, LABELS, k, template=TEMPLATE)
    assert choice.calibrate and choice.choice == "calibrated"
    assert (choice.correct_plain, choice.correct_calibrated, choice.n_examples, choice.k) == (5, 10, 10, k)
    assert "calibrated scoring got more" in choice.reason


@pytest.mark.parametrize("k", [0, 2])
def test_auto_keeps_plain_where_calibration_hurts(k):
    choice = choose_calibration(scored_lm(FAIR_BUT_ODD_NA), POOL, LABELS, k, template=TEMPLATE)
    assert not choice.calibrate and (choice.correct_plain, choice.correct_calibrated) == (10, 5)


def test_a_tie_keeps_plain_and_says_so():
    fair = {"1": (-1.0, -2.0), "2": (-2.0, -1.0), "A": (-1.0, -1.0)}  # a flat prior: both right everywhere
    choice = choose_calibration(scored_lm(fair), POOL, LABELS, 1, template=TEMPLATE)
    assert not choice.calibrate and choice.reason == "a tie keeps plain scoring"
    assert "a tie keeps plain" in choice.describe()


def test_cost_is_capped_reported_and_the_draw_seeded():
    lm = scored_lm(BIASED)
    capped = choose_calibration(lm, POOL, LABELS, 2, template=TEMPLATE, max_examples=3, seed=7)
    assert capped.n_examples == 3 and capped.seed == 7 and capped.seconds > 0
    again = choose_calibration(lm, POOL, LABELS, 2, template=TEMPLATE, max_examples=3, seed=7)
    assert again.to_dict() | {"seconds": 0} == capped.to_dict() | {"seconds": 0}
    assert CalibrationChoice.from_dict(capped.to_dict()) == capped.__class__(
        **{**capped.__dict__, "seconds": round(capped.seconds, 3)})
    # K is capped by the pool: two examples, each held out from the other, see one demonstration.
    assert choose_calibration(lm, POOL[:2], LABELS, 8, template=TEMPLATE).k == 1
    with pytest.raises(UserError, match="at least 1 pool example"):
        choose_calibration(lm, POOL, LABELS, 1, max_examples=0)


def test_a_pool_too_small_falls_back_to_plain_with_a_reason():
    for pool in ([], POOL[:1]):
        choice = choose_calibration(FakeLM(), pool, LABELS, 1)
        assert not choice.calibrate and choice.n_examples == 0 and "plain scoring" in choice.reason


def test_the_choice_takes_no_documents():
    """Its inputs are the LM, the pool, the labels and the prompt format: nothing to pass documents in."""
    parameters = set(inspect.signature(choose_calibration).parameters)
    assert parameters == {"lm", "pool", "labels", "k", "description", "template", "normalization", "balanced",
                          "seed", "max_examples", "draws", "content_free_inputs", "max_chars"}


class RecordingLM(FakeLM):
    """Keeps every context it scores while `recording` is set."""

    recording = False

    def __init__(self, rows):
        super().__init__()
        self.table = scored_lm(rows).table
        self.seen: list[str] = []

    def continuation_logprobs(self, context, continuations, reuse_cache=True):
        if self.recording:
            self.seen.append(self.detokenize(context))
        return super().continuation_logprobs(context, continuations, reuse_cache)


def _task(docs: list[Doc]) -> Task:
    pool = [Doc(i + 1, d.text, d.answer, tuple(LABELS)) for i, d in enumerate(POOL)]
    return Task("xy", "classification", "", TEMPLATE, pool, docs, list(LABELS))


def test_evaluate_chooses_from_the_pool_and_never_from_the_documents(monkeypatch):
    import zeroshot.eval.runs as runs

    lm = RecordingLM(BIASED)
    real = runs.choose_calibration

    def recorded(*args, **kwargs):
        lm.recording = True
        try:
            return real(*args, **kwargs)
        finally:
            lm.recording = False

    monkeypatch.setattr(runs, "choose_calibration", recorded)
    docs = [Doc(100 + i, f"DOC {i} {'1' if i % 2 else '2'}", "x" if i % 2 else "y", tuple(LABELS))
            for i in range(6)]
    report = evaluate(lm, EvalConfig(_task(docs), shots=[0, 2], seeds=3, calibrate="auto"), progress=False)
    assert lm.seen and all("DOC" not in context for context in lm.seen)
    assert any("pool" in context for context in lm.seen)
    assert set(report.calibration) == {0, 2} and report.calibrate == "auto"
    assert all(choice["choice"] == "calibrated" for choice in report.calibration.values())
    assert list(report.series) == ["plain", "calibrated", "auto"]
    for i in range(2):
        assert report.series["auto"][i].per_seed == report.series["calibrated"][i].per_seed
    # Other documents, other answers: the same choices, as the documents are no input of them.
    flipped = [Doc(d.line, d.query.replace("DOC", "OTHER"), "y" if d.target == "x" else "x", d.choices)
               for d in docs]
    other = evaluate(RecordingLM(BIASED), EvalConfig(_task(flipped), shots=[0, 2], seeds=3, calibrate="auto"),
                     progress=False)

    def without_seconds(choices):
        return {k: {**v, "seconds": 0} for k, v in choices.items()}

    assert without_seconds(other.calibration) == without_seconds(report.calibration)


def test_calibrate_values_are_checked_when_the_config_is_built(tmp_path):
    task = load_task(save_sentiment_task(tmp_path / "sentiment.jsonl"))
    assert EvalConfig(task, shots=[0, 1], calibrate=True).calibrate == "on"  # the old boolean still works
    assert EvalConfig(task, shots=[0, 1], calibrate=False).calibrate == "off"
    with pytest.raises(UserError, match="--calibrate must be one of auto, on, off, not 'maybe'"):
        EvalConfig(task, shots=[0, 1], calibrate="maybe")
    with pytest.raises(UserError, match="calibrate_examples must be at least 1"):
        EvalConfig(task, shots=[0, 1], calibrate="auto", calibrate_examples=0)


def test_the_classifier_chooses_at_fit_and_reports_it():
    texts = [d.text for d in POOL]
    clf = ZeroShotTextClassifier(scored_lm(BIASED), LABELS, template=TEMPLATE, calibrate="auto", n_shots=2)
    clf.fit(texts, [d.answer for d in POOL])
    assert clf.calibrate_ and clf.calibration_.k == 2 and clf.calibration_.n_examples == 10
    result = clf.classify(["new 1", "new 2"]).to_dict()
    assert result["calibrate"] is True and result["calibration"]["choice"] == "calibrated"
    assert [row["label"] for row in result["results"]] == ["x", "y"]
    # No pool and no demonstrations: plain, and why.
    bare = ZeroShotTextClassifier(scored_lm(BIASED), LABELS, template=TEMPLATE, calibrate="auto").fit()
    assert not bare.calibrate_ and "no labelled examples" in bare.calibration_.reason
    assert bare.classify(["new 1"]).to_dict()["calibration"]["n_examples"] == 0
    # on/off leave the output as it was, without a "calibration" entry.
    plain = ZeroShotTextClassifier(FakeLM(), LABELS, calibrate=True).classify(["a"]).to_dict()
    assert "calibration" not in plain
    with pytest.raises(UserError, match="calibrate must be one of"):
        ZeroShotTextClassifier(FakeLM(), LABELS, calibrate="sometimes").fit()


# --- the command line -----------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "expected"), [
    (["eval-text", "t.jsonl", "--calibrate"], ["eval-text", "t.jsonl", "--calibrate=on"]),
    (["eval-text", "--calibrate", "t.jsonl"], ["eval-text", "--calibrate=on", "t.jsonl"]),
    (["eval-text", "--calibrate", "bbc-news"], ["eval-text", "--calibrate=on", "bbc-news"]),
    (["eval-text", "t.jsonl", "--calibrate", "--shots", "0"], ["eval-text", "t.jsonl", "--calibrate=on",
                                                               "--shots", "0"]),
    (["eval-text", "t.jsonl", "--calibrate", "auto"], ["eval-text", "t.jsonl", "--calibrate=auto"]),
    (["eval-text", "t.jsonl", "--calibrate", "maybe"], ["eval-text", "t.jsonl", "--calibrate=maybe"]),
    (["eval-text", "t.jsonl", "--no-calibrate"], ["eval-text", "t.jsonl", "--calibrate=off"]),
    (["classify-text", "--calibrate", "A whole sentence.", "--labels", "a,b"],
     ["classify-text", "--calibrate=on", "A whole sentence.", "--labels", "a,b"]),
    (["classify-text", "x", "--", "--calibrate"], ["classify-text", "x", "--", "--calibrate"]),
])
def test_the_old_flag_spellings_are_written_out(argv, expected):
    assert spell_flag_values(argv) == expected


@pytest.fixture
def no_model(monkeypatch):
    """`load_lm` that fails the test if called: a bad value must be refused before any model loads."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("zeroshot.models.loader.load_lm", refuse)


@pytest.mark.parametrize("argv", [["--calibrate", "maybe"], ["--calibrate=sometimes"]])
def test_a_bad_calibrate_value_exits_2_with_one_line_before_any_model_loads(tmp_path, capsys, no_model, argv):
    task = save_sentiment_task(tmp_path / "sentiment.jsonl")
    assert main(["eval-text", str(task), "--shots", "0,1", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --calibrate must be one of auto, on, off, not '")
    assert main(["classify-text", "some text", "--labels", "a,b", *argv]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def _sized_lm() -> FakeLM:
    lm = FakeLM()
    lm.n_params = 1000  # a size, as real backends report: the accuracy-against-size figure has a point
    return lm


def _fake_load(monkeypatch):
    monkeypatch.setattr("zeroshot.models.loader.load_lm", lambda *args, **kwargs: _sized_lm())


def test_eval_text_auto_records_the_choice_in_the_json_and_one_line(tmp_path, capsys, monkeypatch):
    _fake_load(monkeypatch)
    task = save_sentiment_task(tmp_path / "sentiment.jsonl")
    out = tmp_path / "out"
    assert main(["eval-text", str(task), "--shots", "0,2", "--seeds", "2", "--calibrate", "auto", "--quiet",
                 "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    lines = [line for line in printed if line.startswith("calibration auto")]
    assert len(lines) == 1 and "K=0 " in lines[0] and "K=2 " in lines[0]
    report = json.loads((out / "sentiment-scaling.json").read_text())["models"][0]
    assert report["calibrate"] == "auto" and set(report["calibration"]) == {"0", "2"}
    choice = report["calibration"]["2"]
    assert choice["choice"] in ("plain", "calibrated") and choice["rule"].startswith("leave-one-out")
    assert choice["n_examples"] == 6 and set(choice["correct"]) == {"plain", "calibrated"}
    assert [s for s in report["series"]] == ["plain", "calibrated", "auto"]


@pytest.mark.parametrize(("flag", "series"), [
    (["--calibrate"], ["plain", "calibrated"]), (["--no-calibrate"], ["plain"]),
    ([], ["plain", "calibrated", "auto"]),  # auto is the default (issue 27)
    (["--calibrate", "on"], ["plain", "calibrated"]), (["--calibrate=off"], ["plain"]),
])
def test_old_scripts_keep_working(tmp_path, capsys, monkeypatch, flag, series):
    _fake_load(monkeypatch)
    task = save_sentiment_task(tmp_path / "sentiment.jsonl")
    out = tmp_path / "out"
    # The flag before the task, as an old script may have put it: the path is not taken for its value.
    assert main(["eval-text", *flag, str(task), "--shots", "0", "--seeds", "1", "-q",
                 "--output-dir", str(out)]) == 0
    report = json.loads((out / "sentiment-scaling.json").read_text())["models"][0]
    assert list(report["series"]) == series
    assert (report["calibration"] is None) == ("auto" not in series)


def test_classify_text_auto_with_and_without_examples(tmp_path, capsys, monkeypatch):
    _fake_load(monkeypatch)
    pairs = (("good", "positive"), ("bad", "negative"))
    rows = [{"text": f"{word} {i}", "label": label} for word, label in pairs for i in range(3)]
    examples = write_jsonl(tmp_path / "ex.jsonl", rows)
    args = ["classify-text", "fine", "--labels", "negative,positive", "--calibrate", "auto"]
    assert main([*args, "--examples", str(examples), "--shots", "2", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["calibration"]["n_examples"] == 6 and data["calibration"]["k"] == 2
    assert data["calibrate"] == (data["calibration"]["choice"] == "calibrated")
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "calibration auto: plain (no labelled examples to choose from, so plain scoring)" in text
    assert np.isclose(sum(float(p.split("=")[1]) for p in text.splitlines()[-1].split("\t")[2].split()), 1,
                      atol=1e-2)


def test_no_held_out_example_is_among_its_own_demonstrations():
    lm = RecordingLM(BIASED)
    lm.recording = True
    for balanced in (False, True):
        choose_calibration(lm, POOL, LABELS, 4, template=TEMPLATE, balanced=balanced, draws=3)
    queries = [context.rsplit("\n", 1) for context in lm.seen]
    assert len(queries) > 10 and all(query != "N/A" or prefix for prefix, query in queries)
    assert all(query not in prefix for prefix, query in queries if query != "N/A")
