"""Resume parity of the four gradient trainers (issue 26): the measurement, before and after the refactor.

    python -m bench.train_resume_parity --label before       # PYTHONPATH picks the code measured
    python -m bench.train_resume_parity --compare bench/results/train-resume-parity-before.json \\
        bench/results/train-resume-parity-after.json [--known 'recycle-full/resumed-kill=why']

Each scenario trains a tiny model three times on the CPU, one thread, deterministic algorithms:
- `uninterrupted`: start to end;
- `resumed-kill`: stopped before optimizer step N+1 by an exception that no handler catches (a stand-in
  for kill -9: nothing is saved on the way out, only `finally` blocks run), then `resume=True` to the end;
- `resumed-ctrl-c`: the same with KeyboardInterrupt (the trainer may save a checkpoint on the way out).
N is chosen so that a checkpoint exists and the steps after it are lost and redone. The interruption is
a global optimizer step pre-hook (`torch.optim.optimizer.register_optimizer_step_pre_hook`), so it works
on any trainer that steps a torch optimizer, before and after the refactor, with no patching of its code.

Scenarios: clip-lit (bundled all-MiniLM-L6-v2 text tower, locked), clip-full (a 1-layer random BERT with
MiniLM's tokenizer, so the full run stays small), captioner (MLP mapper on a random Llama),
soft-prompt (random GPT-2), recycle-embeddings and recycle-full (random GPT-2).

Recorded per run: the sha256 of the final trained tensors (every tensor of the written safetensors file,
names, dtypes, shapes and bytes in sorted order, not the file bytes), a short digest per tensor, the
final loss/history numbers, and whether the resumed runs equal the uninterrupted one (tensors, numbers,
largest absolute difference). The inputs (random models, images) are hashed too, so a changed
`save_random_lm` is told apart from a changed trainer. `--label L` writes
bench/results/train-resume-parity-L.json with the Python, torch and CPU (`lscpu`) it ran on.

`--compare A B` prints, per scenario and run, A's and B's tensor hashes and whether they agree, and the
(a)==(b) resume check on each side; it exits 1 if any run of B differs from A's, unless the pair is
listed with `--known SCENARIO[/RUN]=REASON` (a resumed run of B that now equals A's uninterrupted one,
a resume made exact, is said so: list it as known if that was meant). A measurement exits 1 when a run
raised (its error is in the JSON, the other runs go on). Exit 2: bad arguments (one line).

What the old code (bench/results/train-resume-parity-before.json) shows: every uninterrupted run repeats
bit for bit; clip-lit, captioner and soft-prompt resume bit for bit either way, clip-full after a kill;
three resumes do not, for reasons in the old code (each confirmed by patching it in a scratch run):
- recycle-*: the optimizer's param groups are rebuilt, not restored, so the first step after a resume
  runs at the schedule's step-0 rate (restoring the rate alone makes recycle-embeddings exact);
- recycle-full: also GPT-2's dropout draws from torch's generator, which the checkpoint does not keep;
- clip-full after Ctrl-C: the checkpoint written on the way out keeps torch's random state as it is after
  the interrupted step's forward pass (its dropout already drawn), so the redone step draws other masks.

Trainers are imported from their new homes first (zeroshot.train.*, zeroshot.caption.captioner,
zeroshot.testing), then their old paths; the JSON says which module each came from.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import lscpu_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
RUNS = ("uninterrupted", "resumed-kill", "resumed-ctrl-c")
SCENARIOS = ("clip-lit", "clip-full", "captioner", "soft-prompt", "recycle-embeddings", "recycle-full")
SEED = 0

# name -> modules to try, the new home first (issue 26), then the old path
IMPORTS = {
    "train_clip": ("zeroshot.train.clip", "zeroshot.vision.train"),
    "TrainConfig": ("zeroshot.train.clip", "zeroshot.vision.train"),
    "PrefixCaptioner": ("zeroshot.caption.captioner", "zeroshot.vision.caption"),
    "CaptionerConfig": ("zeroshot.caption.captioner", "zeroshot.vision.caption"),
    "load_caption_lm": ("zeroshot.caption.captioner", "zeroshot.vision.caption"),
    "train_soft_prompt": ("zeroshot.train.soft_prompt", "zeroshot.text.soft_prompt"),
    "SoftPromptConfig": ("zeroshot.train.soft_prompt", "zeroshot.text.soft_prompt"),
    "recycle_lm": ("zeroshot.train.recycle", "zeroshot.text.recycle"),
    "RecycleConfig": ("zeroshot.train.recycle", "zeroshot.text.recycle"),
    "save_random_lm": ("zeroshot.testing", "zeroshot.models.lm_transformers"),
    "load_lm": ("zeroshot.models.loader",),
    "PromptTemplate": ("zeroshot.text.prompts",),
    "bundled_minilm_dir": ("zeroshot.models.sentence",),
}


class SimulatedKill(BaseException):
    """kill -9, in process: neither `except Exception` nor `except KeyboardInterrupt` catches it."""


class ArgumentError(Exception):
    """Bad arguments or unreadable input files: one line, exit 2."""


# ---------------------------------------------------------------------------------------------------
# Environment


def make_deterministic() -> None:
    """CPU only, one thread everywhere, deterministic algorithms; set before torch is imported."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ[name] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars, one per model load

    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):  # only settable before any inter-op work
        torch.set_num_interop_threads(1)
    torch.use_deterministic_algorithms(True)


