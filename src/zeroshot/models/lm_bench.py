"""Inference cost of the LM backends: load time and time to generate N tokens (the GPT-J table).

Every timed generation really produces N tokens: end-of-sequence is banned (`ignore_eos`), and the
count is checked. Backends run one after another in the same process, so their ratios are comparable.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from zeroshot.errors import UserError
from zeroshot.models.lm import GenerationConfig
from zeroshot.models.loader import BACKENDS, load_lm

PROMPT = "The history of the printing press begins"


@dataclass
class CostRow:
    """One backend's cost: load seconds, and seconds / tokens per second per generation length."""

    backend: str
    model: str
    load_seconds: float
    new_tokens: int
    generate_seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.generate_seconds


def run_bench_lm(model: str | None, backends: list[str], lengths: list[int],
                 progress: bool = True) -> tuple[list[CostRow], dict]:
    """Time each backend in `backends` on `model`; returns the rows and {backend: why it was skipped}."""
    from tqdm import tqdm

    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise UserError(f"unknown backend(s) {', '.join(unknown) or '(none)'}: "
                        f"choose from {', '.join(BACKENDS)}")
    if not lengths or any(n < 1 for n in lengths):
        raise UserError("generation lengths must be positive integers")
    rows: list[CostRow] = []
    skipped: dict[str, str] = {}
    progress = tqdm(total=len(backends) * (len(lengths) + 1), desc="bench-lm", unit="step",
                    disable=not progress)
    for backend in backends:
        try:
            lm = load_lm(model, backend=backend)
        except UserError as exc:
            skipped[backend] = str(exc)
            progress.update(len(lengths) + 1)
            continue
        progress.update(1)
        lm.generate(PROMPT, GenerationConfig(max_new_tokens=4, ignore_eos=True))  # warm-up, not timed
        for n in lengths:
            config = GenerationConfig(max_new_tokens=n, ignore_eos=True)
            started = time.perf_counter()
            produced = _count_tokens(lm, config)
            elapsed = time.perf_counter() - started
            if produced != n:
                skipped[f"{backend}@{n}"] = f"produced {produced} tokens instead of {n}"
            rows.append(CostRow(backend, Path(lm.name).name, lm.load_seconds, produced, elapsed))
            progress.update(1)
        del lm
    progress.close()
    return rows, skipped


def _count_tokens(lm, config: GenerationConfig) -> int:
    lm.generate(PROMPT, config)
    return int(lm.last_num_tokens)


def format_table(rows: list[CostRow]) -> str:
    """The cost table as aligned text."""
    lines = [f"{'backend':<13}{'model':<36}{'load s':>8}{'tokens':>8}{'gen s':>9}{'tokens/s':>10}"]
    for r in rows:
        lines.append(f"{r.backend:<13}{r.model[:35]:<36}{r.load_seconds:>8.2f}{r.new_tokens:>8d}"
                     f"{r.generate_seconds:>9.2f}{r.tokens_per_second:>10.1f}")
    return "\n".join(lines)


