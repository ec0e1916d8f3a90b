"""Machine-written text detection (`zeroshot detect-generated`, `zeroshot.audit.generated`, issue 30).

The statistics are checked against direct computations (the Binoculars authors' formula in PyTorch, ranks
and entropies by brute force), the models' whole distributions against the scores every backend already
gives, and the decisions on the toy bigram LM, whose greedy text is by construction machine-like.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from zeroshot.audit import generated
from zeroshot.audit.generated import (
    Calibration,
    DetectConfig,
    binoculars_ratio,
    fit_calibration,
    score_texts,
    token_statistics,
)
from zeroshot.cli import main
from zeroshot.errors import UserError
from zeroshot.models.lm import GenerationConfig
from zeroshot.models.loader import llama_cpp_available, load_lm
from zeroshot.numerics import log_softmax
from zeroshot.testing import FakeLM

HUMAN = ("Ministers met union leaders on Tuesday, but the talks over pensions broke up without a deal "
         "and a strike is now likely next month.")


def greedy_text(lm: FakeLM, prompt: str = "The ", n: int = 60) -> str:
    return prompt + lm.generate(prompt, GenerationConfig(max_new_tokens=n))


def random_text(n: int = 60, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    return "".join(chr(c) for c in rng.integers(97, 123, n))


class ShiftedLM(FakeLM):
    """The toy LM with another tokenizer: every byte is read as the next one."""

    def tokenize(self, text, add_bos=False, special=False):
        return [(t + 1) % 256 if t != self.BOS else t for t in super().tokenize(text, add_bos, special)]


# -- the statistics ------------------------------------------------------------------------------------

def test_token_statistics_are_ranks_and_entropies_by_brute_force():
    rows = log_softmax(np.random.default_rng(0).normal(0, 3, (7, 50))).astype(np.float32)
    ids = [3, 0, 49, 7, 7, 12, 1]
    stats = token_statistics(rows, ids)
    for t, token in enumerate(ids):
        assert stats["rank"][t] == 1 + sum(rows[t, v] > rows[t, token] for v in range(50))
        p = np.exp(rows[t].astype(np.float64))
        assert stats["entropy"][t] == pytest.approx(-(p * np.log(p)).sum(), rel=1e-5)
        assert stats["logprob"][t] == pytest.approx(rows[t, token])
    best = rows.argmax(axis=1)
    assert (token_statistics(rows, best)["rank"] == 1).all()


def test_float32_log_softmax_over_a_whole_vocabulary_matches_float64():
    # The llama.cpp backend's distributions are computed in float32 (as PyTorch's are), for speed.
    logits = np.random.default_rng(2).normal(0, 4, (3, 151_936)).astype(np.float32)
    kept = logits.copy()
    wide, narrow = log_softmax(logits), log_softmax(logits, dtype=np.float32)
    assert narrow.dtype == np.float32 and wide.dtype == np.float64
    assert np.abs(narrow - wide).max() < 1e-4
    assert np.exp(narrow.astype(np.float64)).sum(axis=1) == pytest.approx(1.0, abs=1e-4)
    assert np.array_equal(logits, kept)  # the caller's array is left as it was


def test_binoculars_ratio_is_the_authors_formula():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    observer_logits, performer_logits = rng.normal(0, 2, (2, 9, 40))
    ids = rng.integers(0, 40, 9)
    # binoculars/metrics.py: ppl = CE(performer logits, ids); x_ppl = CE(performer logits, softmax(observer))
    ce = torch.nn.CrossEntropyLoss(reduction="none")
    perf, obs = torch.tensor(performer_logits), torch.tensor(observer_logits)
    ppl = ce(perf, torch.tensor(ids)).mean()
    x_ppl = ce(perf, torch.softmax(obs, dim=-1)).mean()
    ours = binoculars_ratio(log_softmax(observer_logits), log_softmax(performer_logits), ids)
    assert ours == pytest.approx(float(ppl / x_ppl), rel=1e-6)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from zeroshot.testing import save_random_lm

    return load_lm(save_random_lm(tmp_path_factory.mktemp("lm")), backend="transformers")


@pytest.fixture(scope="module", params=["transformers", "llama.cpp"])
def lm(request, tiny_lm):
    if request.param == "transformers":
        return tiny_lm
    if not llama_cpp_available():
        pytest.skip("llama-cpp-python is not installed")
    return load_lm(None, backend="llama.cpp")


def test_whole_distributions_hold_the_scores_every_backend_gives(lm):
    context = lm.tokenize("Headline: talks fail.", add_bos=True)
    conts = [lm.tokenize(" The strike goes ahead on Monday."), lm.tokenize(" x"), []]
    rows = lm.continuation_distributions(context, conts)
    scores = lm.continuation_logprobs(context, conts, reuse_cache=False)
    for r, c, s in zip(rows, conts, scores, strict=True):
        assert r.shape == (len(c), lm.vocab_size) and r.dtype == np.float32
        np.testing.assert_allclose(np.exp(r.astype(np.float64)).sum(axis=1), 1.0, atol=1e-4)
        np.testing.assert_allclose(r[np.arange(len(c)), c], s, atol=2e-4)
    # A second text after the same context reuses it and changes nothing.
    again = lm.continuation_distributions(context, conts[:1])[0]
    np.testing.assert_allclose(again, rows[0], atol=1e-5)


# -- the decisions on the toy LM -----------------------------------------------------------------------

# Entropy is left out: on a random bigram table the greedy path's rows are no surer than others'.
@pytest.mark.parametrize("detector", ["binoculars", "log-likelihood", "log-rank"])
def test_greedy_text_is_judged_more_machine_like_than_random_text(detector):
    observer = FakeLM(seed=0)
    performer = observer if detector == "binoculars" else None
    texts = [greedy_text(observer), random_text()]
    result = score_texts(texts, observer, performer, DetectConfig(detector, threshold=0.0, min_tokens=8))
    machine, human = result.texts
    assert machine.score > human.score
    if detector == "log-rank":
        assert machine.raw < human.raw  # the greedy path is (nearly) always the first choice
    assert result.tokens_per_second > 0 and result.threshold_source == "given"
    assert json.loads(json.dumps(result.to_dict()))["texts"][0]["tokens"] == machine.tokens


def test_short_texts_are_refused_not_guessed():
    with pytest.raises(UserError, match=r"too short to judge: text 1 \(3 tokens\).*at least 32 tokens"):
        score_texts([HUMAN, "Hi!"], FakeLM(), None, DetectConfig("log-rank"))


def test_binoculars_refuses_models_with_different_tokenizers(monkeypatch):
    models = {"a": FakeLM(seed=0), "b": ShiftedLM(seed=1)}
    monkeypatch.setattr("zeroshot.models.loader.load_lm", lambda name, backend="auto": models[name])
    with pytest.raises(UserError, match="same tokenizer"):
        generated.load_models(DetectConfig("binoculars", "a", "b"))
    same = {"a": FakeLM(seed=0), "b": FakeLM(seed=1)}
    monkeypatch.setattr("zeroshot.models.loader.load_lm", lambda name, backend="auto": same[name])
    assert generated.load_models(DetectConfig("binoculars", "a", "b"))[1] is same["b"]


def test_calibration_threshold_flags_at_most_the_target_share_of_humans(tmp_path):
    rng = np.random.default_rng(0)
    human, machine = rng.normal(0, 1, 300), rng.normal(2, 1, 300)
    cal = fit_calibration(human, machine, DetectConfig("log-rank"), target_fpr=0.05)
    assert (human >= cal.threshold).mean() <= 0.05 < (human >= cal.threshold - 0.2).mean()
    assert cal.dev["auroc"] > 0.85
    assert cal.dev["tpr"] == pytest.approx((machine >= cal.threshold).mean(), abs=1e-4)
    assert cal.probability(-2) < cal.probability(1) < cal.probability(4)
    assert Calibration.load(cal.save(tmp_path / "cal.json")) == cal
    with pytest.raises(UserError, match="for the log-rank detector, not entropy"):
        DetectConfig("entropy", calibration=str(tmp_path / "cal.json")).check()
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(UserError, match="not a calibration file"):
        Calibration.load(tmp_path / "bad.json")


# -- the command line ----------------------------------------------------------------------------------

def _cli(args, monkeypatch, models=None):
    models = models or {}

    def fake_load(name=None, backend="auto", **kw):
        return models.get(name) or FakeLM(seed=0)

    monkeypatch.setattr("zeroshot.models.loader.load_lm", fake_load)
    return main(args)


def test_cli_fits_a_calibration_then_decides_with_it(tmp_path, monkeypatch, capsys):
    lm = FakeLM(seed=0)
    rows = ([{"text": greedy_text(lm, f"{w} "), "label": "machine"} for w in ("The", "A", "One", "So", "We")]
            + [{"text": random_text(seed=s), "label": "human"} for s in range(5)])
    labelled = tmp_path / "dev.jsonl"
    labelled.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cal = tmp_path / "cal.json"
    code = _cli(["detect-generated", "--texts-file", str(labelled), "--detector", "log-rank",
                 "--model", "toy", "--min-tokens", "8", "--fit-calibration", str(cal), "-q"], monkeypatch)
    assert code == 0 and json.loads(cal.read_text())["detector"] == "log-rank"
    capsys.readouterr()
    code = _cli(["detect-generated", greedy_text(lm, "It "), random_text(seed=9), "--detector", "log-rank",
                 "--model", "toy", "--min-tokens", "8", "--calibration", str(cal), "--format", "json"],
                monkeypatch)
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["threshold_source"] == "calibration file"
    assert [t["machine"] for t in data["texts"]] == [True, False]
    assert data["texts"][0]["probability"] > 0.5 > data["texts"][1]["probability"]


@pytest.mark.parametrize("args, message", [
    (["--detector", "gptzero", "x"], "unknown detector 'gptzero'"),
    (["Hi there."], "too short to judge"),
    (["--detector", "entropy", "--performer", "b", "x"], "for the binoculars detector only"),
    (["--performer", "shifted", HUMAN], "same tokenizer"),
    (["--texts-file", "BADLABEL"], 'label must be "human" or "machine"'),
    (["--texts-file", "NOFILE"], "no such file"),
    ([], "nothing to judge"),
    (["--fit-calibration", "c.json", HUMAN], "needs --texts-file"),
    (["--min-tokens", "1", HUMAN], "at least 2 tokens"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": HUMAN, "label": "robot"}) + "\n")
    swap = {"BADLABEL": str(bad), "NOFILE": str(tmp_path / "missing.jsonl")}
    args = [swap.get(a, a) for a in args]
    code = _cli(["detect-generated", *args], monkeypatch, {"shifted": ShiftedLM()})
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: ") and message in err


@pytest.mark.skipif(not llama_cpp_available(), reason="llama-cpp-python is not installed")
def test_real_model_finds_its_own_greedy_text_machine_like():
    lm = load_lm(None, backend="llama.cpp")
    context = "Strike talks collapse\n\nMinisters and union leaders failed to agree on pensions on Tuesday."
    machine = lm.generate(context + " ", GenerationConfig(max_new_tokens=48, ignore_eos=True))
    human = ("A walkout by half a million council staff now looks likely next month, the Unison union said, "
             "after what it called a final offer turned out to be no offer at all.")
    for detector in ("log-likelihood", "log-rank"):
        result = score_texts([machine, human], lm, None, DetectConfig(detector, min_tokens=16), context)
        assert result.texts[0].score > result.texts[1].score, detector


# -- the server ------------------------------------------------------------------------------------------

def _server(monkeypatch, performer: str | None, models: dict):
    from fastapi.testclient import TestClient

    from zeroshot.server.app import create_app
    from zeroshot.server.settings import ServerSettings

    monkeypatch.setattr("zeroshot.server.resources.load_lm", lambda name=None, backend="auto": models[name])
    settings = ServerSettings(model="smollm2", performer=performer)
    return TestClient(create_app(settings), base_url="http://127.0.0.1")


def test_server_route_judges_texts_like_the_library(monkeypatch):
    lm = FakeLM(seed=0)
    texts = [greedy_text(lm), random_text()]
    with _server(monkeypatch, "smollm2-135m", {"smollm2": lm, "smollm2-135m": FakeLM(seed=0)}) as client:
        answer = client.post("/v1/detect-generated", json={"texts": texts, "threshold": -1.0})
        assert answer.status_code == 200, answer.text
        data = answer.json()
        assert data["detector"] == "binoculars" and data["threshold_source"] == "given"
        local = score_texts(texts, lm, lm, DetectConfig("binoculars", threshold=-1.0))
        assert [t["score"] for t in data["texts"]] == [t.score for t in local.texts]
        for body, status, message in [
            ({"texts": ["Too short."]}, 422, "too short to judge"),
            ({"texts": texts, "detector": "gptzero"}, 422, "unknown detector"),
            ({"texts": texts, "min_tokens": 1}, 422, "at least 2 tokens"),
            ({"texts": [], "detector": "log-rank"}, 422, "at least one text"),
            ({"texts": texts, "colour": "red"}, 422, "colour"),
        ]:
            answer = client.post("/v1/detect-generated", json=body)
            assert answer.status_code == status and message in answer.text, (body, answer.text)


def test_server_without_a_usable_performer_says_why(monkeypatch):
    texts = [HUMAN]
    with _server(monkeypatch, None, {"smollm2": FakeLM()}) as client:
        answer = client.post("/v1/detect-generated", json={"texts": texts, "detector": "binoculars"})
        assert answer.status_code == 503 and "--performer" in answer.text
        assert client.post("/v1/detect-generated", json={"texts": texts}).json()["detector"] == "log-rank"
    with _server(monkeypatch, "smollm2-135m", {"smollm2": FakeLM(), "smollm2-135m": ShiftedLM()}) as client:
        answer = client.post("/v1/detect-generated", json={"texts": texts})
        assert answer.status_code == 503 and "same tokenizer" in answer.text


def test_web_tab_judges_pasted_texts(monkeypatch):
    """The page's "Machine-written?" tab, in headless Debian Chromium (skipped where it is absent)."""
    from pathlib import Path

    from zeroshot.server.app import create_app
    from zeroshot.server.background import serve_in_thread
    from zeroshot.server.settings import ServerSettings

    chromium = "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip(f"{chromium} is absent: install Debian's chromium (make setup-browser)")
    sync_api = pytest.importorskip("playwright.sync_api")
    lm = FakeLM(seed=0)
    monkeypatch.setattr("zeroshot.server.resources.load_lm", lambda name=None, backend="auto": lm)
    app = create_app(ServerSettings(model="smollm2"))
    with serve_in_thread(app) as base_url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium,
                                             args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(base_url + "/#generated")
        page.fill("#generated-inputs", f"{greedy_text(lm)}\n\n{random_text()}")
        page.click("#generated-form button[type=submit]")
        sync_api.expect(page.locator("#generated-results tbody tr")).to_have_count(2)
        sync_api.expect(page.locator("#generated-status")).to_contain_text("log-rank: 2 text(s)")
        page.fill("#generated-inputs", "Too short.")
        page.click("#generated-form button[type=submit]")
        sync_api.expect(page.locator("#generated-status")).to_contain_text("too short to judge")
        browser.close()
