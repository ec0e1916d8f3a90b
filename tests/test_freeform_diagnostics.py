"""Free-form answers that explain themselves: why answers came out empty, in the JSON, the printed table
and the sample log (issue 27)."""

from __future__ import annotations

import json

import pytest

from zeroshot.cli import main
from zeroshot.errors import UserError
from zeroshot.eval.diagnose import EmptyAnswers, EmptyTally
from zeroshot.eval.extract import AnswerExtractor
from zeroshot.eval.runs import EvalConfig, evaluate, format_table
from zeroshot.eval.tasks import load_task
from zeroshot.testing import FakeLM, write_jsonl

CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
          "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
QUESTIONS = {"What is the capital of Italy?": "Rome", "What colour is grass?": "green",
             "What animal says moo?": "cow", "What is frozen water called?": "ice",
             "What is the opposite of up?": "down"}


def capitals(tmp_path, **config):
    """A "Q: ... A:" task: two demonstrations in the pool, five questions to answer."""
    head = {"config": {"name": "qa", "doc_to_text": "Q: {question} A:", "doc_to_target": "{answer}",
                       **config}}
    pool = [{"question": "What is the capital of France?", "answer": "Paris", "split": "train"},
            {"question": "How many legs does a spider have?", "answer": "eight", "split": "train"}]
    docs = [{"question": q, "answer": a} for q, a in QUESTIONS.items()]
    return write_jsonl(tmp_path / "qa.jsonl", [head, *pool, *docs])


def right_answer(prompt: str) -> str:
    """What a model that knows every answer writes: the last question's answer, then a new line."""
    question = prompt.rsplit("Q: ", 1)[1].split(" A:")[0]
    return f" {QUESTIONS[question]}\nQ: next"


class Counting(FakeLM):
    """FakeLM whose every `generate` call is counted (to see that only empty answers cost a probe)."""

    def __init__(self, reply, chat: bool = False) -> None:
        super().__init__(reply=reply)
        self.calls = 0
        self.chat_template = CHATML if chat else None
        self.n_params = 1000  # the scaling figure plots models by size

    def generate(self, prompt, config=None):
        self.calls += 1
        return super().generate(prompt, config)


def run_cli(tmp_path, monkeypatch, lm, task, *options):
    """`zeroshot eval-text TASK --log-samples` with `lm`: (exit code, the report's JSON, sample records)."""
    monkeypatch.setattr("zeroshot.models.loader.load_lm", lambda model=None, backend="auto", **kw: lm)
    out = tmp_path / "out"
    code = main(["eval-text", str(task), "--seeds", "1", "--log-samples", "-q", "--output-dir", str(out),
                 *options])
    report = json.loads((out / "qa-scaling.json").read_text())["models"][0]
    log = out / "samples" / "qa-fake-bigram.jsonl"
    samples = [json.loads(line) for line in log.read_text().splitlines()]
    return code, report, samples


def test_a_model_that_ends_at_once_is_diagnosed_with_its_fix(tmp_path, monkeypatch, capsys):
    lm = Counting(reply=lambda prompt: "")  # end-of-sequence as the first token, every time
    code, report, samples = run_cli(tmp_path, monkeypatch, lm, capitals(tmp_path), "--shots", "0")
    assert code == 0  # a diagnosis is not an error
    empty = report["empty_answers"]
    assert empty["answers"] == 5 and empty["empty"] == 5 and empty["rate"] == 1.0
    assert empty["causes"] == {"end_of_sequence": 5, "stop_at_start": 0, "extracted_empty": 0}
    assert empty["flagged_k"] == [0] and empty["cause"] == "end_of_sequence"
    assert empty["by_k"] == [{"k": 0, "answers": 5, "empty": 5, "rate": 1.0, "examples": {},
                              "causes": {"end_of_sequence": 5, "stop_at_start": 0, "extracted_empty": 0}}]
    assert empty["fixes"] == {"end_of_sequence": "--chat-template (an instruct model answers in its own "
                                                 "turn); or demonstrations (--shots 2), which show that an "
                                                 "answer follows"}
    printed = capsys.readouterr().out.splitlines()
    warning = [line for line in printed if line.startswith("warning:")]
    assert warning == ["warning: many answers are empty (K=0: 5 of 5 (100%)): the model's first token was "
                       "end-of-sequence in 5"]
    assert printed[printed.index(warning[0]) + 1] == f"  fix: {empty['fixes']['end_of_sequence']}"
    assert report["series"]["exact_match"][0]["mean"] == 0.0
    assert len(samples) == 5
    for record in samples:  # the raw generation beside the extracted answer, and why it is empty
        assert record["generation"] == "" and record["answer"] == "" and record["stop"] == ["\n"]
        assert record["empty_cause"] == "end_of_sequence" and record["unstopped"] == ""
    assert lm.calls == 10  # each empty answer: its generation and one probe without the stop