def reseed() -> None:
    """The same global random state before every trainer call."""
    import numpy as np
    import torch

    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)


def environment() -> dict:
    import numpy as np
    import torch

    versions = {}
    for package in ("transformers", "peft", "tokenizers", "safetensors"):
        try:
            versions[package] = importlib.import_module(package).__version__
        except ImportError:
            versions[package] = None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        **versions,
        "cpu": lscpu_model(),
        "machine": platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "pythonhashseed": os.environ.get("PYTHONHASHSEED"),
    }


def code_identity() -> dict:
    """Which zeroshot was measured: its file, and the git commit (and dirtiness) of its source tree."""
    import zeroshot

    source = Path(zeroshot.__file__).resolve().parent
    info: dict = {"zeroshot_file": str(Path(zeroshot.__file__).resolve())}
    try:
        git = ["git", "-C", str(source)]
        info["git_commit"] = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                                            check=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "."], capture_output=True, text=True,
                               check=True).stdout
        info["git_dirty"] = bool(dirty.strip())
    except (OSError, subprocess.CalledProcessError):
        info["git_commit"] = None
    return info


def resolve_imports() -> tuple[dict, dict]:
    """name -> object, and name -> the module it came from (new home first, then the old path)."""
    found, origin = {}, {}
    for name, modules in IMPORTS.items():
        for module in modules:
            try:
                loaded = importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
                    continue  # this code has no such module (yet, or any more)
                raise
            if hasattr(loaded, name):
                found[name], origin[name] = getattr(loaded, name), module
                break
        else:
            raise ImportError(f"{name} is in none of {', '.join(modules)}")
    return found, origin


# ---------------------------------------------------------------------------------------------------
# Hashing


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tensor_digest(paths: list[Path]) -> tuple[dict, dict]:
    """sha256 over the tensors (name, dtype, shape, bytes; sorted by name) of safetensors files, a
    12-hex digest per tensor, and the tensors themselves.

    The file bytes are not hashed: a header may hold metadata (versions, formats) that is no number.
    """
    import torch
    from safetensors.torch import load_file

    tensors: dict = {}
    for path in paths:
        for name, tensor in load_file(str(path)).items():
            key = name if len(paths) == 1 else f"{path.name}:{name}"
            tensors[key] = tensor
    whole = hashlib.sha256()
    each = {}
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        head = f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode()
        body = tensor.reshape(-1).view(torch.uint8).numpy().tobytes()
        whole.update(head)
        whole.update(body)
        each[name] = hashlib.sha256(head + body).hexdigest()[:12]
    return {"sha256": whole.hexdigest(), "n_tensors": len(each), "tensors": each}, tensors


def numbers_sha256(numbers: dict) -> str:
    return hashlib.sha256(json.dumps(numbers, sort_keys=True).encode()).hexdigest()


