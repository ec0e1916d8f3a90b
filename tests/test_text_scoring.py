"""Likelihood scoring: every normalisation and calibration against a hand computation, reuse == naive."""

from __future__ import annotations

import numpy as np
import pytest

from zeroshot.errors import UserError
from zeroshot.numerics import softmax
from zeroshot.testing import FakeLM
from zeroshot.text.classify import MultipleChoiceScorer, ZeroShotTextClassifier
from zeroshot.text.prompts import PromptBuilder
from zeroshot.text.scoring import LikelihoodScorer
from zeroshot.validation import check_labels

BOS = FakeLM.BOS


LABELS = ["sport", "politics", "art"]


def hand_sum(lm: FakeLM, prompt: str, answer: str) -> float:
    """log p(answer | prompt) summed over bytes, straight from the bigram table."""
    ids = [BOS] + list(prompt.encode()) + list(answer.encode())
    start = 1 + len(prompt.encode())
    return sum(lm.logprob(ids[i - 1], ids[i]) for i in range(start, len(ids)))


@pytest.fixture
def lm():
    return FakeLM()


def test_every_normalization_matches_a_hand_computation(lm):
    scorer = LikelihoodScorer(PromptBuilder(lm, "Topic?"), content_free_inputs=["N/A"])
    result = scorer.score("the match", LABELS)
    prompt = "Topic?\n\nText: the match\nAnswer:"
    sums = np.array([hand_sum(lm, prompt, " " + label) for label in LABELS])
    lengths = np.array([len(" " + label) for label in LABELS], dtype=float)  # bytes = tokens = chars here
    np.testing.assert_allclose(result.scores("sum"), sums)
    np.testing.assert_allclose(result.scores("token"), sums / lengths)
    np.testing.assert_allclose(result.scores("char"), sums / lengths)
    np.testing.assert_allclose(result.probabilities("sum"), np.exp(sums) / np.exp(sums).sum())


def test_token_and_char_normalizations_differ_when_tokens_are_not_characters(lm):
    result = LikelihoodScorer(PromptBuilder(lm)).score("é", ["é", "ab"])  # "é" is 2 bytes = 2 tokens, 2 chars
    np.testing.assert_allclose(result.n_tokens, [3, 3])
    np.testing.assert_allclose(result.n_chars, [2, 3])
    np.testing.assert_allclose(result.scores("char"), result.logprob_sum / [2, 3])


def test_calibration_subtracts_the_content_free_score(lm):
    scorer = LikelihoodScorer(PromptBuilder(lm, "Topic?"), content_free_inputs=["N/A"])
    result = scorer.score("the match", LABELS)
    cf = np.array([hand_sum(lm, "Topic?\n\nText: N/A\nAnswer:", " " + label) for label in LABELS])
    for normalization in ("sum", "token", "char"):
        scale = 1 if normalization == "sum" else result.n_tokens
        expected = result.scores(normalization) - cf / scale
        np.testing.assert_allclose(result.probabilities(normalization, calibrate=True), softmax(expected))


def test_calibration_averages_several_content_free_inputs_in_probability_space(lm):
    result = LikelihoodScorer(PromptBuilder(lm), content_free_inputs=["N/A", ""]).score("x", LABELS)
    priors = [
        softmax(np.array([hand_sum(lm, f"Text: {cf}\nAnswer:", " " + lab) for lab in LABELS]))
        for cf in ("N/A", "")
    ]
    expected = softmax(result.logprob_sum - np.log(np.mean(priors, axis=0)))
    np.testing.assert_allclose(result.probabilities("sum", calibrate=True), expected)


def test_classifier_probability_table_and_predictions(lm):
    clf = ZeroShotTextClassifier(lm, LABELS, "Topic?", normalization="char", calibrate=True)
    proba = clf.predict_proba(["a goal", "a vote", "a canvas"])
    assert proba.shape == (3, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1)
    assert clf.predict(["a goal", "a vote", "a canvas"]) == [LABELS[i] for i in proba.argmax(axis=1)]
    assert list(clf.classes_) == LABELS


def test_reuse_equals_naive_and_evaluates_the_shared_prefix_once():
    texts = ["first article", "second article", "third one"]
    demos = [("a goal", "sport"), ("a vote", "politics"), ("a canvas", "art")]
    probs, cost = {}, {}
    for reuse in (True, False):
        lm = FakeLM()
        clf = ZeroShotTextClassifier(lm, LABELS, "Topic?", demos, calibrate=True, reuse_cache=reuse)
        probs[reuse] = clf.predict_proba(texts)
        cost[reuse] = lm.evaluated_tokens
    np.testing.assert_allclose(probs[True], probs[False], rtol=1e-12)
    prefix = len(PromptBuilder(FakeLM(), "Topic?", clf.demonstrations_).prefix_ids(3))
    # Naive pays prefix x labels x (texts + content-free); reuse pays the prefix about once.
    assert cost[False] > len(LABELS) * (len(texts) + 1) * prefix
    assert cost[True] < 2 * prefix + 200


def test_fit_draws_n_shots_demonstrations_reproducibly(lm):
    X = [f"text {i}" for i in range(12)]
    y = [LABELS[i % 3] for i in range(12)]
    a = ZeroShotTextClassifier(lm, LABELS, n_shots=3, seed=7, balanced=True).fit(X, y)
    b = ZeroShotTextClassifier(lm, LABELS, n_shots=3, seed=7, balanced=True).fit(X, y)
    assert a.demonstrations_ == b.demonstrations_
    assert sorted(d.answer for d in a.demonstrations_) == sorted(LABELS)
    with pytest.raises(UserError, match="cannot draw 13 demonstrations from a pool of 12"):
        ZeroShotTextClassifier(lm, LABELS, n_shots=13).fit(X, y)
    with pytest.raises(UserError, match="not among the labels: music"):
        ZeroShotTextClassifier(lm, LABELS, n_shots=1).fit(["x"], ["music"])


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([], "at least 2 labels"),
        (["sport", "sport"], "repeated: sport"),
        (["sport", " "], "must not be empty"),
        (["sport"], "at least 2 labels"),
    ],
)
def test_bad_label_sets_are_user_errors(lm, labels, message):
    with pytest.raises(UserError, match=message):
        check_labels(labels)
    with pytest.raises(UserError, match=message):
        ZeroShotTextClassifier(lm, labels).predict(["x"])


def test_unknown_normalization_is_a_user_error(lm):
    with pytest.raises(UserError, match="unknown normalization 'mean'"):
        ZeroShotTextClassifier(lm, LABELS, normalization="mean").fit()


def test_multiple_choice_uses_each_items_own_choices(lm):
    mc = MultipleChoiceScorer(lm, "Answer the question.", demonstrations=[("2+2?", "4")])
    items = [("Capital of France?", ["Paris", "Rome"]), ("Colour of grass?", ["green", "blue", "red"])]
    proba = mc.predict_proba(items)
    assert [p.shape for p in proba] == [(2,), (3,)]
    for p, (question, choices) in zip(proba, items, strict=True):
        prompt = f"Answer the question.\n\nText: 2+2?\nAnswer: 4\n\nText: {question}\nAnswer:"
        expected = softmax(np.array([hand_sum(lm, prompt, " " + c) for c in choices]))
        np.testing.assert_allclose(p, expected)
    assert mc.predict(items) == [c[int(np.argmax(p))] for p, (_, c) in zip(proba, items, strict=True)]
    with pytest.raises(UserError, match="question 1: choices must be distinct; repeated: a"):
        mc.predict([("q", ["a", "a"])])
