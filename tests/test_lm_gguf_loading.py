"""Any GGUF loads within memory: header read first, context capped, logits only where scoring needs them.

The model is a tiny random llama GGUF with a 262,144-token vocabulary and a declared 131,072-token
training context: opened the old way (full context, logits for every position) it would ask for
128 GiB of logits.
"""

from __future__ import annotations

import numpy as np
import pytest

from tiny_gguf import write_tiny_gguf
from zeroshot.cli import main
from zeroshot.errors import UserError
from zeroshot.models.gguf_info import check_complete, read_gguf_info
from zeroshot.models.loader import llama_cpp_available, load_lm
from zeroshot.models.memory import available_memory

needs_llama = pytest.mark.skipif(not llama_cpp_available(), reason="llama-cpp-python is not installed")


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-262k.gguf")


def test_header_is_read_without_loading(tiny_gguf):
    info = read_gguf_info(tiny_gguf)
    assert (info.n_vocab, info.context_length, info.architecture) == (262_144, 131_072, "llama")
    assert info.n_params == 262_144 * 16 + 2 * (4 * 16 * 16 + 3 * 16 * 32 + 2 * 16) + 16
    assert info.expected_bytes == info.file_bytes and not info.truncated
    assert info.chat_template.startswith("{% for m in messages %}")


@needs_llama
def test_large_vocab_long_context_model_loads_and_scores(tiny_gguf):
    lm = load_lm(str(tiny_gguf), backend="llama.cpp")
    assert lm.context_length == 8192  # min(declared 131,072, the default cap)
    assert lm.n_params == read_gguf_info(tiny_gguf).n_params
    context = lm.tokenize("hello world", add_bos=True)
    conts = [lm.tokenize(" ab"), lm.tokenize(" c")]
    reused = lm.continuation_logprobs(context, conts)
    scratch = lm.continuation_logprobs(context, conts, reuse_cache=False)
    for a, b in zip(reused, scratch, strict=True):
        assert a.shape == b.shape and np.all(a < 0)
        np.testing.assert_allclose(a, b, atol=1e-5)
    # Generation between scorings must not leave stale rows behind.
    lm.generate("hello", None)
    again = lm.continuation_logprobs(context, conts)
    np.testing.assert_allclose(np.concatenate(again), np.concatenate(reused), atol=1e-5)


def test_transformers_model_with_large_vocab_and_long_context_loads(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=262_144, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=131_072,
                         tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {chr(c): i for i, c in enumerate(range(32, 127))}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="?"))
    raw.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="?").save_pretrained(tmp_path)
    lm = load_lm(str(tmp_path), backend="transformers")
    assert lm.n_params > 262_144 * 16 and lm.context_length == 131_072
    out = lm.continuation_logprobs(lm.tokenize("abc"), [lm.tokenize("de")])
    assert out[0].shape == (2,) and np.all(np.isfinite(out[0]))


def test_truncated_gguf_is_one_line_exit_2(tiny_gguf, tmp_path, capsys):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[: tiny_gguf.stat().st_size // 2])
    info = read_gguf_info(cut)  # the header is whole; the tensor data is not
    assert info.truncated and info.file_bytes < info.expected_bytes
    with pytest.raises(UserError, match="truncated"):
        check_complete(info)
    assert main(["generate", "hi", "--model", str(cut), "--backend", "llama.cpp"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "truncated" in err and "download or assemble it again" in err
    header_only = tmp_path / "header.gguf"
    header_only.write_bytes(tiny_gguf.read_bytes()[:5000])
    with pytest.raises(UserError, match="truncated"):
        read_gguf_info(header_only)


@needs_llama
def test_model_too_large_is_refused_before_loading_with_the_estimate(tiny_gguf, monkeypatch, capsys):
    monkeypatch.setenv("ZEROSHOT_MEMORY_LIMIT", "10M")
    assert available_memory() == 10 << 20
    assert main(["generate", "hi", "--model", str(tiny_gguf), "--backend", "llama.cpp"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "refused before loading" in err
    assert "weights 0.02" in err and "kv cache" in err and "0.01 GiB is available" in err
    monkeypatch.setenv("ZEROSHOT_MEMORY_LIMIT", "lots")
    with pytest.raises(UserError, match="not a size"):
        available_memory()