def max_abs_diff(a: dict, b: dict) -> float | None:
    """The largest |a - b| over the tensors both hold (None when the names or shapes differ)."""
    if a.keys() != b.keys():
        return None
    worst = 0.0
    for name, x in a.items():
        y = b[name]
        if x.shape != y.shape:
            return None
        if x.numel() and (x.is_floating_point() or y.is_floating_point()):
            worst = max(worst, float((x.double() - y.double()).abs().max()))
        elif x.numel() and not bool((x == y).all()):
            return float("inf")
    return worst


# ---------------------------------------------------------------------------------------------------
# Inputs: tiny models and data, made once per process (their hashes are recorded)

ITALIAN = [
    "Il gatto dorme sul divano mentre la pioggia cade sulla città.",
    "La vita è bella quando si hanno amici con cui parlare.",
    "Per installare un pacchetto si usa il comando apt con i permessi di amministratore.",
    "Un vecchio proverbio dice che chi va piano va sano e va lontano.",
    "Il sistema operativo gestisce la memoria e i processi del computer.",
    "La mattina prendo un caffè al bar sotto casa e leggo il giornale.",
    "Domani andiamo al mare con il treno delle otto e torniamo la sera.",
    "La biblioteca comunale resta aperta fino alle sette di sera.",
]
TOPICS = {
    "sport": ["The striker scored twice in the final", "The club won the cup",
              "A late goal won the match", "The keeper saved a penalty"],
    "business": ["Shares rose after record profits", "The bank cut its rates",
                 "Profits fell at the firm", "Markets rallied on the news"],
    "politics": ["The minister called an election", "Parliament passed the bill",
                 "The party chose a leader", "Voters went to the polls"],
}


def folder_digest(folder: Path) -> str:
    """Tensors of every safetensors file plus the bytes of the tokenizer and config files."""
    digest = hashlib.sha256()
    weights = sorted(folder.glob("*.safetensors"))
    digest.update(tensor_digest(weights)[0]["sha256"].encode())
    for name in ("tokenizer.json", "vocab.txt"):
        if (folder / name).is_file():
            digest.update(name.encode() + b"\0" + file_sha256(folder / name).encode())
    return digest.hexdigest()


