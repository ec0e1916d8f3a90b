"""The llama.cpp backend on the real default GGUF (loads in about a second); skipped without llama_cpp."""

from __future__ import annotations

import numpy as np
import pytest

from zeroshot.errors import UserError
from zeroshot.models.lm import GenerationConfig
from zeroshot.models.loader import load_lm

pytest.importorskip("llama_cpp")

# Scoring never evaluates one-token batches (whose kernels differ), so reuse equals scratch to float noise.
LLAMA_CPP_ATOL = 1e-4


@pytest.fixture(scope="module")
def smol():
    from zeroshot.models.loader import llama_cpp_verdict

    verdict = llama_cpp_verdict()
    if not verdict.ok:  # a build that would crash this process is reported, not run
        pytest.skip(verdict.message())
    lm = load_lm(None, backend="auto")
    assert lm.backend == "llama.cpp"
    return lm


def test_prefix_reuse_matches_scoring_from_scratch(smol):
    prefix = smol.tokenize("Classify each article as business, sport, politics, tech or entertainment.\n"
                           "Article: Shares rose after record profits.\nTopic: business\n")
    long_article = "Article: " + "The markets rallied as investors welcomed the tax plans. " * 60
    # Queries sharing all but their last token, one longer than a llama.cpp batch (512 tokens), and
    # labels of one, two and several tokens: every way the cached and new spans can be cut.
    queries = ["Article: The striker scored twice.\nTopic:", "Article: The striker scored twice.\nTopic",
               "Article: The minister resigned.\nTopic:", long_article + "\nTopic:"]
    labels = [" business", " sport and other games", " tech", " entertainment news", " politics"]
    conts = [smol.tokenize(x) for x in labels]
    assert {len(c) for c in conts} >= {1, 2} and max(len(c) for c in conts) > 2
    worst, checked = 0.0, 0
    for _ in range(2):
        for query in queries:
            context = prefix + smol.tokenize(query)
            reused = smol.continuation_logprobs(context, conts, reuse_cache=True)
            naive = smol.continuation_logprobs(context, conts, reuse_cache=False)
            for r, n, c in zip(reused, naive, conts, strict=True):
                assert r.shape == (len(c),)
                worst = max(worst, float(np.abs(r - n).max()))
                checked += len(c)
        # Generation decodes one token at a time into the same cache; scoring after it must not reuse it.
        smol.generate("Article: The striker scored", GenerationConfig(max_new_tokens=4))
    assert len(prefix + smol.tokenize(long_article)) > 512 and checked > 50
    assert worst < LLAMA_CPP_ATOL
    sport = smol.continuation_logprobs(prefix + smol.tokenize(queries[0]), conts)
    assert np.argmax([s.sum() for s in sport]) == 1 or sport[1][0] > sport[2][0]


def test_batches_never_hold_a_single_token():
    from zeroshot.models.lm_llamacpp import _batches

    assert _batches(1025, 512) == [512, 511, 2]
    assert _batches(1024, 512) == [512, 512]
    assert _batches(7, 512) == [7]
    assert _batches(1, 512) == [1]
    for n in range(2, 1600):
        sizes = _batches(n, 512)
        assert sum(sizes) == n and min(sizes) >= 2 and max(sizes) <= 512


def test_too_long_context_is_refused(smol):
    with pytest.raises(UserError, match="context length"):
        smol.continuation_logprobs([1] * smol.context_length, [[2]])


def test_generation_options(smol):
    greedy = GenerationConfig(max_new_tokens=12)
    text = smol.generate("The capital of France is", greedy)
    assert "Paris" in text
    assert "".join(smol.stream("The capital of France is", greedy)) == text
    sampled = GenerationConfig(max_new_tokens=12, temperature=0.9, top_k=40, top_p=0.9, seed=3)
    assert smol.generate("Once upon a time", sampled) == smol.generate("Once upon a time", sampled)
    smol.generate("Once", GenerationConfig(max_new_tokens=20, ignore_eos=True))
    assert smol.last_num_tokens == 20
    stopped = smol.generate("The capital of France is", GenerationConfig(max_new_tokens=12, stop=["."]))
    assert stopped == text[: text.index(".")]
    with pytest.raises(UserError, match="no beam search"):
        smol.generate("x", GenerationConfig(num_beams=2))


def test_embeddings(smol):
    rows = smol.embed(["football match", "stock market"], pooling="mean")
    assert rows.shape[0] == 2 and np.isfinite(rows).all()
