"""Install llama-cpp-python built so that it runs on this CPU, and prove it before keeping it.

Run by the Makefile with the virtual environment's Python:

    python scripts/setup_llama.py            # portable build (the default; `make setup-llama`)
    python scripts/setup_llama.py --native   # tuned to this CPU (`make setup-llama-native`)

Why: llama.cpp's CMake build defaults to `-march=native`, so a library built on one CPU kind can die
with SIGILL on another (our machines change from day to day), and pip's wheel cache would hand that
binary back on the next install whatever CMAKE_ARGS say. So:

- the portable build targets x86-64-v3 (AVX2, FMA, F16C, BMI2; no AVX-512, no AMX), or SSE4.2 on an
  x86-64 CPU without AVX2; other architectures get llama.cpp's generic non-native build;
- wheels are built with pip's cache off, and kept in `.cache/llama-wheels/<key>/`, where the key is
  the CMake flags (and, for a native build, this CPU's model and flags): a wheel is only ever reused
  for exactly the build it was made by;
- after installing, a child process loads the default GGUF, scores two continuations and generates
  four tokens. If it fails, a native build is replaced by the portable one, and a failing portable
  build is uninstalled with one line (the transformers backend then runs); a crashing library is
  never left installed.

The build's record (`<venv>/llama-build.json`) says which build is installed; a build with no record
(made by hand or by an older set-up) is replaced.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WHEELS = REPO / ".cache" / "llama-wheels"
REQUIREMENT = "llama-cpp-python>=0.3"
RECORD = Path(sys.prefix) / "llama-build.json"
X86_64_V3 = ("avx2", "fma", "f16c", "bmi2")
NATIVE = ["-DGGML_NATIVE=ON"]

# The repository's own check code (stdlib at import time), also when the package is not installed yet.
sys.path.insert(0, str(REPO / "src"))
from zeroshot.models.llamacpp_check import cpu_signature, run_check  # noqa: E402


def cpu_flags() -> set[str]:
    """This CPU's instruction-set flags, from the same reading of /proc/cpuinfo as the runtime check."""
    return set(cpu_signature().split("|", 2)[2].split())


def cmake_args(native: bool) -> list[str]:
    """The CMake flags of the build: native, x86-64-v3, SSE4.2, or generic."""
    if native:
        return list(NATIVE)
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return ["-DGGML_NATIVE=OFF"]
    off_512 = ["-DGGML_AVX512=OFF", "-DGGML_AVX512_VBMI=OFF", "-DGGML_AVX512_VNNI=OFF",
               "-DGGML_AVX512_BF16=OFF", "-DGGML_AVX_VNNI=OFF", "-DGGML_AMX_TILE=OFF",
               "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"]
    if set(X86_64_V3) <= cpu_flags():
        on = ["-DGGML_SSE42=ON", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON",
              "-DGGML_BMI2=ON"]
    else:
        on = ["-DGGML_SSE42=ON", "-DGGML_AVX=OFF", "-DGGML_AVX2=OFF", "-DGGML_FMA=OFF",
              "-DGGML_F16C=OFF", "-DGGML_BMI2=OFF"]
    return ["-DGGML_NATIVE=OFF", *on, *off_512]


def describe(args: list[str]) -> str:
    if args == NATIVE:
        return "native (tuned to this CPU)"
    if "-DGGML_AVX2=ON" in args:
        return "portable x86-64-v3 (AVX2/FMA/F16C)"
    if "-DGGML_AVX2=OFF" in args:
        return "portable SSE4.2"
    return "portable (generic)"


def build_key(args: list[str]) -> str:
    text = " ".join(args)
    if args == NATIVE:
        text += "|" + cpu_signature()  # a native wheel is only good for the CPU that built it
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pip(*args: str, env: dict | None = None, quiet: bool = True) -> bool:
    command = [sys.executable, "-m", "pip", *(["-q"] if quiet else []), *args]
    return subprocess.run(command, env=env).returncode == 0


