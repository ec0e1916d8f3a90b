"""Whole-sequence log-probabilities (OpenAI's `logprobs`/`echo`), chat messages and embedding inputs: the
library side of issue 17, on the tiny random LM (transformers) and, where installed, llama.cpp."""

from __future__ import annotations

import numpy as np
import pytest

from zeroshot.errors import UserError
from zeroshot.models.lm import GenerationConfig, check_top, top_of_rows
from zeroshot.models.loader import llama_cpp_available, load_lm
from zeroshot.text.chat import check_messages
from zeroshot.text.completion import complete_with_logprobs, empty_completion_note
from zeroshot.text.embeddings import check_texts

TEXT = "Article: The striker scored twice as the club won the cup final. Topic: sport"


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


def test_sequence_logprobs_are_the_continuation_scores_and_reuse_changes_nothing(lm):
    ids = lm.tokenize(TEXT)
    scored = lm.sequence_logprobs(ids, top=3)
    assert np.isnan(scored.logprobs[0]) and len(scored.logprobs) == len(ids)
    scratch = lm.continuation_logprobs(ids[:2], [ids[2:]], reuse_cache=False)[0]
    np.testing.assert_allclose(scored.logprobs[2:], scratch, atol=1e-4)
    # A second sequence sharing the first 6 tokens reuses them; a fresh model gives the same numbers.
    other = ids[:6] + lm.tokenize(" Topic: business")
    reused = lm.sequence_logprobs(other, top=3)
    fresh = lm.continuation_logprobs(other[:2], [other[2:]], reuse_cache=False)[0]
    np.testing.assert_allclose(reused.logprobs[2:], fresh, atol=1e-4)
    # Alternatives come best first, and the best is at least as likely as the token that came.
    assert np.all(np.diff(reused.top_logprobs[1:], axis=1) <= 0)
    assert np.all(reused.top_logprobs[1:, 0] >= reused.logprobs[1:] - 1e-9)


def test_top_of_rows_orders_and_bounds():
    rows = np.log(np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]]))
    ids, values = top_of_rows(rows, 2)
    assert ids.tolist() == [[1, 2], [0, 2]] and values.shape == (2, 2)
    with pytest.raises(UserError, match="0 to 20"):
        check_top(21)


def test_echo_with_max_tokens_zero_scores_only_the_prompt(lm):
    result = complete_with_logprobs(lm, TEXT, max_tokens=0, top=2, echo=True).to_dict()
    logprobs = result["logprobs"]
    assert result["text"] == TEXT and result["usage"]["completion_tokens"] == 0
    assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None
    assert "".join(logprobs["tokens"]) == TEXT
    assert logprobs["text_offset"][1] == len(logprobs["tokens"][0])
    assert all(len(top) <= 2 for top in logprobs["top_logprobs"][1:])


def test_greedy_completion_with_logprobs_is_the_greedy_generation(lm):
    prompt = "Article: The minister announced"
    result = complete_with_logprobs(lm, prompt, max_tokens=4, top=1)
    generated = lm.generate(prompt, GenerationConfig(max_new_tokens=4, ignore_eos=False))
    assert result.text == generated[: len(result.text)] and result.text
    assert len(result.logprobs.tokens) == result.completion_tokens
    assert result.logprobs.text_offset[0] == len(prompt)
    # lm-eval's request: token ids, echo, max_tokens 1 — the prompt back plus exactly one token.
    ids = lm.tokenize(prompt)
    one = complete_with_logprobs(lm, ids, max_tokens=1, top=1, echo=True)
    assert len(one.logprobs.tokens) == len(ids) + 1


def test_bad_prompts_are_refused(tiny_lm):
    with pytest.raises(UserError, match="vocabulary"):
        complete_with_logprobs(tiny_lm, [1, 10**7], max_tokens=0, top=1, echo=True)
    with pytest.raises(UserError, match="empty"):
        complete_with_logprobs(tiny_lm, "", max_tokens=0, top=1)
    with pytest.raises(UserError, match="context"):
        complete_with_logprobs(tiny_lm, "word " * 300, max_tokens=400, top=1)


def test_chat_messages_are_checked_and_templated(tiny_lm):
    parts = [{"type": "text", "text": "Hi"}]
    prompt = tiny_lm.format_chat(check_messages([{"role": "developer", "content": "Be brief."},
                                                 {"role": "user", "content": parts}]))
    assert prompt == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                      "<|im_start|>assistant\n")
    for messages, match in [([], "empty"), ([{"role": "wizard", "content": "x"}], "role"),
                            ([{"role": "user", "content": [{"type": "image_url"}]}], "text parts"),
                            ([{"role": "assistant", "content": "x"}], "last message")]:
        with pytest.raises(UserError, match=match):
            check_messages(messages)


def test_embedding_inputs_are_checked():
    assert check_texts("one") == ["one"]
    with pytest.raises(UserError, match="empty string"):
        check_texts(["fine", " "])
    with pytest.raises(UserError, match="10,000 inputs") as too_many:
        check_texts(["x"] * 10_000)
    assert too_many.value.status_code == 413
    with pytest.raises(UserError, match="token ids"):
        check_texts([[1, 2, 3]])


def test_empty_generation_is_explained(tiny_lm):
    tiny_lm.last_num_tokens = 0
    note = empty_completion_note(tiny_lm, GenerationConfig())
    assert note.startswith("(no text: the model ended at once; finish_reason=stop") and "--chat" in note
