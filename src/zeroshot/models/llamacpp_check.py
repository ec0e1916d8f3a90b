"""Is the installed llama.cpp build safe to run on this CPU? Asked once per build, in a subprocess.

A llama.cpp library compiled for another processor (a `-march=native` build made on an AVX-512/AMX
machine and run on an AVX2 one, or llama.cpp's AMX path on a virtual machine that lists AMX but
faults on it) dies with SIGILL, which no Python `try` can catch: it would take the whole CLI or
server down. So before the backend is used in-process, a child process loads a GGUF, scores two
continuations and generates four tokens. The verdict is kept on disk, keyed by everything that
decides it: the bytes of the build's shared libraries and this CPU's model name and flags. A new
build, or the same disk on another CPU kind, asks again.

`python -m zeroshot.models.llamacpp_check [MODEL.gguf]` runs the check itself: exit 0 and "ok" when
the build works (the Makefile's smoke test after each build calls this).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from zeroshot.files import write_atomic

CHECK_TIMEOUT_S = 300  # loading and 4 tokens take about a second; a loaded machine is slower
_FIX = "rebuild it portable with `make setup-llama`, or use --backend transformers"


@dataclass(frozen=True)
class BuildVerdict:
    """Whether the llama.cpp build ran the check, and if not, why (one line)."""

    ok: bool
    reason: str = ""
    fingerprint: str = ""
    cached: bool = False

    def message(self) -> str:
        """One line naming the cause and the fix, for a build that failed its check."""
        return f"the installed llama.cpp build failed its self-check ({self.reason}): {_FIX}"


def cache_folder() -> Path:
    """`$ZEROSHOT_CACHE/llama-checks`, by default `~/.cache/zeroshot/llama-checks`."""
    root = os.environ.get("ZEROSHOT_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "zeroshot") / "llama-checks"


def llama_cpp_package_dir() -> Path | None:
    """The folder of the `llama_cpp` package that `import llama_cpp` would load, or None."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent


def cpu_signature() -> str:
    """This CPU's model name and instruction-set flags (what decides whether a binary can run)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                key, _, value = line.partition(":")
                key = key.strip()
                wanted = ("model name", "flags", "Features", "CPU implementer", "CPU part")
                if key in wanted and key not in fields:
                    fields[key] = value.strip()
                if line.strip() == "":  # the first processor says it all
                    break
    except OSError:
        pass
    return f"{platform.machine()}|{fields.get('model name', platform.processor())}|" \
           f"{fields.get('flags', fields.get('Features', ''))}"


_fingerprints: dict[tuple, str] = {}  # per process: hashing ~20 MB of libraries on every load adds up


def build_fingerprint(package_dir: Path) -> str:
    """sha256 over the build's shared libraries (and its Python files), and this CPU's signature."""
    files = sorted(p for p in package_dir.rglob("*") if p.is_file()
                   and (p.suffix in (".so", ".dylib", ".dll", ".py") or ".so." in p.name))
    cpu = cpu_signature()
    stamp = (cpu, *((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    if stamp in _fingerprints:
        return _fingerprints[stamp]
    digest = hashlib.sha256(cpu.encode())
    for path in files:
        digest.update(str(path.relative_to(package_dir)).encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    _fingerprints[stamp] = digest.hexdigest()[:32]
    return _fingerprints[stamp]


def _describe_exit(returncode: int, stderr: str) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        if name == "SIGILL":
            return ("the process died of SIGILL, an illegal instruction: the library was built for "
                    "instructions this CPU cannot run")
        return f"the process died of {name}"
    last = [line for line in stderr.strip().splitlines() if line.strip()]
    return f"exit code {returncode}: {last[-1].strip() if last else 'no message'}"


def run_check(model_path: str, timeout: float = CHECK_TIMEOUT_S) -> tuple[bool, str]:
    """Run the check in a child process now (no cache); return (ok, reason)."""
    env = dict(os.environ)
    # The child must import the same llama_cpp and zeroshot this process would.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    try:
        done = subprocess.run([sys.executable, "-m", "zeroshot.models.llamacpp_check", model_path],
                              capture_output=True, text=True, timeout=timeout, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:.0f} s"
    if done.returncode == 0 and done.stdout.strip().endswith("ok"):
        return True, ""
    return False, _describe_exit(done.returncode, done.stderr)


def check_llama_cpp(model_path: str) -> BuildVerdict:
    """The cached verdict for the installed llama.cpp build on this CPU, checking it first if needed.

    `model_path` is the GGUF the check loads (the built-in SmolLM2-135M when installed: it loads in well
    under a second). A verdict is cached only when the check finished (passed, failed, or died by a
    signal); a time-out is not cached, since a busy machine can cause it.
    """
    package_dir = llama_cpp_package_dir()
    if package_dir is None:
        return BuildVerdict(False, "llama-cpp-python is not installed")
    fingerprint = build_fingerprint(package_dir)
    record = cache_folder() / f"{fingerprint}.json"
    try:
        saved = json.loads(record.read_text(encoding="utf-8"))
        return BuildVerdict(bool(saved["ok"]), str(saved.get("reason", "")), fingerprint, cached=True)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    ok, reason = run_check(model_path)
    verdict = BuildVerdict(ok, reason, fingerprint)
    if ok or not reason.startswith("timed out"):
        _save(record, verdict)
    return verdict


def _save(record: Path, verdict: BuildVerdict) -> None:
    # Written whole or not at all: a half-written verdict must never be read back.
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(record, json.dumps({**asdict(verdict), "cached": False, "cpu": cpu_signature()[:200]}))
    except OSError:
        pass  # a read-only cache only means the check runs again next time


def _main(argv: list[str]) -> int:
    """The check itself, run in the child: load, score two continuations, generate four tokens."""
    from zeroshot.models.lm import GenerationConfig, builtin_model_path
    from zeroshot.models.lm_llamacpp import LlamaCppLM

    model = argv[0] if argv else str(builtin_model_path())
    lm = LlamaCppLM(model, n_ctx=256)
    context = lm.tokenize("The capital of France is", add_bos=True)
    scores = lm.continuation_logprobs(context, [lm.tokenize(" Paris"), lm.tokenize(" a large city")])
    if not all(len(s) and all(v == v and v <= 0 for v in s) for s in scores):
        print(f"scores are not log-probabilities: {scores}", file=sys.stderr)
        return 1
    lm.generate("Once upon a time", GenerationConfig(max_new_tokens=4, ignore_eos=True))
    if lm.last_num_tokens != 4:
        print(f"generated {lm.last_num_tokens} tokens instead of 4", file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
