"""A llama.cpp build that dies on this CPU never takes the process down.

A fake `llama_cpp` package whose `Llama(...)` kills its own process with SIGILL stands in for a
library compiled for instructions this CPU lacks (issue 11: AMX `tileloadd` on a Xeon VM). `auto`
must fall back to transformers with one line, an explicit `--backend llama.cpp` must exit 2 with
that line, and the verdict is cached per build and CPU.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zeroshot.errors import UserError
from zeroshot.models import llamacpp_check
from zeroshot.models.loader import choose_backend

FAKE_INIT = '''
import os, signal

class Llama:
    """Dies like a library built for another CPU: SIGILL on first use."""

    def __init__(self, *args, **kwargs):
        counter = os.environ.get("FAKE_LLAMA_COUNTER")
        if counter:
            with open(counter, "a") as handle:
                handle.write("loaded\\n")
        os.kill(os.getpid(), signal.SIGILL)
'''


@pytest.fixture()
def fake_llama(tmp_path, monkeypatch):
    """Put the SIGILL-ing `llama_cpp` first on the path, in this process and in its children."""
    root = tmp_path / "fake-site"
    package = root / "llama_cpp"
    (package / "lib").mkdir(parents=True)
    (package / "__init__.py").write_text(FAKE_INIT)
    (package / "lib" / "libllama.so").write_bytes(b"build one")
    counter = tmp_path / "loads.txt"
    monkeypatch.syspath_prepend(str(root))
    spec = importlib.util.spec_from_file_location("llama_cpp", package / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "llama_cpp", module)
    monkeypatch.setenv("ZEROSHOT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FAKE_LLAMA_COUNTER", str(counter))
    return {"root": root, "package": package, "counter": counter, "cache": tmp_path / "cache"}


def _loads(fake) -> int:
    return len(fake["counter"].read_text().splitlines()) if fake["counter"].exists() else 0


def test_auto_falls_back_and_explicit_choice_is_a_user_error(fake_llama, caplog):
    with caplog.at_level(logging.WARNING, logger="zeroshot"):
        assert choose_backend("gguf", "auto") == "transformers"
    message = caplog.records[-1].getMessage()
    assert "SIGILL" in message and "make setup-llama" in message and "transformers" in message
    assert "\n" not in message
    with pytest.raises(UserError, match="SIGILL.*make setup-llama"):
        choose_backend("gguf", "llama.cpp")
    assert _loads(fake_llama) == 1  # checked once in a child, then the cached verdict


def test_verdict_is_cached_per_build_and_cpu(fake_llama, monkeypatch):
    # A real GGUF: the child reads its header before llama.cpp is first used (and dies there).
    from zeroshot.models.lm import builtin_model_path

    model = str(builtin_model_path())
    first = llamacpp_check.check_llama_cpp(model)
    assert not first.ok and not first.cached and "illegal instruction" in first.reason
    again = llamacpp_check.check_llama_cpp(model)
    assert again.cached and again.fingerprint == first.fingerprint and _loads(fake_llama) == 1
    # A rebuilt library is another build: asked again.
    (fake_llama["package"] / "lib" / "libllama.so").write_bytes(b"build two, rebuilt")
    rebuilt = llamacpp_check.check_llama_cpp(model)
    assert not rebuilt.cached and rebuilt.fingerprint != first.fingerprint and _loads(fake_llama) == 2
    # The same disk on another CPU kind: asked again.
    monkeypatch.setattr(llamacpp_check, "cpu_signature", lambda: "x86_64|Intel Xeon|avx512f amx_tile")
    moved = llamacpp_check.check_llama_cpp(model)
    assert not moved.cached and _loads(fake_llama) == 3
    # A damaged record is not trusted: asked again, then rewritten.
    record = fake_llama["cache"] / "llama-checks" / f"{moved.fingerprint}.json"
    record.write_text("{not json")
    assert not llamacpp_check.check_llama_cpp(model).cached and _loads(fake_llama) == 4
    assert llamacpp_check.check_llama_cpp(model).cached


def test_passing_verdict_is_cached_and_time_outs_are_not(fake_llama, monkeypatch):
    calls = []
    monkeypatch.setattr(llamacpp_check, "run_check", lambda model: calls.append(model) or (True, ""))
    assert llamacpp_check.check_llama_cpp("m.gguf").ok
    assert llamacpp_check.check_llama_cpp("m.gguf").cached and len(calls) == 1
    (fake_llama["package"] / "lib" / "libllama.so").write_bytes(b"another build")
    monkeypatch.setattr(llamacpp_check, "run_check",
                        lambda model: calls.append(model) or (False, "timed out after 300 s"))
    assert not llamacpp_check.check_llama_cpp("m.gguf").ok
    # A time-out says the machine was busy, not that the build is bad: never cached.
    assert not llamacpp_check.check_llama_cpp("m.gguf").cached and len(calls) == 3


def _cli(fake, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake["root"]), *sys.path]),
               ZEROSHOT_CACHE=str(fake["cache"]), FAKE_LLAMA_COUNTER=str(fake["counter"]))
    return subprocess.run([sys.executable, "-m", "zeroshot.cli", *args], capture_output=True, text=True,
                          env=env, timeout=600, stdin=subprocess.DEVNULL)


def test_cli_explicit_llama_cpp_exits_2_with_one_line(fake_llama):
    done = _cli(fake_llama, "generate", "The capital of France is", "--max-tokens", "2",
                "--backend", "llama.cpp")
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "SIGILL" in lines[0] and "make setup-llama" in lines[0]


def test_setup_script_flags_are_portable():
    """`make setup-llama` never builds for this machine's CPU unless asked (`--native`)."""
    spec = importlib.util.spec_from_file_location(
        "setup_llama", Path(__file__).resolve().parent.parent / "scripts" / "setup_llama.py")
    setup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup)
    portable = setup.cmake_args(native=False)
    assert "-DGGML_NATIVE=OFF" in portable and "-DGGML_NATIVE=ON" not in portable
    assert all(flag in portable for flag in ("-DGGML_AMX_TILE=OFF", "-DGGML_AVX512=OFF")) or \
        "-DGGML_AVX2" not in " ".join(portable)
    assert setup.cmake_args(native=True) == ["-DGGML_NATIVE=ON"]
    # Wheels are kept per set of flags: a native wheel is never handed to a portable install.
    assert setup.build_key(portable) != setup.build_key(["-DGGML_NATIVE=ON"])
