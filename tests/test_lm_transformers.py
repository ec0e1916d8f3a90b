"""The transformers backend on tiny random models: prefix reuse, generation options, embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from zeroshot.errors import UserError
from zeroshot.models.lm import GenerationConfig
from zeroshot.models.loader import load_lm


@pytest.fixture(scope="session", params=["llama", "gpt2"])
def tiny_lm(request, tmp_path_factory):
    from zeroshot.testing import save_random_lm

    folder = save_random_lm(tmp_path_factory.mktemp(f"tiny-{request.param}"), arch=request.param, seed=0)
    return load_lm(str(folder), backend="auto")


def test_folder_loads_on_transformers(tiny_lm):
    assert tiny_lm.backend == "transformers"
    assert tiny_lm.context_length == 512


def _requests(lm):
    prefix = lm.tokenize("Classify the topic.\nArticle: Shares rose after record profits.\nTopic: business\n",
                         add_bos=True)
    queries = ["Article: The striker scored twice.\nTopic:", "Article: A new phone chip.\nTopic:",
               "Article: The film won awards.\nTopic:"]
    labels = [" business", " sport and other games", " tech", " entertainment news", ""]
    return [prefix + lm.tokenize(q) for q in queries], [lm.tokenize(x) for x in labels]


def test_prefix_reuse_matches_scoring_from_scratch(tiny_lm):
    contexts, conts = _requests(tiny_lm)
    assert len({len(c) for c in conts}) >= 3  # different continuation lengths, one of them empty
    for context in contexts + contexts[:1]:  # the repeat hits the fully cached context
        reused = tiny_lm.continuation_logprobs(context, conts, reuse_cache=True)
        naive = tiny_lm.continuation_logprobs(context, conts, reuse_cache=False)
        for r, n, c in zip(reused, naive, conts, strict=True):
            assert r.shape == (len(c),)
            np.testing.assert_allclose(r, n, atol=1e-4)
            assert np.all(r <= 0)


def test_reused_prefix_cache_is_not_mutated(tiny_lm):
    contexts, conts = _requests(tiny_lm)
    first = tiny_lm.continuation_logprobs(contexts[0], conts)
    tiny_lm.continuation_logprobs(contexts[1], conts)  # crops and extends a copy of the shared prefix
    again = tiny_lm.continuation_logprobs(contexts[0], conts)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_context_longer_than_the_model_is_refused(tiny_lm):
    with pytest.raises(UserError, match="context length"):
        tiny_lm.continuation_logprobs([1] * 510, [[1, 2, 3]])
    with pytest.raises(UserError, match="empty context"):
        tiny_lm.continuation_logprobs([], [[1]])


def test_greedy_is_deterministic_and_streaming_matches(tiny_lm):
    config = GenerationConfig(max_new_tokens=12)
    text = tiny_lm.generate("Article: The", config)
    assert text == tiny_lm.generate("Article: The", config)
    assert "".join(tiny_lm.stream("Article: The", config)) == text
    assert tiny_lm.last_num_tokens == 12


def test_seed_makes_sampling_reproducible(tiny_lm):
    config = GenerationConfig(max_new_tokens=16, temperature=1.0, top_k=50, top_p=0.9, seed=7)
    assert tiny_lm.generate("Once", config) == tiny_lm.generate("Once", config)
    assert tiny_lm.last_seed == 7
    draws = {tiny_lm.generate("Once", GenerationConfig(max_new_tokens=16, temperature=1.0, seed=s))
             for s in range(4)}
    assert len(draws) > 1


def test_stop_sequence_cuts_the_completion(tiny_lm):
    full = tiny_lm.generate("Topic:", GenerationConfig(max_new_tokens=24))
    stop = full[6:9]
    expected = full[: full.index(stop)]
    config = GenerationConfig(max_new_tokens=24, stop=[stop])
    assert tiny_lm.generate("Topic:", config) == expected
    assert "".join(tiny_lm.stream("Topic:", config)) == expected


def test_max_tokens_and_beam_search(tiny_lm):
    tiny_lm.generate("Topic:", GenerationConfig(max_new_tokens=5, ignore_eos=True))
    assert tiny_lm.last_num_tokens == 5
    beams = GenerationConfig(max_new_tokens=8, num_beams=3)
    assert tiny_lm.generate("Topic:", beams) == "".join(tiny_lm.stream("Topic:", beams))


def test_chat_template_and_bad_options(tiny_lm):
    assert isinstance(tiny_lm.generate("hi", GenerationConfig(max_new_tokens=3, chat=True)), str)
    for bad in (dict(max_new_tokens=0), dict(temperature=-1), dict(top_p=0), dict(num_beams=2, temperature=1),
                dict(stop=[""])):
        with pytest.raises(UserError):
            tiny_lm.generate("hi", GenerationConfig(**bad))


def test_embeddings_pool_real_tokens(tiny_lm):
    mean = tiny_lm.embed(["hello world", "a", "hello world"], pooling="mean")
    last = tiny_lm.embed(["hello world"], pooling="last")
    assert mean.shape == (3, 64) and last.shape == (1, 64)
    np.testing.assert_allclose(mean[0], mean[2], atol=1e-5)  # padding in the batch does not leak in
    alone = tiny_lm.embed(["hello world"], pooling="mean")
    np.testing.assert_allclose(alone[0], mean[0], atol=1e-4)
    with pytest.raises(UserError):
        tiny_lm.embed(["x"], pooling="cls")
