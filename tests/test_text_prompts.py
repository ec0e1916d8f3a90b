"""Prompt building: templates, separators, seeded demonstrations, dropping demonstrations to fit."""

from __future__ import annotations

import warnings
from collections import Counter

import pytest

from zeroshot.errors import UserError
from zeroshot.testing import FakeLM
from zeroshot.text.classify import ZeroShotTextClassifier
from zeroshot.text.prompts import (
    Demonstration,
    PromptBuilder,
    PromptTemplate,
    sample_demonstrations,
    truncate_text,
)

BOS = FakeLM.BOS

DEMOS = [Demonstration("goal scored", "sport"), Demonstration("vote held", "politics")]


def test_default_template_lays_out_description_demonstrations_and_query():
    builder = PromptBuilder(FakeLM(), "Pick the topic.", DEMOS)
    assert builder.prefix_text() == (
        "Pick the topic.\n\nText: goal scored\nAnswer: sport\n\nText: vote held\nAnswer: politics\n\n"
    )
    prompt = builder.build("new law")
    assert FakeLM().detokenize(prompt.context) == builder.prefix_text() + "Text: new law\nAnswer:"
    assert prompt.context[0] == BOS and prompt.context.count(BOS) == 1


def test_custom_template_and_separator():
    template = PromptTemplate(query="Q: {text} =>", answer=" <{answer}>", example_separator=" ||| ")
    builder = PromptBuilder(FakeLM(), "", DEMOS, template)
    assert builder.prefix_text() == "Q: goal scored => <sport> ||| Q: vote held => <politics> ||| "
    assert template.format_answer("x") == " <x>"


def test_queries_share_the_prefix_token_ids_literally():
    builder = PromptBuilder(FakeLM(), "Describe.", DEMOS)
    a, b = builder.build("first query"), builder.build("second")
    assert a.prefix == b.prefix == builder.prefix_ids(2)
    assert a.context[: len(a.prefix)] == b.context[: len(b.prefix)]


def test_sampling_is_seeded_and_reproducible():
    pool = [Demonstration(f"text {i}", "ab"[i % 2]) for i in range(20)]
    assert sample_demonstrations(pool, 5, seed=3) == sample_demonstrations(pool, 5, seed=3)
    assert sample_demonstrations(pool, 5, seed=3) != sample_demonstrations(pool, 5, seed=4)
    assert len(set(sample_demonstrations(pool, 20, seed=1))) == 20  # without replacement


def test_balanced_sampling_covers_every_class_before_repeating_one():
    pool = [Demonstration(f"t{i}", "a") for i in range(30)] + [
        Demonstration(f"u{i}", c) for i, c in enumerate("bbccdd")
    ]
    for seed in range(5):
        counts = Counter(d.answer for d in sample_demonstrations(pool, 4, seed, balanced=True))
        assert counts == Counter("abcd")
        counts = Counter(d.answer for d in sample_demonstrations(pool, 8, seed, balanced=True))
        assert counts == Counter("aabbccdd")


def test_more_demonstrations_than_the_pool_is_a_user_error():
    with pytest.raises(UserError, match="cannot draw 3 demonstrations from a pool of 2"):
        sample_demonstrations(DEMOS, 3, seed=0)


def test_truncate_text_cuts_at_a_word_and_marks_the_cut():
    text = "one two three four five six seven"
    assert truncate_text(text, None) == text
    assert truncate_text(text, 100) == text
    assert truncate_text(text, 14) == "one two three ..."
    assert truncate_text("a\nb\n\nc", None) == "a b c"


def test_demonstrations_are_dropped_not_the_query_when_the_context_is_short():
    demos = [Demonstration("x" * 40, "sport") for _ in range(4)]
    lm = FakeLM(context_length=150)  # room for two 58-token demonstrations besides the query
    builder = PromptBuilder(lm, "", demos)
    prompt = builder.build("the query text", longest_answer_tokens=9)
    assert prompt.n_demonstrations == 1
    assert lm.detokenize(prompt.query) == "Text: the query text\nAnswer:"
    assert len(prompt.context) + 9 <= 150

    clf = ZeroShotTextClassifier(
        lm, ["sport", "politics"], demonstrations=[(d.text, d.answer) for d in demos]
    )
    with pytest.warns(UserWarning, match="did not fit the model's context with 4 demonstrations"):
        clf.predict_proba(["the query text"])


def test_no_warning_when_everything_fits():
    clf = ZeroShotTextClassifier(FakeLM(), ["sport", "politics"], demonstrations=[("a", "sport")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.predict_proba(["b"])


def test_a_query_too_long_even_without_demonstrations_is_a_user_error():
    builder = PromptBuilder(FakeLM(context_length=20), "", DEMOS)
    with pytest.raises(UserError, match="does not fit the model's context of 20 tokens"):
        builder.build("a query that is far too long for this context")