def test_a_model_that_starts_with_the_stop_sequence_is_told_apart(tmp_path, monkeypatch, capsys):
    lm = Counting(reply=lambda prompt: "\n" + right_answer(prompt).lstrip())  # "\nRome\nQ: next"
    code, report, samples = run_cli(tmp_path, monkeypatch, lm, capitals(tmp_path), "--shots", "0")
    assert code == 0
    empty = report["empty_answers"]
    assert empty["causes"] == {"end_of_sequence": 0, "stop_at_start": 5, "extracted_empty": 0}
    assert empty["cause"] == "stop_at_start" and empty["by_k"][0]["examples"] == {
        "stop_at_start": "\nRome\nQ: next"}
    fix = empty["fixes"]["stop_at_start"]
    assert "--chat-template" in fix and "--shots 2" in fix
    assert 'another stop than ["\\n"] in the task\'s config line, e.g. "stop": ["\\n\\n"]' in fix
    out = capsys.readouterr().out
    assert ('warning: many answers are empty (K=0: 5 of 5 (100%)): the stop ["\\n"] matched at the very '
            'start in 5, e.g. "\\nRome\\nQ: next"') in out.splitlines()
    first = samples[0]
    assert (first["generation"], first["answer"], first["empty_cause"]) == ("", "", "stop_at_start")
    assert first["unstopped"] == "\nRome\nQ: next"


def test_the_suggested_stop_and_filters_do_fix_it(tmp_path, monkeypatch, capsys):
    lm = Counting(reply=lambda prompt: "\n" + right_answer(prompt).lstrip())
    task = capitals(tmp_path, stop=["\n\n"], filters=["strip", "first_line"])
    code, report, samples = run_cli(tmp_path, monkeypatch, lm, task, "--shots", "0")
    assert code == 0 and report["empty_answers"]["warning"] is None
    assert report["series"]["exact_match"][0]["mean"] == 1.0
    assert samples[0]["stop"] == ["\n\n"] and samples[0]["generation"] == "\nRome\nQ: next"
    assert samples[0]["answer"] == "Rome" and "empty_cause" not in samples[0]
    assert "warning" not in capsys.readouterr().out


def test_a_model_that_answers_gets_no_warning(tmp_path, monkeypatch, capsys):
    lm = Counting(reply=right_answer)
    code, report, samples = run_cli(tmp_path, monkeypatch, lm, capitals(tmp_path), "--shots", "0,2")
    assert code == 0
    empty = report["empty_answers"]
    assert empty["empty"] == 0 and empty["warning"] is None and empty["cause"] is None
    assert empty["fixes"] == {} and empty["flagged_k"] == []
    assert [p["mean"] for p in report["series"]["exact_match"]] == [1.0, 1.0]
    assert "warning" not in capsys.readouterr().out
    assert {(r["generation"], r["answer"]) for r in samples if r["doc_id"] == 4} == {(" Rome", "Rome")}
    assert not any("empty_cause" in r for r in samples)
    assert lm.calls == 5 + 5  # K=0 and K=2 with one seed: no probe for an answer that is not empty


