"""`--dtype auto`: measured once per model and CPU, cached, never a candidate that fails the bar."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest
import torch

from test_search import make_images
from zeroshot.cli import main
from zeroshot.errors import UserError
from zeroshot.models import dtype as dtypes
from zeroshot.models.clip import load_clip
from zeroshot.models.sentence import load_sentence_encoder


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZEROSHOT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ZEROSHOT_DTYPE", raising=False)
    return tmp_path / "cache" / "dtype"


def _count_measures(monkeypatch) -> list[int]:
    calls = []
    measure = dtypes.measure

    def counted(*args, **kwargs):
        calls.append(1)
        return measure(*args, **kwargs)

    monkeypatch.setattr(dtypes, "measure", counted)
    return calls


def _no_bf16_cpu(monkeypatch) -> None:
    monkeypatch.setattr(dtypes, "_cpuinfo", lambda: ("Old CPU without bf16", frozenset({"avx2", "fma"})))


def _bf16_cpu(monkeypatch) -> None:
    """A CPU that says it has bf16 dot products: an explicit bf16 is then kept, whatever CPU runs the
    test (torch computes bf16 on any x86-64, emulated where the instructions are missing)."""
    monkeypatch.setattr(dtypes, "_cpuinfo", lambda: ("CPU with bf16", frozenset({"avx2", "avx512_bf16"})))


def test_auto_picks_a_passing_dtype_and_caches_it(tiny_clip_dir, fresh_cache, monkeypatch):
    calls = _count_measures(monkeypatch)
    first = load_clip(tiny_clip_dir, device="cpu")  # no dtype: auto is the default
    choice = first.dtype_choice
    assert calls == [1] and not choice.cached and first.dtype_name == choice.dtype
    trials = {trial.dtype: trial for trial in choice.trials}
    assert trials["fp32"].passed and trials[choice.dtype].passed
    assert set(trials) == set(dtypes.auto_candidates("cpu"))
    for trial in trials.values():  # the bar is the fixed one
        assert trial.passed == (trial.min_cosine >= 0.999 and trial.top1_agreement >= 0.99)
    assert choice.dtype == min((t for t in trials.values() if t.passed), key=lambda t: t.seconds).dtype
    assert len(list(fresh_cache.glob("*.json"))) == 1

    second = load_clip(tiny_clip_dir, device="cpu", dtype="auto")
    assert calls == [1] and second.dtype_choice.cached and second.dtype_name == choice.dtype
    assert second.fingerprint == first.fingerprint


def test_the_cache_key_includes_the_cpu(tiny_clip_dir, fresh_cache, monkeypatch):
    calls = _count_measures(monkeypatch)
    load_clip(tiny_clip_dir, device="cpu", dtype="auto")
    _no_bf16_cpu(monkeypatch)
    other = load_clip(tiny_clip_dir, device="cpu", dtype="auto")
    assert calls == [1, 1] and not other.dtype_choice.cached  # another CPU: measured again
    assert "Old CPU without bf16" in other.dtype_choice.key["cpu"]
    assert "bf16" not in {trial.dtype for trial in other.dtype_choice.trials}  # no native bf16: not tried
    assert len(list(fresh_cache.glob("*.json"))) == 2


def test_explicit_dtypes_still_work(tiny_clip_dir, fresh_cache, monkeypatch):
    _bf16_cpu(monkeypatch)
    calls = _count_measures(monkeypatch)
    pixels = torch.rand(2, 3, 224, 224)
    models = {name: load_clip(tiny_clip_dir, device="cpu", dtype=name) for name in ("fp32", "bf16", "int8")}
    assert calls == []  # an explicit dtype measures nothing
    reference = models["fp32"].encode_images(pixels)
    for name, model in models.items():
        assert model.dtype_name == name and model.dtype_choice is None
        images, texts = model.encode_images(pixels), model.encode_texts(["a cat", "a dog"])
        assert images.dtype == np.float32 and images.shape == reference.shape and texts.shape[0] == 2
        assert np.min(np.sum(images * reference, axis=1)) > 0.99
    assert isinstance(models["int8"].model.vision_model.encoder.layers[0].mlp.fc1,
                      torch.ao.nn.quantized.dynamic.Linear)
    fingerprints = {model.fingerprint for model in models.values()}
    assert len(fingerprints) == 3  # embeddings of two dtypes never share a cache or an index
    for name, model in models.items():  # the one tagging rule, shared with the sentence encoder
        assert model.fingerprint == dtypes.dtype_fingerprint(models["fp32"].fingerprint, name)
        assert model.matches(model.fingerprint)
        assert model.matches(models["fp32"].fingerprint) == (name == "fp32")


def test_bf16_on_a_cpu_without_it_falls_back_in_one_line(tiny_clip_dir, fresh_cache, monkeypatch, caplog):
    _no_bf16_cpu(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="zeroshot.models.dtype"):
        model = load_clip(tiny_clip_dir, device="cpu", dtype="bf16")
    assert model.dtype_name == "fp32"
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0] and "no bf16 instructions" in warnings[0]


def test_a_candidate_that_fails_the_bar_is_never_picked(tiny_clip_dir, fresh_cache, monkeypatch):
    def noisy(module: torch.nn.Module) -> torch.nn.Module:
        with torch.no_grad():
            for parameter in module.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.05)
        return module

    monkeypatch.setitem(dtypes.CONVERTERS, "noisy", noisy)
    monkeypatch.setattr(dtypes, "AUTO_CANDIDATES", ("fp32",))
    seconds = itertools.cycle([1.0, 0.001])  # fp32 slow, the noisy candidate a thousand times faster
    monkeypatch.setattr(dtypes, "_timed", lambda run: next(seconds))
    model = load_clip(tiny_clip_dir, device="cpu", dtype="auto")
    trials = {trial.dtype: trial for trial in model.dtype_choice.trials}
    assert trials["noisy"].seconds < trials["fp32"].seconds and not trials["noisy"].passed
    assert model.dtype_name == "fp32"


def test_pick_takes_the_fastest_that_passes():
    trials = [dtypes.Trial("fp32", 1.0, 1.0, 1.0, True), dtypes.Trial("bf16", 0.5, 0.9995, 1.0, True),
              dtypes.Trial("int8", 0.2, 0.998, 1.0, False)]
    assert dtypes.pick(trials) == "bf16"


def test_auto_reopens_an_index_in_the_dtype_it_was_built_with(tiny_clip_dir, tmp_path, fresh_cache, capsys):
    images = make_images(tmp_path / "photos", 3)
    db = tmp_path / "db"
    args = ["--db", str(db), "--clip-model", str(tiny_clip_dir)]
    assert main(["index", str(images[0].parent), *args, "--dtype", "int8", "-q"]) == 0
    assert not fresh_cache.exists()  # the index's dtype was taken as given: nothing measured
    assert main(["search", "a cat", *args, "--format", "json"]) == 0  # auto: int8, as the index was built
    assert main(["search", "a cat", *args, "--dtype", "fp32"]) == 2  # another dtype: refused, not mixed
    assert "vectors of two models cannot be mixed" in capsys.readouterr().err


def test_bad_dtype_values(tiny_clip_dir, tmp_path, capsys):
    with pytest.raises(UserError, match="unknown dtype 'int4'"):
        load_clip(tiny_clip_dir, device="cpu", dtype="int4")
    assert main(["similarity", "a.jpg", "b.jpg", "--dtype", "int4"]) == 2
    err = capsys.readouterr().err
    assert "unknown dtype 'int4'" in err and "Traceback" not in err


def test_sentence_encoder_dtypes(fresh_cache, monkeypatch):
    calls = _count_measures(monkeypatch)
    monkeypatch.setattr(dtypes, "AUTO_CANDIDATES", ("fp32", "int8"))  # quicker than all three
    auto = load_sentence_encoder(None, dtype="auto")
    assert calls == [1] and auto.dtype_name == auto.dtype_choice.dtype
    assert load_sentence_encoder(None, dtype="auto").dtype_choice.cached and calls == [1]
    fp32, int8 = load_sentence_encoder(None, dtype="fp32"), load_sentence_encoder(None, dtype="int8")
    assert int8.dtype_name == "int8"
    assert int8.fingerprint() == dtypes.dtype_fingerprint(fp32.fingerprint(), "int8")
    matched = load_sentence_encoder(None, match_fingerprint=int8.fingerprint())  # as a saved captioner asks
    assert matched.dtype_name == "int8" and matched.dtype_choice is None and calls == [1]
    legacy = fp32.fingerprint() + "|int8"  # the sentence encoder's tag before one rule served both
    assert load_sentence_encoder(None, match_fingerprint=legacy).dtype_name == "int8" and calls == [1]
    assert int8.matches(legacy) and int8.matches(int8.fingerprint()) and not fp32.matches(legacy)
    a, b = fp32.encode(["The striker scored twice."]), int8.encode(["The striker scored twice."])
    assert a.dtype == b.dtype == np.float32 and float((a @ b.T)[0, 0]) > 0.8
    bf16 = load_sentence_encoder(None, dtype="bf16").encode(["The striker scored twice.", "Shares fell."])
    assert np.allclose(np.linalg.norm(bf16, axis=1), 1.0, atol=1e-6)  # unit rows, as in fp32


def test_server_settings_check_the_dtype():
    from zeroshot.server.settings import ServerSettings

    assert ServerSettings(dtype="bfloat16").dtype == "bf16" and ServerSettings().dtype is None
    with pytest.raises(UserError, match="unknown dtype 'int4'"):
        ServerSettings(dtype="int4")