def write_results(rows: list[CostRow], skipped: dict, path: Path) -> Path:
    """Write the rows (with tokens/s) and the machine description as JSON; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"machine": {"python": platform.python_version(),
                        "processor": platform.processor() or platform.machine(),
                        "cpus": os.cpu_count()},
            "prompt": PROMPT,
            "rows": [dict(asdict(r), tokens_per_second=r.tokens_per_second) for r in rows],
            "skipped": skipped}
    path.write_text(json.dumps(data, indent=2))
    return path


# ---------------------------------------------------------------------------------------------------
# The ladder table: one row per model (llama.cpp), scoring speed against the bare `Llama.eval`


@dataclass
class LadderRow:
    """Cost of one model: load, generation, scoring at several prompt lengths, memory."""

    model: str
    n_params: int | None
    load_seconds: float
    generate_tokens_per_second: float
    scoring_tokens_per_second: dict[int, float]  # prompt length -> tokens/s of our scoring path
    raw_eval_tokens_per_second: dict[int, float]  # the same tokens through a bare `Llama.eval`
    rss_mb: float  # resident memory the load added
    estimate_mb: float | None  # what the loader's estimate said before loading

    def to_dict(self) -> dict:
        return asdict(self)


def _rss_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2]


def bench_ladder_model(model: str | None, lengths: list[int], new_tokens: int = 16,
                       rounds: int = 3, n_threads: int | None = None) -> LadderRow:
    """Time one GGUF on the llama.cpp backend; scoring and bare eval alternate round by round.

    Scoring a prompt of N tokens is `continuation_logprobs(prompt[:N-1], [prompt[N-1:]])` from scratch
    (no cache reuse): it evaluates N-1 tokens and reads two logits rows. The peer is llama-cpp-python's
    own `Llama.eval` of the same N-1 tokens on the same context after `reset()`: the backend's raw
    prompt-processing limit. Medians over `rounds`; the two swap places every round, so neither always
    runs on a cache the other warmed. `n_threads` (default: llama-cpp-python's) applies to both.
    """
    import gc

    from zeroshot.models.lm_llamacpp import LlamaCppLM, estimate_memory

    gc.collect()
    before = _rss_mb()
    lm = load_lm(model, backend="llama.cpp", **({} if n_threads is None else {"n_threads": n_threads}))
    if not isinstance(lm, LlamaCppLM):
        raise UserError("the ladder bench needs the llama.cpp backend")
    estimate = estimate_memory(lm.info, lm.context_length)["total"] / 2**20
    lm.generate(PROMPT, GenerationConfig(max_new_tokens=4, ignore_eos=True))  # warm-up, not timed
    rss = _rss_mb() - before  # after a generation: every weight page of the mapped file touched
    started = time.perf_counter()
    produced = _count_tokens(lm, GenerationConfig(max_new_tokens=new_tokens, ignore_eos=True))
    gen_tps = produced / (time.perf_counter() - started)
    text = " ".join(["The history of the printing press begins in China and Korea long before Europe."] * 60)
    ids = lm.tokenize(text, add_bos=True)
    scoring: dict[int, float] = {}
    raw: dict[int, float] = {}
    llm = lm._llm
    for n in lengths:
        if n < 2 or n > min(len(ids), lm.context_length):
            raise UserError(f"scoring lengths must be between 2 and {min(len(ids), lm.context_length)}")
        prompt = ids[:n]
        ours, bare = [], []
        for round_ in range(rounds):
            for side in ("ours", "bare") if round_ % 2 == 0 else ("bare", "ours"):
                if side == "bare":
                    llm.reset()
                t = time.perf_counter()
                if side == "ours":
                    lm.continuation_logprobs(prompt[:-1], [prompt[-1:]], reuse_cache=False)
                    ours.append(time.perf_counter() - t)
                else:
                    llm.eval(prompt[:-1])
                    bare.append(time.perf_counter() - t)
                    lm._scored_tokens, lm._rows = 0, {}  # the bare eval wrote the cache behind the scorer
        scoring[n] = (n - 1) / _median(ours)
        raw[n] = (n - 1) / _median(bare)
    row = LadderRow(Path(lm.name).name, lm.n_params, lm.load_seconds, gen_tps, scoring, raw, rss, estimate)
    del lm, llm
    gc.collect()
    return row


def format_ladder_table(rows: list[LadderRow]) -> str:
    """The ladder cost table as aligned text (tokens/s; scoring/raw ratio at each length)."""
    lengths = sorted({n for r in rows for n in r.scoring_tokens_per_second})
    head = f"{'model':<38}{'params':>8}{'load s':>8}{'gen t/s':>9}"
    head += "".join(f"{'score@' + str(n):>11}{'raw@' + str(n):>10}{'ratio':>7}" for n in lengths)
    lines = [head + f"{'RSS MB':>8}{'est MB':>8}"]
    for r in rows:
        cells = "".join(f"{r.scoring_tokens_per_second[n]:>11.1f}{r.raw_eval_tokens_per_second[n]:>10.1f}"
                        f"{r.scoring_tokens_per_second[n] / r.raw_eval_tokens_per_second[n]:>7.2f}"
                        for n in lengths)
        params = f"{r.n_params / 1e6:.0f}M" if r.n_params else "?"
        lines.append(f"{r.model[:37]:<38}{params:>8}{r.load_seconds:>8.2f}{r.generate_tokens_per_second:>9.1f}"
                     f"{cells}{r.rss_mb:>8.0f}{r.estimate_mb or 0:>8.0f}")
    return "\n".join(lines)