def test_filters_that_leave_nothing_are_named(tmp_path):
    lm = FakeLM(reply=lambda prompt: "   \n")  # only white space before the stop
    report = evaluate(lm, EvalConfig(load_task(capitals(tmp_path)), shots=[0], seeds=1), progress=False)
    empty = report.to_dict()["empty_answers"]
    assert empty["causes"]["extracted_empty"] == 5 and empty["cause"] == "extracted_empty"
    assert empty["by_k"][0]["examples"] == {"extracted_empty": "   "}
    assert empty["fixes"]["extracted_empty"].startswith('the task\'s "filters" ["first_line", "strip"]')
    # Without a stop, "\nRome" reaches the filters, and "first_line" keeps its blank first line.
    blank = FakeLM(reply=lambda prompt: "\nRome")
    task = load_task(capitals(tmp_path, stop=[]))
    fix = evaluate(blank, EvalConfig(task, shots=[0], seeds=1), progress=False).empty_answers.fix(
        "extracted_empty")
    assert 'put "strip" before "first_line"' in fix


def test_only_the_k_with_many_empty_answers_is_flagged(tmp_path):
    # Without demonstrations the model ends at once; with them it answers.
    lm = FakeLM(reply=lambda prompt: right_answer(prompt) if "Paris" in prompt or "eight" in prompt else "")
    report = evaluate(lm, EvalConfig(load_task(capitals(tmp_path)), shots=[0, 1, 2], seeds=2), progress=False)
    empty = report.empty_answers
    assert empty.flagged == [0] and [empty.by_k[k].empty for k in (0, 1, 2)] == [5, 0, 0]
    assert [empty.by_k[k].answers for k in (0, 1, 2)] == [5, 10, 10]
    table = format_table(report)
    assert table.splitlines()[-2] == ("warning: many answers are empty (K=0: 5 of 5 (100%)): the model's "
                                      "first token was end-of-sequence in 5")
    assert "--shots 2" in table.splitlines()[-1]


def test_inside_a_chat_template_an_empty_answer_needs_no_probe(tmp_path):
    lm = Counting(reply=lambda prompt: "", chat=True)
    config = EvalConfig(load_task(capitals(tmp_path)), shots=[0], seeds=1, chat_template=True)
    report = evaluate(lm, config, progress=False)
    assert lm.calls == 5  # no stop sequence: only the end of the turn can end an answer at once
    assert report.empty_answers.cause == "end_of_sequence" and report.empty_answers.stop == ()
    assert report.empty_answers.fix("end_of_sequence").startswith("--no-chat-template; or demonstrations")


def test_a_likelihood_task_has_no_empty_answer_report(tmp_path):
    from zeroshot.testing import save_sentiment_task

    report = evaluate(FakeLM(), EvalConfig(load_task(save_sentiment_task(tmp_path / "s.jsonl")), shots=[0],
                                           seeds=1), progress=False)
    assert report.empty_answers is None and report.to_dict()["empty_answers"] is None


def test_runs_checkpointed_before_the_diagnosis_are_left_out():
    runs = {"0:0": {"accuracy": {"exact_match": 0.0}},  # an older checkpoint's record: no "empty"
            "2:0": {"accuracy": {"exact_match": 0.0},
                    "empty": {"answers": 4, "causes": {"stop_at_start": 1}, "examples": {}}}}
    empty = EmptyAnswers.from_runs(runs, [0, 2], chat=False, stop=["\n"], extractor=AnswerExtractor(), pool=0)
    assert empty.by_k[0].answers == 0 and empty.flagged == [2]
    assert "--shots" not in empty.fix("stop_at_start")  # an empty pool: no demonstrations to suggest
    tally = EmptyTally()
    tally.add(None, " Rome")
    assert tally.to_record() == {"answers": 1, "causes": {}, "examples": {}}


@pytest.mark.parametrize("stop, message", [
    ("\n", "stop must be a list of strings"),
    ([""], "stop sequences must be non-empty strings"),
    (["a", "b", "c", "d", "e"], "at most 4 stop sequences"),
])
def test_a_bad_stop_in_the_task_file_is_refused(tmp_path, stop, message):
    with pytest.raises(UserError, match=message):
        EvalConfig(load_task(capitals(tmp_path, stop=stop)), shots=[0], seeds=1)


def test_stop_is_refused_on_a_task_that_generates_nothing(tmp_path, capsys):
    task = write_jsonl(tmp_path / "cls.jsonl", [{"config": {"doc_to_choice": ["a", "b"], "stop": ["\n"]}},
                                                {"text": "t", "label": "a"}])
    assert main(["eval-text", str(task)]) == 2
    assert "stop is for free-form tasks" in capsys.readouterr().err