def make_inputs(work: Path, api: dict, wanted: set[str]) -> dict:
    """The random models and data the scenarios train on; returns their paths and hashes."""
    import numpy as np
    import torch
    from PIL import Image

    inputs: dict = {"paths": {}, "sha256": {}}
    paths, hashes = inputs["paths"], inputs["sha256"]
    if wanted & {"captioner"}:
        reseed()
        paths["llama"] = Path(api["save_random_lm"](work / "llama", arch="llama", seed=0))
        hashes["random_lm_llama"] = folder_digest(paths["llama"])
    if wanted & {"soft-prompt", "recycle-embeddings", "recycle-full"}:
        reseed()
        paths["gpt2"] = Path(api["save_random_lm"](work / "gpt2", arch="gpt2", seed=0))
        hashes["random_lm_gpt2"] = folder_digest(paths["gpt2"])
    if wanted & {"clip-lit", "clip-full"}:
        minilm = Path(api["bundled_minilm_dir"]())
        hashes["minilm"] = folder_digest(minilm)
        root = work / "images"
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[:28, :28]
        for k in range(12):  # three kinds of generated 28x28 shapes, 12 of each
            r = 6 + k % 5
            shapes = {
                "t-shirt": ((yy - 14) ** 2 + (xx - 14) ** 2 < r * r).astype(np.uint8) * 255,
                "trouser": ((abs(xx - 14) < 2 + k % 3) * 255).astype(np.uint8),
                "bag": (((yy // (3 + k % 3)) % 2) * rng.integers(120, 255)).astype(np.uint8),
            }
            for name, array in shapes.items():
                (root / name).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(root / name / f"{k:02d}.png")
        paths["images"] = root
        digest = hashlib.sha256()
        for path in sorted(root.rglob("*.png")):
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            digest.update(np.asarray(Image.open(path)).tobytes())
        hashes["images"] = digest.hexdigest()
    if "clip-full" in wanted:
        from transformers import AutoTokenizer, BertConfig, BertModel

        folder = work / "small-bert"
        tokenizer = AutoTokenizer.from_pretrained(str(minilm))
        torch.manual_seed(0)
        BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                             num_attention_heads=2, intermediate_size=64)).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        paths["small_bert"] = folder
        hashes["small_bert"] = folder_digest(folder)
    return inputs


# ---------------------------------------------------------------------------------------------------
# The scenarios: each `run(out, resume)` trains into `out` and returns (weight files, numbers)

CLIP_TINY = dict(image_width=32, image_layers=1, image_heads=2, batch_size=12, lr=3e-3, warmup_steps=2,
                 dev_fraction=0.15, eval_every=4, checkpoint_every=3, patience=50, epochs=100, max_steps=8,
                 seed=0)
CAPTIONER = dict(epochs=4, batch_size=4, lr=1e-2, seed=0)
SOFT_PROMPT = dict(n_virtual_tokens=4, init="text", epochs=4, learning_rate=0.1, batch_size=3, patience=5,
                   dev_fraction=0.25, seed=0)
RECYCLE = dict(vocab_size=300, steps=12, seq_len=16, batch_size=2, learning_rate=2e-2, warmup=3,
               save_every=4, seed=0)

# scenario -> (trainer, settings, completed optimizer steps before the interruption, what that loses)
PLAN = {
    "clip-lit": ("clip", dict(CLIP_TINY, mode="lit"), 5,
                 "8 steps; checkpoints after steps 3, 4 (dev eval), 6, 8; stopped in step 6, so step 5 "
                 "is redone from the step-4 checkpoint"),
    "clip-full": ("clip", dict(CLIP_TINY, mode="full"), 5,
                  "as clip-lit, both towers training (text dropout draws from torch's generator)"),
    "captioner": ("captioner", CAPTIONER, 7,
                  "4 epochs of 3 steps, a checkpoint after every epoch; stopped in step 8, so step 7 "
                  "(the first of epoch 3) is redone from the epoch-2 checkpoint"),
    "soft-prompt": ("soft-prompt", SOFT_PROMPT, 7,
                    "4 epochs of 3 steps (9 train, 3 dev examples), a checkpoint after every epoch; "
                    "stopped in step 8, so step 7 is redone from the epoch-2 checkpoint"),
    "recycle-embeddings": ("recycle", dict(RECYCLE, mode="embeddings"), 6,
                           "12 steps, a checkpoint every 4; stopped in step 7, so steps 5-6 are redone "
                           "from the step-4 checkpoint"),
    "recycle-full": ("recycle", dict(RECYCLE, mode="full"), 6,
                     "as recycle-embeddings, every weight training (GPT-2 dropout draws from torch's "
                     "generator)"),
}


def make_runner(scenario: str, api: dict, inputs: dict):
    trainer, settings, _, _ = PLAN[scenario]
    paths = inputs["paths"]
    if trainer == "clip":
        text_model = None if settings["mode"] == "lit" else str(paths["small_bert"])

        def run(out: Path, resume: bool):
            config = api["TrainConfig"](**settings, text_model=text_model)
            result = api["train_clip"](paths["images"], out, config, resume=resume, progress=False)
            record = result.record
            numbers = {key: record.get(key) for key in ("steps", "best_step", "best_dev_loss",
                                                         "stopped_early", "history")}
            return [out / "model.safetensors"], numbers

    elif trainer == "captioner":
        import numpy as np

        rng = np.random.default_rng(0)
        embeddings = rng.normal(size=(12, 8)).astype(np.float32)
        captions = ["a red square", "a green circle", "two blue lines", "one black dot"] * 3

        def run(out: Path, resume: bool):
            lm = api["load_caption_lm"](str(paths["llama"]))
            config = api["CaptionerConfig"](embedding_dim=8, prefix_length=2)
            captioner = api["PrefixCaptioner"](config, lm, seed=0)
            captioner.fit(embeddings, captions, checkpoint=out / "checkpoint", resume=resume, **settings)
            captioner.save(out / "captioner")
            history = captioner.history
            numbers = {"epoch_losses": list(history.epoch_losses), "step_losses": list(history.step_losses)}
            return [out / "captioner" / "mapper.safetensors"], numbers

    elif trainer == "soft-prompt":
        texts = [t for items in TOPICS.values() for t in items]
        labels = [label for label, items in TOPICS.items() for _ in items]

        def run(out: Path, resume: bool):
            lm = api["load_lm"](str(paths["gpt2"]), backend="transformers", device="cpu")
            template = api["PromptTemplate"](query="Article: {text}\nTopic:")
            result = api["train_soft_prompt"](
                lm, texts, labels, out, api["SoftPromptConfig"](**settings),
                description="Classify each article by its topic.", template=template,
                label_set=sorted(TOPICS), resume=resume, progress=False)
            numbers = {"train_loss": list(result.train_loss), "dev_loss": list(result.dev_loss),
                       "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                       "stopped_early": result.stopped_early}
            return [out / "adapter_model.safetensors"], numbers

    else:
        texts = [" ".join(ITALIAN[i:] + ITALIAN[:i]) for i in range(len(ITALIAN))]

        def run(out: Path, resume: bool):
            config = api["RecycleConfig"](**settings)
            result = api["recycle_lm"](str(paths["gpt2"]), texts, out, config, resume=resume, device="cpu",
                                       progress=False)
            numbers = {"steps": result.steps, "train_loss": list(result.train_loss),
                       "vocab_size": result.vocab_size,
                       "tokenizer_json_sha256": file_sha256(out / "tokenizer.json")}
            return [out / "model.safetensors"], numbers

    return run


@contextlib.contextmanager
def interrupted_after(steps: int, exception: type[BaseException]):
    """Raise `exception` in the optimizer step after `steps` completed ones (before it changes anything)."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    seen = {"steps": 0}

    def hook(optimizer, args, kwargs):
        if seen["steps"] >= steps:
            raise exception(f"simulated interrupt before optimizer step {steps + 1}")
        seen["steps"] += 1

    handle = register_optimizer_step_pre_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def checkpoint_summary(out: Path) -> dict:
    """What the interrupted run left behind, in any trainer's format: the shallowest folder under `out`
    holding a state.json, its files, and the progress (step, epochs_done or epoch) that file records."""
    found = sorted(out.rglob("state.json"), key=lambda p: (len(p.relative_to(out).parts), str(p)))
    if not found:
        return {"found": False}
    folder = found[0].parent
    summary: dict = {"found": True, "folder": str(folder.relative_to(out)),
                     "files": sorted(p.name for p in folder.iterdir())}
    try:
        state = json.loads(found[0].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return summary
    layers = [state] + [v for v in state.values() if isinstance(v, dict)] if isinstance(state, dict) else []
    for layer in layers:
        for key in ("step", "epochs_done", "epoch"):
            if isinstance(layer.get(key), int) and not isinstance(layer.get(key), bool):
                summary["progress"] = {key: layer[key]}
                return summary
    return summary


def run_scenario(scenario: str, api: dict, inputs: dict, work: Path, keep: bool) -> dict:
    trainer, settings, stop_after, why = PLAN[scenario]
    run = make_runner(scenario, api, inputs)
    record: dict = {"trainer": trainer, "settings": settings, "interrupt_after_steps": stop_after,
                    "interrupt_plan": why, "runs": {}}
    kept: dict = {}
    for name in RUNS:
        out = work / scenario / name
        entry: dict = {}
        began = time.perf_counter()
        try:
            if name != "uninterrupted":
                exception = SimulatedKill if name == "resumed-kill" else KeyboardInterrupt
                reseed()
                with interrupted_after(stop_after, exception) as seen:
                    try:
                        with contextlib.redirect_stdout(sys.stderr):  # trainers' progress lines
                            run(out, False)
                    except exception:
                        pass
                    else:
                        raise RuntimeError(f"the run finished before step {stop_after + 1}: nothing "
                                           "was interrupted")
                # Not an error when no checkpoint is found (a resume may start over, which the
                # numbers then show); the summary says what was there.
                entry["interrupted"] = {"exception": exception.__name__, "steps_done": seen["steps"],
                                        "checkpoint": checkpoint_summary(out)}
            reseed()
            with contextlib.redirect_stdout(sys.stderr):
                files, numbers = run(out, name != "uninterrupted")
            digest, tensors = tensor_digest(files)
            entry.update(digest)
            entry["numbers"] = numbers
            entry["numbers_sha256"] = numbers_sha256(numbers)
            kept[name] = tensors
        except Exception as exc:  # recorded, and the other runs go on
            entry["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        entry["seconds"] = round(time.perf_counter() - began, 2)
        record["runs"][name] = entry
        status = entry.get("sha256", "")[:12] or entry.get("error")
        print(f"  {scenario:<19} {name:<15} {entry['seconds']:6.1f} s  {status}", file=sys.stderr, flush=True)
    whole = record["runs"]["uninterrupted"]
    record["resume_exact"] = {}
    for name in RUNS[1:]:
        other = record["runs"][name]
        if "sha256" not in whole or "sha256" not in other:
            record["resume_exact"][name] = None
            continue
        record["resume_exact"][name] = {
            "tensors": other["sha256"] == whole["sha256"],
            "numbers": other["numbers_sha256"] == whole["numbers_sha256"],
            "max_abs_diff": max_abs_diff(kept["uninterrupted"], kept[name]),
            "tensors_differing": sorted(k for k, v in other["tensors"].items()
                                        if whole["tensors"].get(k) != v),
        }
    if not keep:
        shutil.rmtree(work / scenario, ignore_errors=True)
    return record


def measure(label: str, only: list[str], keep: Path | None) -> int:
    make_deterministic()
    started = time.perf_counter()
    api, origin = resolve_imports()
    record: dict = {"label": label, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "tool": {"script": "bench/train_resume_parity.py",
                             "sha256": file_sha256(Path(__file__).resolve())},
                    "environment": environment(), "code": code_identity(), "imports": origin}
    print(f"measuring {record['code']['zeroshot_file']} ({label})", file=sys.stderr, flush=True)
    failed = False
    with tempfile.TemporaryDirectory(prefix="resume-parity-") as scratch:
        work = keep if keep is not None else Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        inputs = make_inputs(work, api, set(only))
        record["inputs"] = inputs["sha256"]
        record["scenarios"] = {}
        for scenario in only:
            began = time.perf_counter()
            result = run_scenario(scenario, api, inputs, work, keep is not None)
            result["seconds"] = round(time.perf_counter() - began, 2)
            record["scenarios"][scenario] = result
            failed |= any("error" in run for run in result["runs"].values())
    record["seconds"] = round(time.perf_counter() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"train-resume-parity-{label}.json"
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(summary_table(record), file=sys.stderr)
    print(f"wrote {path.relative_to(ROOT)} ({record['seconds']:.0f} s)", file=sys.stderr)
    return 1 if failed else 0


def summary_table(record: dict) -> str:
    lines = [f"{'scenario':<19} {'run':<15} {'tensors sha256':<14} {'(a)==(b)':<9} max|diff|  seconds"]
    for scenario, result in record["scenarios"].items():
        for name, run in result["runs"].items():
            exact = result["resume_exact"].get(name) if name != "uninterrupted" else None
            same = "-" if name == "uninterrupted" else _yes_no(exact)
            diff = f"{exact['max_abs_diff']:.2e}" if exact and exact["max_abs_diff"] is not None else "-"
            lines.append(f"{scenario:<19} {name:<15} {run.get('sha256', 'ERROR')[:12]:<14} {same:<9} "
                         f"{diff:<10} {run['seconds']:6.1f}")
    return "\n".join(lines)


def _yes_no(exact: dict | None) -> str:
    if exact is None:
        return "n/a"
    if exact["tensors"] and exact["numbers"]:
        return "yes"
    parts = [part for part in ("tensors", "numbers") if not exact[part]]
    return "NO (" + ",".join(p[0] for p in parts) + ")"


# ---------------------------------------------------------------------------------------------------
# Comparing two measurements


def load_result(path: str) -> dict:
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ArgumentError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ArgumentError(f"{path} is not JSON: {exc}") from None
    if not isinstance(record, dict) or not isinstance(record.get("scenarios"), dict):
        raise ArgumentError(f"{path} is not a train-resume-parity result (no scenarios)")
    return record


def compare(path_a: str, path_b: str, known: dict[str, str]) -> int:
    a, b = load_result(path_a), load_result(path_b)
    la, lb = a.get("label", "A"), b.get("label", "B")
    print(f"A = {la}: {a.get('code', {}).get('zeroshot_file')}  ({path_a})")
    print(f"B = {lb}: {b.get('code', {}).get('zeroshot_file')}  ({path_b})")
    for key in ("python", "torch", "transformers", "peft", "tokenizers", "cpu", "torch_threads"):
        va, vb = a.get("environment", {}).get(key), b.get("environment", {}).get(key)
        if va != vb:
            print(f"note: {key} differs: {va} (A) vs {vb} (B); a difference below may come from it")
    for key in sorted(set(a.get("inputs", {})) | set(b.get("inputs", {}))):
        if a.get("inputs", {}).get(key) != b.get("inputs", {}).get(key):
            print(f"note: input {key} differs between A and B (e.g. save_random_lm changed): runs that "
                  "train on it cannot match")
    header = (f"{'scenario':<19} {'run':<15} {'A ' + la:<14.14} {'B ' + lb:<14.14} {'A==B':<18} "
              f"{'(a)==(b) A':<11} {'(a)==(b) B'}")
    print(header)
    print("-" * len(header))
    failures, notes = 0, []
    for scenario in list(a["scenarios"]) + [s for s in b["scenarios"] if s not in a["scenarios"]]:
        sa, sb = a["scenarios"].get(scenario, {}), b["scenarios"].get(scenario, {})
        for run in RUNS:
            ra, rb = sa.get("runs", {}).get(run, {}), sb.get("runs", {}).get(run, {})
            verdict, why = _verdict(ra, rb, sa, sb, run)
            reason = known.get(f"{scenario}/{run}") or known.get(scenario)
            ca = ra.get("interrupted", {}).get("checkpoint", {})
            cb = rb.get("interrupted", {}).get("checkpoint", {})
            if ca.get("progress") != cb.get("progress") or ca.get("found") != cb.get("found"):
                notes.append(f"{scenario}/{run}: the interrupted run left {_left(ca)} in A, {_left(cb)} in B")
            if verdict == "same" and known.get(f"{scenario}/{run}"):
                notes.append(f"{scenario}/{run}: listed as known, but A and B agree")
            if verdict != "same":
                if reason:
                    notes.append(f"{scenario}/{run}: known ({reason}): {why}")
                    verdict = "known"
                else:
                    failures += 1
                    if why:
                        notes.append(f"{scenario}/{run}: {why}")
            exact_a = "-" if run == "uninterrupted" else _yes_no((sa.get("resume_exact") or {}).get(run))
            exact_b = "-" if run == "uninterrupted" else _yes_no((sb.get("resume_exact") or {}).get(run))
            print(f"{scenario:<19} {run:<15} {ra.get('sha256', 'missing')[:12]:<14} "
                  f"{rb.get('sha256', 'missing')[:12]:<14} {verdict:<18} {exact_a:<11} {exact_b}")
    for note in notes:
        print(note)
    unused = sorted(set(known) - {f"{s}/{r}" for s in SCENARIOS for r in RUNS} - set(SCENARIOS))
    for key in unused:
        print(f"note: --known {key} names no scenario or run")
    print(f"{failures} run(s) of B differ from A" + (" (not listed as known)" if failures else ""))
    return 1 if failures else 0


def _left(checkpoint: dict) -> str:
    if not checkpoint:
        return "nothing recorded"
    if not checkpoint.get("found"):
        return "no checkpoint"
    progress = ", ".join(f"{k} {v}" for k, v in checkpoint.get("progress", {}).items()) or "?"
    return f"a checkpoint ({checkpoint.get('folder')}, {progress})"


def _project(b, a):
    """`b` cut down to the dict keys `a` has, at every depth (B may record more than A did)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: _project(b[k], a[k]) for k in a if k in b}
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [_project(y, x) for x, y in zip(a, b, strict=True)]
    return b


def _same_json(a, b) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # NaN-safe, exact floats


def _verdict(ra: dict, rb: dict, sa: dict, sb: dict, run: str) -> tuple[str, str]:
    if "sha256" not in ra or "sha256" not in rb:
        missing = "A" if "sha256" not in ra else "B"
        run_record = ra if missing == "A" else rb
        return "MISSING", f"no result in {missing}: {run_record.get('error', 'not run')}"
    numbers_a, numbers_b = ra.get("numbers", {}), rb.get("numbers", {})
    tensors, numbers = ra["sha256"] == rb["sha256"], _same_json(numbers_a, _project(numbers_b, numbers_a))
    if tensors and numbers:
        return "same", ""
    what = ",".join(part for part, same in (("tensors", tensors), ("numbers", numbers)) if not same)
    differing = sorted(k for k in set(ra["tensors"]) | set(rb["tensors"])
                       if ra["tensors"].get(k) != rb["tensors"].get(k))
    why = f"{what} differ"
    if differing:
        more = " ..." if len(differing) > 6 else ""
        why += f"; {len(differing)} tensor(s): {', '.join(differing[:6])}{more}"
    whole_a = sa.get("runs", {}).get("uninterrupted", {})
    if run != "uninterrupted" and rb["sha256"] == whole_a.get("sha256") and \
            _same_json(whole_a.get("numbers"), _project(numbers_b, whole_a.get("numbers"))):
        why += " -- B's resumed run equals A's uninterrupted run (the resume became exact)"
    changed = [k for k in sorted(numbers_a)
               if k not in numbers_b or not _same_json(numbers_a[k], _project(numbers_b[k], numbers_a[k]))]
    if changed:
        why += f"; numbers differ in: {', '.join(changed)}"
    return f"DIFFERS ({what})", why


# ---------------------------------------------------------------------------------------------------
# Command line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse would print the usage first)
        raise ArgumentError(message)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = _Parser(prog="python -m bench.train_resume_parity",
                     description=__doc__.split("\n\n")[0],
                     epilog="Scenarios: " + ", ".join(SCENARIOS) + ". Runs: " + ", ".join(RUNS) + ".")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--label", help="measure the zeroshot on PYTHONPATH; write "
                      "bench/results/train-resume-parity-LABEL.json")
    what.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                      help="compare two measurements (A: before, B: after); exit 1 if B differs")
    parser.add_argument("--only", help="comma-separated scenarios to measure (default: all)")
    parser.add_argument("--keep", type=Path, help="train in this folder and leave the inputs there")
    parser.add_argument("--known", action="append", default=[], metavar="SCENARIO[/RUN]=REASON",
                        help="with --compare: a difference that is expected, and why (repeatable)")
    args = parser.parse_args(argv)
    if args.label is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", args.label):
        raise ArgumentError(f"--label {args.label!r}: use letters, digits, '.', '_' or '-'")
    if args.only is not None:
        args.only = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [s for s in args.only if s not in SCENARIOS]
        if unknown or not args.only:
            raise ArgumentError(f"--only: unknown scenario {', '.join(unknown) or '(none given)'}; "
                                f"choose from {', '.join(SCENARIOS)}")
    else:
        args.only = list(SCENARIOS)
    if args.compare is None and args.known:
        raise ArgumentError("--known goes with --compare")
    if args.compare is not None and (args.keep is not None or len(args.only) != len(SCENARIOS)):
        raise ArgumentError("--only and --keep go with --label")
    known = {}
    for item in args.known:
        key, sep, reason = item.partition("=")
        if not sep or not key.strip() or not reason.strip():
            raise ArgumentError(f"--known {item!r}: write SCENARIO[/RUN]=REASON")
        known[key.strip()] = reason.strip()
    args.known = known
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        if args.compare is not None:
            return compare(*args.compare, args.known)
    except ArgumentError as exc:
        print(f"train_resume_parity: error: {exc}", file=sys.stderr)
        return 2
    return measure(args.label, args.only, args.keep)


if __name__ == "__main__":
    sys.exit(main())