def installed_record() -> dict | None:
    try:
        import importlib.util

        if importlib.util.find_spec("llama_cpp") is None:
            return None
        return json.loads(RECORD.read_text())
    except (OSError, ValueError):
        return {}  # installed, but by something else: unknown flags


def wheel_for(args: list[str]) -> Path | None:
    """The wheel built with exactly `args`, building it (pip cache off) if there is none yet."""
    folder = WHEELS / build_key(args)
    wheels = sorted(folder.glob("llama_cpp_python-*.whl"))
    if wheels:
        return wheels[-1]
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, CMAKE_ARGS=" ".join(args), FORCE_CMAKE="1",
               CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 2))
    print(f"building llama-cpp-python, {describe(args)} (5-8 minutes on 2 cores)...", flush=True)
    scratch = folder / "partial"
    shutil.rmtree(scratch, ignore_errors=True)
    if not pip("wheel", "--no-cache-dir", "--no-deps", "--no-binary", "llama-cpp-python", "-w", str(scratch),
               REQUIREMENT, env=env):
        shutil.rmtree(scratch, ignore_errors=True)
        return None
    built = sorted(scratch.glob("llama_cpp_python-*.whl"))
    if not built:
        return None
    final = folder / built[-1].name
    os.replace(built[-1], final)  # only a finished wheel ever lands in the keyed folder
    shutil.rmtree(scratch, ignore_errors=True)
    (folder / "cmake-args.txt").write_text(" ".join(args) + "\n")
    return final


def smoke_test() -> tuple[bool, str]:
    """Load the default GGUF, score two continuations, generate four tokens, in a child process."""
    from zeroshot.models.lm import builtin_model_path

    return run_check(str(builtin_model_path()))


def uninstall() -> None:
    pip("uninstall", "-y", "llama-cpp-python")
    RECORD.unlink(missing_ok=True)


def install(args: list[str]) -> tuple[bool, str]:
    """Install the build made with `args` and smoke-test it; leave nothing that failed installed."""
    wheel = wheel_for(args)
    if wheel is None:
        return False, "it did not compile"
    if not (pip("install", "--no-deps", "--force-reinstall", "--no-cache-dir", str(wheel))
            and pip("install", "--no-cache-dir", str(wheel))):  # its dependencies, if any are missing
        return False, "pip could not install the wheel"
    ok, reason = smoke_test()
    if not ok:
        uninstall()
        return False, reason
    RECORD.write_text(json.dumps({"build": describe(args), "cmake_args": args, "wheel": wheel.name,
                                  "cpu": cpu_signature()[:300]}, indent=1))
    return True, ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--native", action="store_true", help="tune the build to this CPU (opt-in)")
    options = parser.parse_args()
    portable = cmake_args(native=False)
    record = installed_record()
    if record:
        # A native build is kept on the CPU that built it (so `make test` does not undo
        # `make setup-llama-native`); a portable one only when portable is what was asked for.
        if record.get("cmake_args") == NATIVE:
            keep = record.get("cpu") == cpu_signature()[:300]
        else:
            keep = record.get("cmake_args") == portable and not options.native
        if keep:
            ok, reason = smoke_test()
            if ok:
                print(f"llama.cpp: {record.get('build')} build installed and checked on this CPU")
                return 0
            print(f"llama.cpp: the installed build failed its self-check ({reason}): replacing it")
    elif record == {}:
        print("llama.cpp: an installed build of unknown flags (pip's cache or a native build?): replacing it")
    if options.native:
        ok, reason = install(cmake_args(native=True))
        if ok:
            print("llama.cpp: native build installed and passed its self-check")
            return 0
        print(f"llama.cpp: the native build failed ({reason}): installing the portable build instead")
    ok, reason = install(portable)
    if ok:
        print(f"llama.cpp: {describe(portable)} build installed and passed its self-check")
    else:
        uninstall()
        print(f"llama.cpp: skipped, the {describe(portable)} build failed ({reason}); "
              "the transformers backend runs instead and llama.cpp tests are skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
