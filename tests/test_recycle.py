"""Recycling an LM for a new language (issue 16) on a tiny random GPT-2 in the real Hugging Face format.

Only the (tied) embeddings change, bit for bit everything else stays; the loss falls; the written folder
is a model `load_lm` and the commands accept, giving the same log-probabilities in a fresh process; the
mean init really is the mean of the base pieces; bad corpora and settings are one line and exit 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from zeroshot.cli import main

ITALIAN = [
    "Il gatto dorme sul divano mentre la pioggia cade sulla città.",
    "La vita è bella quando si hanno amici con cui parlare.",
    "Per installare un pacchetto si usa il comando apt con i permessi di amministratore.",
    "Un vecchio proverbio dice che chi va piano va sano e va lontano.",
    "Il sistema operativo gestisce la memoria e i processi del computer.",
    "La mattina prendo un caffè al bar sotto casa e leggo il giornale.",
]


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory) -> Path:
    from zeroshot.testing import save_random_lm

    return save_random_lm(tmp_path_factory.mktemp("gpt2"), arch="gpt2", seed=0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("it")
    (folder / "a.txt").write_text("\n\n".join(ITALIAN * 6), encoding="utf-8")
    (folder / "b.txt").write_text("\n\n".join(reversed(ITALIAN * 4)), encoding="utf-8")
    return folder


VOCAB = 300  # the tiny base has more; the corpus is too small for that many merges


@pytest.fixture(scope="module")
def recycled(tiny_gpt2, corpus, tmp_path_factory):
    from zeroshot.train.recycle import RecycleConfig, read_corpus, recycle_lm, split_corpus

    train, held = split_corpus(read_corpus(corpus))
    out = tmp_path_factory.mktemp("recycled")
    config = RecycleConfig(
        vocab_size=VOCAB, steps=24, seq_len=24, batch_size=4, learning_rate=2e-2, warmup=2, save_every=6
    )
    result = recycle_lm(str(tiny_gpt2), train, out, config, device="cpu", progress=False)
    return out, result, held


def test_only_the_embeddings_change(tiny_gpt2, recycled):
    from safetensors.torch import load_file

    out, result, _ = recycled
    base = load_file(str(tiny_gpt2 / "model.safetensors"))
    new = load_file(str(out / "model.safetensors"))
    embedding = "transformer.wte.weight"
    assert new[embedding].shape == (VOCAB, base[embedding].shape[1])
    body = [k for k in base if k != embedding and "lm_head" not in k]
    assert body and set(body) <= set(new)
    for key in body:
        assert torch.equal(base[key], new[key]), key
    assert result.trainable_params == VOCAB * base[embedding].shape[1]
    assert result.train_loss[-1] < result.train_loss[0]
    meta = json.loads((out / "recycle.json").read_text())
    assert meta["base_model"] == str(tiny_gpt2) and (out / "loss.png").is_file()
    assert not (out / "checkpoint").exists()


def test_mean_init_is_the_mean_of_the_base_pieces(tiny_gpt2, corpus):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zeroshot.train.recycle import init_embeddings, read_corpus, token_pieces, train_tokenizer

    base_tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    weight = AutoModelForCausalLM.from_pretrained(tiny_gpt2).get_input_embeddings().weight
    new_tok = train_tokenizer(read_corpus(corpus), VOCAB, base_tok)
    assert len(new_tok) == VOCAB
    assert new_tok.convert_ids_to_tokens(0) == base_tok.convert_ids_to_tokens(0)  # specials first
    pieces = token_pieces(new_tok, base_tok)
    rows = init_embeddings(weight, pieces, "mean")
    several = [i for i, p in enumerate(pieces) if len(p) > 1]
    assert several, "some new tokens must be cut into several base pieces"
    i = several[0]
    torch.testing.assert_close(rows[i], weight[pieces[i]].mean(0).detach())
    # Every piece sequence spells the new token's bytes.
    token = new_tok.convert_ids_to_tokens(i)
    assert "".join(base_tok.convert_ids_to_tokens(pieces[i])) == token
    random_rows = init_embeddings(weight, pieces, "random", seed=0)
    assert not torch.allclose(random_rows, rows)


def test_folder_loads_everywhere_with_the_same_logprobs(recycled):
    from zeroshot.models.loader import load_lm
    from zeroshot.train.recycle import bits_per_byte

    out, _, held = recycled
    lm = load_lm(str(out), backend="transformers", device="cpu")
    context = lm.tokenize("Il gatto dorme", add_bos=True)
    here = lm.continuation_logprobs(context, [lm.tokenize(" sul divano")])[0]
    code = (
        "import sys, json; from zeroshot.models.loader import load_lm; lm = load_lm(sys.argv[1], "
        "backend='transformers', device='cpu'); c = lm.tokenize('Il gatto dorme', add_bos=True); "
        "print(json.dumps(lm.continuation_logprobs(c, [lm.tokenize(' sul divano')])[0].tolist()))"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    proc = subprocess.run(
        [sys.executable, "-c", code, str(out)], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    # Equal up to float32 rounding: a fresh process may split a reduction across threads differently
    # (one run differed by 1 unit in the last place, 9.5e-7 on -4.8); a wrong tensor differs by far more.
    np.testing.assert_allclose(np.array(json.loads(proc.stdout.strip().splitlines()[-1])), here,
                               rtol=1e-6, atol=0)
    score = bits_per_byte(lm.model, lm.tokenizer, held, seq_len=32)
    assert 0 < score.bits_per_byte < 20 and 0 < score.tokens_per_byte <= 1


def test_resume_after_a_kill_and_the_cli(tiny_gpt2, corpus, tmp_path, capsys):
    from zeroshot.train.recycle import RecycleConfig, read_corpus, recycle_lm, split_corpus

    train, _ = split_corpus(read_corpus(corpus))
    config = RecycleConfig(vocab_size=VOCAB, steps=8, seq_len=16, batch_size=2, save_every=4, warmup=1)

    def kill(step, loss):
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        recycle_lm(str(tiny_gpt2), train, tmp_path / "cut", config, device="cpu", progress=False, on_log=kill)
    state = json.loads((tmp_path / "cut" / "checkpoint" / "state.json").read_text())
    assert state["state"]["step"] == 4  # saved before the kill: the run below resumes, not restarts
    resumed = recycle_lm(
        str(tiny_gpt2), train, tmp_path / "cut", config, device="cpu", progress=False, resume=True
    )
    whole = recycle_lm(str(tiny_gpt2), train, tmp_path / "whole", config, device="cpu", progress=False)
    assert resumed.steps == 8 and resumed.train_loss == pytest.approx(whole.train_loss, rel=1e-4)
    # The optimizer's parameter groups are restored: the step after the resume runs at its own rate.
    from safetensors.torch import load_file

    cut, uncut = (load_file(str(tmp_path / name / "model.safetensors")) for name in ("cut", "whole"))
    for name, tensor in uncut.items():
        assert torch.equal(cut[name], tensor), name

    args = [
        "recycle-lm",
        str(corpus),
        "--model",
        str(tiny_gpt2),
        "--vocab-size",
        str(VOCAB),
        "--steps",
        "4",
        "--seq-len",
        "16",
        "--batch-size",
        "2",
        "--eval-paragraphs",
        "3",
        "-q",
        "--format",
        "json",
    ]
    assert main([*args, "--output-dir", str(tmp_path / "cli")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["vocab_size"] == VOCAB and report["held_out"]["bits_per_byte"] > 0
    assert (
        main(["classify-text", "Il gatto", "--labels", "gatto,cane", "--model", str(tmp_path / "cli")]) == 0
    )


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def test_bad_input_is_one_line_and_exit_2(tiny_gpt2, corpus, tmp_path, capsys):
    base = ["--model", str(tiny_gpt2), "--steps", "2", "--seq-len", "16", "--batch-size", "2", "-q"]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "blank.txt").write_text("\n\n  \n")
    assert main(["recycle-lm", str(empty), "--output-dir", str(tmp_path / "o1"), *base]) == 2
    assert "empty" in _one_line_error(capsys)

    latin = tmp_path / "latin"
    latin.mkdir()
    (latin / "x.txt").write_bytes("perché è così".encode("latin-1"))
    assert main(["recycle-lm", str(latin), "--output-dir", str(tmp_path / "o2"), *base]) == 2
    assert "not UTF-8" in _one_line_error(capsys)

    assert (
        main(
            ["recycle-lm", str(corpus), "--output-dir", str(tmp_path / "o3"), *base, "--vocab-size", "50000"]
        )
        == 2
    )
    assert "too small for a vocabulary" in _one_line_error(capsys)

    assert (
        main(["recycle-lm", str(corpus), "--output-dir", str(tmp_path / "o4"), *base, "--vocab-size", "0"])
        == 2
    )
    assert "vocabulary size" in _one_line_error(capsys)

    other = tmp_path / "o5"
    (other / "checkpoint").mkdir(parents=True)
    (other / "checkpoint" / "state.json").write_text(
        json.dumps(
            {"format": "zeroshot-checkpoint/1", "fingerprint": "0123456789abcdef", "state": {"step": 2}}
        )
    )
    assert (
        main(
            [
                "recycle-lm",
                str(corpus),
                "--output-dir",
                str(other),
                *base,
                "--vocab-size",
                str(VOCAB),
                "--resume",
            ]
        )
        == 2
    )
    assert "another base model, corpus or settings" in _one_line_error(capsys)
