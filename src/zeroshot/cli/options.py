"""One name for one thing in every command: the shared options, and the old spellings still accepted.

Each shared option is declared once here and used by every command that takes it, so `--model` is
always the language model, `--clip-model` always the image-text model, `-o/--output` always a file,
`--output-dir` always a folder, `--format` always how results are printed and `-q/--quiet` always
quiet. `OPTION_NAMES` is the vocabulary a test checks every command's options against.

Spellings from before the names were unified keep working for one release: `rewrite_deprecated`
turns them into today's names and says so in one line on stderr. An option that was an on/off flag and
now takes a value (`--calibrate auto|on|off`) keeps its flag spellings for good: `spell_flag_values`
turns a bare `--calibrate` into `--calibrate=on` and `--no-calibrate` into `--calibrate=off`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from zeroshot.errors import UserError
from zeroshot.models.dtype import DTYPE_HELP
from zeroshot.validation import CALIBRATE_MODES, DEFAULT_CALIBRATE, split_ints

LM_HELP = ("Language model: a name `zeroshot models` lists (e.g. gemma-3-270m, once pulled), a .gguf file, "
           "Hugging Face folder or hub id (default: $ZEROSHOT_MODEL, else gemma-3-270m, chosen on "
           "dev; or the one a captioner or soft prompt records; smollm2-135m is built "
           "in); eval-text and bench-lm-ladder take several, to compare them.")
BACKEND_HELP = "Language-model backend: auto (llama.cpp when it works here), transformers or llama.cpp."
CLIP_HELP = ("Image-text (CLIP-style) model: hub id or local Hugging Face folder (default: "
             "openai/clip-vit-base-patch32, or the one an index or captioner records).")
TEMPLATES_HELP = ("Prompt templates for the class names: a shipped set (imagenet, imagenet-simple, cifar, "
                  "textures, food, pets, flowers, cars, photo, pipeline), a file (one per line, or JSON), or "
                  "one template with {} or {label} (train-clip: class folders only, default 'a photo of a "
                  "{}.').")
FORMATS = ("text", "json")
_AUDITS = ("audit lm-gender", "audit lm-sentiment", "audit typographic", "audit denigration")


@dataclass(frozen=True)
class Shared:
    """An option that several commands take, declared here once: its flags, its one help text, its
    default, the commands where the default differs (and why, in a comment), the commands where it may
    be repeated, and its one range or choice rule where no library function checks the value.

    Calling it gives the `typer.Option` for a command's signature: `seed: int = options.seed()`, or
    `options.batch_size("train-clip")` where that command has its own default. `tests/test_names.py`
    checks that every option two commands share comes from here, unchanged.
    """

    flags: tuple[str, ...]
    help: str
    default: Any = None
    defaults: Mapping[str, Any] = field(default_factory=dict)  # command (or group) -> its own default
    repeatable: frozenset[str] = frozenset()  # commands that take the option several times
    choices: Mapping[str, tuple[str, ...]] | None = None  # command -> allowed values ("" : the rest)
    min: int | None = None  # only where no library check exists (the library's rule is the one rule)
    show_default: bool = True
    envvar: str | None = None
    metavar: str | None = None
    # A former on/off flag that now takes a value: what the bare flag means, and its old off switch
    # with the value it means (see `spell_flag_values`).
    flag_value: str | None = None
    off_flag: tuple[str, str] | None = None
    values: tuple[str, ...] = ()  # the values a bare flag's next word may be (checked by the library)

    @property
    def spellings(self) -> tuple[str, ...]:
        """Every spelling, the off switch of an on/off flag too (`--calibrate/--no-calibrate`)."""
        return tuple(part for flag in self.flags for part in flag.split("/"))

    @property
    def name(self) -> str:
        """The long flag, e.g. `--seed`."""
        return next(flag for flag in self.spellings if flag.startswith("--"))

    def default_for(self, command: str | None) -> Any:
        """The default of this option in `command` (`...` where the command requires it)."""
        if command is None:
            return self.default
        group = command.split()[0]
        return self.defaults.get(command, self.defaults.get(group, self.default))

    def choices_for(self, command: str | None) -> tuple[str, ...] | None:
        if self.choices is None:
            return None
        return self.choices.get(command or "", self.choices[""])

    def __call__(self, command: str | None = None) -> Any:
        extra: dict[str, Any] = {}
        if self.min is not None:
            extra["min"] = self.min
        if self.envvar is not None:
            extra["envvar"] = self.envvar
        if self.metavar is not None:
            extra["metavar"] = self.metavar
        allowed = self.choices_for(command)
        if allowed is not None:
            extra["callback"] = _one_of(allowed)
        return typer.Option(self.default_for(command), *self.flags, help=self.help,
                            show_default=self.show_default, **extra)


def _one_of(choices: tuple[str, ...]):
    def check(value: str) -> str:
        if value not in choices:
            raise typer.BadParameter(f"choose one of {', '.join(choices)}, not {value!r}")
        return value

    return check


# --- the shared options ------------------------------------------------------------------------------
# Models and where they run
lm_model = Shared(("--model",), LM_HELP, repeatable=frozenset({"eval-text", "bench-lm-ladder"}))
lm_backend = Shared(("--backend",), BACKEND_HELP, "auto")
clip_model = Shared(("--clip-model",), CLIP_HELP)
device = Shared(("--device",), "Where the model runs: cpu, cuda, cuda:1 ... (default: cuda if available).")
# The value is checked where the model loads (`zeroshot.models.dtype.check_dtype`), before it loads.
dtype = Shared(("--dtype",), DTYPE_HELP, show_default=False)
# Inputs
labels_option = Shared(("--labels", "-l"), "Comma-separated class names: cat,dog,car.",
                       defaults={"classify-text": ...})
labels_file = Shared(("--labels-file",), "File of class names, one per line (or a JSON list).")
templates = Shared(("--templates", "-t"), TEMPLATES_HELP, "imagenet",
                   defaults={"train-clip": None,  # captions come with the pairs; class folders use one
                             "neurons": "photo"})  # train-clip's own template: words for its models
limit = Shared(("--limit",), "Use only the first N items: documents (eval-text), occupations, images "
               "(denigration: per group); fewshot-curve keeps a stratified N.")
max_chars = Shared(("--max-chars",), "Shorten each text to N characters (bbc-news default: 400).", min=1)
db = Shared(("--db",), "Image-search index folder (made by `zeroshot index`, which creates it if new).",
            defaults={"index": ..., "search": ...})
store = Shared(("--store",), "Vector store: faiss (embedded, default) or milvus.", "faiss")
milvus_uri = Shared(("--milvus-uri",), "Milvus server URI (default: Milvus Lite in DB/milvus.db). Only with "
                    "--store milvus.")
captioner = Shared(("--captioner", "-c"), "A captioner folder written by `zeroshot train-captioner`.",
                   defaults={"caption": ...})
encoder = Shared(("--encoder",), "What embeds the inputs. fewshot-curve: minilm (default), a "
                 "sentence-transformers folder or id, or lm:MODEL[@last]; train-captioner: clip-image, "
                 "clip-text or sentence (default: clip-image with --clip-model, else sentence).")
text_encoder = Shared(("--text-encoder",), "Sentence-transformers folder or id (default: all-MiniLM-L6-v2, "
                      "or the one the captioner records).")
# Demonstrations and scoring
shots = Shared(("--shots",), "Demonstrations K (fewshot-curve, tune-prompt: labelled examples per class): "
               "one number, or comma-separated numbers where the command sweeps K (eval-text, "
               "fewshot-curve); no value: every example given.",
               defaults={"demo": "10", "eval-text": "0,1,2,4,8", "fewshot-curve": "0,1,2,4,8,16"})
seeds = Shared(("--seeds",), "How many seeds each K runs with (K=0 runs once: it has no randomness).", 5,
               defaults={"fewshot-curve": 10})  # its fits take milliseconds: more seeds, a tighter band
balanced = Shared(("--balanced/--no-balanced",), "Draw demonstrations class-balanced.", False)
# The value is checked by the library (`zeroshot.validation.check_calibrate`), before any model loads.
calibrate = Shared(("--calibrate",), "Calibrate: subtract each label's score given the content-free input "
                   "'N/A'. on, off, or auto: chosen per K by leave-one-out on the demonstrations' pool, "
                   "never on the texts scored. --calibrate alone means on, --no-calibrate off (eval-text "
                   "reports plain and calibrated accuracy, and auto's with auto). auto is the default: "
                   "on dev it picked the better scoring in 15 of 16 runs across four models "
                   "(docs/lm.md).", DEFAULT_CALIBRATE,
                   metavar="[auto|on|off]", flag_value="on", off_flag=("--no-calibrate", "off"),
                   values=CALIBRATE_MODES)
normalization = Shared(("--normalization",), "Score normalisation: sum (total log-prob), token (per token) "
                       "or char (per character).", "sum")
soft_prompt = Shared(("--soft-prompt",), "A soft prompt folder from `zeroshot tune-prompt` (loads its base "
                     "model unless --model).")
# Randomness
seed = Shared(("--seed",), "Random seed: the same seed gives the same draws (demonstrations, samples, "
              "splits, initial weights); where it samples, a command draws one and prints it if not given.",
              0, defaults={"generate": None, "caption": None})  # sampling: a fresh seed unless asked
# Decoding
max_tokens = Shared(("--max-tokens",), "Most new tokens one generation may produce (serve: the most one "
                    "request may ask for).", 64,
                    defaults={"eval-text": 32,  # free-form answers are short
                              "bench-lm-ladder": 16,  # one timing, not a text
                              "serve": 512,  # a limit on requests, see ServerSettings
                              "caption": 24,  # captions are a sentence
                              "audit lm-sentiment": 50})  # GPT-3's continuation length
temperature = Shared(("--temperature",), "Sampling temperature (0: greedy decoding).", 0.0,
                     defaults={"audit lm-sentiment": 1.0})  # GPT-3's sampling for the audit
top_p = Shared(("--top-p",), "Nucleus sampling mass (1: off).", 1.0,
               defaults={"audit lm-sentiment": 0.9})  # GPT-3's sampling for the audit
top_k = Shared(("--top-k", "-k"), "How many of the best to keep: labels per image (classify-images), "
               "results (search), images per unit, most and least active (neurons), or the likeliest "
               "tokens to sample from (generate, caption; 0: all).", 0,
               defaults={"classify-images": 3, "search": 10, "neurons": 9})
repetition_penalty = Shared(("--repetition-penalty",), "Repetition penalty (1: off).", 1.0)
num_beams = Shared(("--num-beams",), "Beam search width (1: greedy; transformers only).", 1)
bootstrap = Shared(("--bootstrap",), "Bootstrap resamples of the 95 % intervals.", 2000)
template = Shared(("--template",), "A prompt template (lm-gender: with {occupation}; lm-sentiment: with "
                  "{group}); repeat for several (default: GPT-3's 3).",
                  repeatable=frozenset({"audit lm-gender", "audit lm-sentiment"}))
# Judging: a cut-off on a score, texts from a file, a second language model
threshold = Shared(("--threshold",), "Lowest score kept. detect: a query's probability against the "
                   "background prompts (0-1); detect-generated: the lowest score flagged as "
                   "machine-written (default: the calibration's).", 0.5, defaults={"detect-generated": None})
texts_file = Shared(("--texts-file",), "Texts from a file, one per line (detect-generated also reads a "
                    '.jsonl of {"text", "context", "label"}, context and label optional).')
performer = Shared(("--performer",), "Binoculars' second language model, of --model's tokenizer "
                   "(detect-generated default: qwen2.5-coder-0.5b; serve: turns Binoculars on at "
                   "/v1/detect-generated).")
# Batches, threads, training
batch_size = Shared(("--batch-size", "-b"), "Items per model call, or per optimizer step where the command "
                    "trains: images, crops, pairs, examples or windows.", 32,
                    defaults={"train-clip": 128,  # a contrastive loss wants many negatives per step
                              "tune-prompt": 4,  # a few examples, each a full LM pass with gradients
                              "recycle-lm": 16})  # windows of --seq-len tokens
workers = Shared(("--workers",), "Threads decoding images while the model runs.", 2)
threads = Shared(("--threads",), "CPU threads (default: the library's own choice; on a busy machine 1 keeps "
                 "threads from waiting on each other).", min=1)
no_cache = Shared(("--no-cache",), "Skip the on-disk cache of text embeddings (labels, queries).", False)
epochs = Shared(("--epochs",), "Most passes over the training data (early stopping may end sooner).", 5,
                defaults={"tune-prompt": 20})  # a soft prompt is small; early stopping usually ends it
lr = Shared(("--lr",), "Peak learning rate (AdamW).", 1e-3,
            defaults={"tune-prompt": 0.03,  # prompt embeddings alone move slowly
                      "recycle-lm": 2e-3,
                      "neurons": 0.05})  # Lucid's rate for a Fourier-parametrised image
patience = Shared(("--patience",), "Stop after this many dev evaluations without a better dev loss.", 3)
dev_fraction = Shared(("--dev-fraction",), "Share of the examples held out as the dev split.", 0.1,
                      defaults={"tune-prompt": 0.25})  # few examples per label: a dev split worth reading
init = Shared(("--init",), "How new embeddings start. tune-prompt: text (the task description's token "
              "embeddings) or random; recycle-lm: mean (of the base embeddings of each token's English "
              "pieces) or random.", "text", defaults={"recycle-lm": "mean"})
resume = Shared(("--resume",), "Continue the unfinished run in --output-dir (same data and options).", False)
overwrite = Shared(("--overwrite",), "Replace what is already there: a model in --output-dir (train-clip), "
                   "the sample files (samples; other files are left alone).", False)
lengths = Shared(("--lengths",), "Comma-separated token counts to time (bench-lm: new tokens; "
                 "bench-lm-ladder: prompt lengths scored).", "32,128,512")
# Output
output_file = Shared(("--output", "-o"), "File to write the results to (where a command writes several "
                     "formats, its suffix picks one: .csv, .jsonl or .json).",
                     defaults={"bench-lm": Path("results/bench-lm.json"),
                               "bench-lm-ladder": Path("bench/results/bench_lm_ladder.json")})
output_dir = Shared(("--output-dir",), "Folder the command writes its files into (made if missing).",
                    defaults={"eval-text": Path("results/eval-text"),
                              "fewshot-curve": Path("results/fewshot-curve"),
                              "detect": Path("results/detect"), "audit": Path("results/audit"),
                              "neurons": Path("results/neurons"),
                              "train-clip": ..., "train-captioner": ..., "tune-prompt": ...,
                              "recycle-lm": ...})
output_format = Shared(("--format",), "How to print the results: text or json (search: table, json or "
                       "html).", "text", defaults={"search": "table"},
                       choices={"": FORMATS, "search": ("table", "json", "html")})
quiet = Shared(("--quiet", "-q"), "Quiet: no progress bar, and none of the per-item lines a command prints "
               "as it goes (tables, JSON lines, skipped files); summaries and files stay.", False)

_FLAG_VALUED = (calibrate,)  # the former on/off flags that now take a value

# Commands without -q/--quiet, and why: none of them shows a progress bar or runs long.
QUICK_COMMANDS: dict[str, str] = {
    "classify-text": "a few texts, one table",
    "generate": "streams its one answer",
    "similarity": "a few images, one matrix",
    "export-tokenizer": "writes one folder",
    "serve": "a server: it logs requests, it has no progress",
    "demo": "five articles, and the point is to show them",
    "caption": "a few inputs, one line each",
    "search": "one query (a bar shows only while an index brings its store up to date)",
    "models list": "one table, read from the disk",
    "samples": "copies and crops a few hundred small images in about a second",
}


def one_number(text: str | None, option: str) -> int | None:
    """The one whole number of an option that shares its name with a list option (`--shots 5`)."""
    if text is None:
        return None
    values = split_ints(text, option)
    if len(values) != 1:
        raise UserError(f"{option} takes one number here, got {text!r}")
    return values[0]


# Every long option any command may have, and what it means. A new command reuses these names; a
# test fails when an option is missing here, so a new name is a deliberate decision.
OPTION_NAMES: dict[str, str] = {
    "--model": "the language model", "--backend": "the language-model backend",
    "--clip-model": "the image-text model", "--text-model": "the text tower to train from",
    "--output": "one file to write", "--output-dir": "a folder to write into",
    "--format": "how results are printed", "--quiet": "no progress bar or table",
    "--seed": "the random seed", "--seeds": "how many seeds", "--first-seed": "the first seed",
    "--limit": "use only the first N items", "--labels": "comma-separated class names",
    "--labels-file": "class names from a file", "--templates": "prompt templates",
    "--top-k": "how many best results", "--batch-size": "items per model call",
    "--workers": "decoding threads", "--device": "cpu or cuda", "--dtype": "number format",
    "--threads": "CPU threads", "--max-tokens": "most tokens to generate",
    "--temperature": "sampling temperature", "--top-p": "nucleus sampling mass",
    "--repetition-penalty": "repetition penalty", "--num-beams": "beam search width",
    "--stop": "stop sequence", "--chat": "use the chat template", "--stream": "print tokens as decoded",
    "--description": "task description", "--examples": "demonstrations file", "--shots": "demonstrations K",
    "--balanced": "class-balanced demonstrations", "--calibrate": "content-free calibration",
    "--normalization": "score normalisation", "--max-chars": "shorten texts", "--articles": "how many",
    "--backends": "backends to compare", "--lengths": "token counts", "--db": "index folder",
    "--store": "vector store", "--milvus-uri": "Milvus URI", "--image": "query image",
    "--min-score": "lowest score kept", "--methods": "few-shot methods", "--encoder": "sentence encoder",
    "--test-fraction": "held-out share", "--split-seed": "split seed", "--query": "what to find",
    "--example": "example image", "--example-label": "example's name", "--example-mode": "how examples score",
    "--threshold": "lowest score kept", "--example-threshold": "lowest example similarity",
    "--proposals": "region proposals", "--method": "proposal method", "--search-mode": "search mode",
    "--context-padding": "context around boxes", "--nms-iou": "NMS overlap", "--no-cache": "skip the cache",
    "--host": "address", "--port": "port", "--image-root": "readable image folder", "--api-key": "API key",
    "--allowed-origins": "CORS origins", "--allowed-hosts": "accepted Host names",
    "--max-upload-mb": "largest upload", "--max-pixels": "largest image",
    "--max-prompt-chars": "longest prompt", "--preload": "load models at start", "--mode": "CLIP or LiT",
    "--image-size": "image size", "--patch-size": "patch size", "--image-width": "ViT width",
    "--image-layers": "ViT layers", "--image-heads": "ViT heads", "--projection": "embedding size",
    "--epochs": "epochs", "--lr": "learning rate", "--text-lr": "text tower learning rate",
    "--dev-fraction": "dev share", "--eval-every": "steps per evaluation", "--patience": "early stopping",
    "--checkpoint-every": "steps between checkpoints", "--max-steps": "step budget", "--resume": "continue",
    "--overwrite": "replace", "--occupations": "occupations", "--template": "prompt template",
    "--female": "female words", "--male": "male words", "--bootstrap": "bootstrap samples",
    "--compare-naive": "also the naive way", "--groups": "groups", "--samples": "samples",
    "--text": "overlaid text", "--sizes": "sizes", "--positions": "positions", "--colours": "colours",
    "--opacities": "opacities", "--variants": "variants", "--grid": "grid", "--added": "added labels",
    "--child": "child labels", "--group-column": "group column", "--path-column": "path column",
    "--rounds": "timing rounds", "--chat-template": "use the model's chat template",
    "--log-samples": "one JSONL record per document", "--captioner": "a trained captioner folder",
    "--embeddings": "precomputed embeddings", "--text-encoder": "sentence encoder", "--texts-file": "texts",
    "--layers": "mapper layers", "--mapper": "mlp or transformer", "--prefix-length": "LM prefix vectors",
    "--soft-prompt": "a trained soft prompt folder", "--virtual-tokens": "soft prompt length",
    "--init": "how new embeddings start", "--vocab-size": "tokenizer vocabulary size",
    "--full": "train the whole model", "--steps": "optimizer steps", "--seq-len": "tokens per window",
    "--eval-paragraphs": "held-out paragraphs scored", "--engine": "where the work runs",
    "--ray-address": "Ray cluster address", "--ray-workers": "Ray embedding actors",
    "--context": "text the texts continue", "--detector": "which detector",
    "--performer": "Binoculars' second model", "--calibration": "a calibration file",
    "--fit-calibration": "write a calibration", "--min-tokens": "shortest text judged",
    "--layer": "an image-tower layer (neurons)", "--units": "unit numbers (neurons)",
    "--top-units": "units of highest variance (neurons)", "--tokens": "mean or cls over tokens (neurons)",
    "--words-file": "extra words to name units by (neurons)", "--visualize": "feature visualisations",
    "--vis-steps": "feature visualisation steps", "--direction": "a unit's direction for its words (neurons)",
    "--help": "help",
}

# Spellings from before the names were unified: command -> {old option: its replacement tokens}.
_CLIP_RENAMES = {"--model": ("--clip-model",), "-m": ("--clip-model",)}
_FOLDER_RENAMES = {"--out": ("--output-dir",)}
DEPRECATED: dict[str, dict[str, tuple[str, ...]]] = {
    "classify-text": {"--json": ("--format", "json")},
    "eval-text": _FOLDER_RENAMES,
    "generate": {"--beams": ("--num-beams",)},
    "caption": {"--beams": ("--num-beams",)},
    "bench-lm": {"--out": ("--output",)},
    "classify-images": _CLIP_RENAMES,
    "index": _CLIP_RENAMES,
    "search": {**_CLIP_RENAMES, "-f": ("--format",)},
    "similarity": _CLIP_RENAMES,
    "fewshot-curve": _FOLDER_RENAMES,
    "detect": {**_CLIP_RENAMES, "--out": ("--output-dir",), "-o": ("--output-dir",)},
    "train-clip": {"--out": ("--output-dir",), "-o": ("--output-dir",)},
    "audit lm-gender": _FOLDER_RENAMES,
    "audit lm-sentiment": _FOLDER_RENAMES,
    "audit typographic": {**_CLIP_RENAMES, **_FOLDER_RENAMES},
    "audit denigration": {**_CLIP_RENAMES, **_FOLDER_RENAMES},
}


_VALUE_LIKE = re.compile(r"[A-Za-z]{1,8}")  # a short bare word reads as a (perhaps misspelt) value


def spell_flag_values(argv: list[str]) -> list[str]:
    """`argv` with the flag spellings of options that now take a value written out with `=`.

    A bare `--calibrate` becomes `--calibrate=on` unless the next word is its value: one of its values,
    or a short word of letters that reads as one misspelt (`--calibrate maybe` is refused by the value
    check, not classified as a text). Anything else after it (an option, a path, a task name, a text
    with spaces) is left for what follows, as when `--calibrate` was an on/off flag. `--no-calibrate`
    becomes `--calibrate=off`. Nothing after `--` is touched.
    """
    flags = {spec.name: spec for spec in _FLAG_VALUED}
    offs = {spec.off_flag[0]: spec for spec in _FLAG_VALUED if spec.off_flag}
    out: list[str] = []
    index = 0
    while index < len(argv):
        word = argv[index]
        index += 1
        if word == "--":
            return out + argv[index - 1:]
        if word in offs:
            spec = offs[word]
            out.append(f"{spec.name}={spec.off_flag[1]}")  # type: ignore[index]
        elif word in flags:
            spec = flags[word]
            following = argv[index] if index < len(argv) else None
            if following is not None and (following in spec.values or _VALUE_LIKE.fullmatch(following)):
                out.append(f"{word}={following}")
                index += 1
            else:
                out.append(f"{word}={spec.flag_value}")
        else:
            out.append(word)
    return out


def rewrite_deprecated(argv: list[str], takes_value: Callable[[str], bool] | None = None) -> list[str]:
    """`argv` with old option spellings replaced by today's, one notice on stderr for each.

    Only a word in option position is an option: the word after an option that takes a value is that
    value, whatever it looks like (`--description --json` describes a task as "--json"; it is not the
    old `--json`). `takes_value(name)` says which options take one (the CLI asks click); without it an
    old spelling is rewritten wherever it stands, as before.
    """
    words = [word for word in argv[:2] if not word.startswith("-")]
    command = " ".join(words[:2]) if " ".join(words[:2]) in DEPRECATED else (words[0] if words else "")
    renames = DEPRECATED.get(command)
    if not renames:
        return argv
    start = len(command.split())
    out = list(argv[:start])
    value_next = False  # the previous word was an option whose value this word is
    for index, word in enumerate(argv[start:], start):
        if value_next:
            value_next = False
            out.append(word)
            continue
        if word == "--":  # everything after is an argument, never an option
            return out + argv[index:]
        name, sep, value = word.partition("=")
        new = renames.get(name)
        if new is None:
            value_next = bool(takes_value and word.startswith("-") and not sep and takes_value(word))
            out.append(word)
            continue
        print(f"warning: `zeroshot {command} {name}` is deprecated and will be removed in the next release; "
              f"use {' '.join(new)}", file=sys.stderr)
        out.extend(new[:-1] + ((new[-1] + sep + value),) if sep else new)
        # an old spelling whose replacement takes a value (`-o DIR` -> `--output-dir DIR`) takes it next
        value_next = bool(takes_value and not sep and takes_value(new[-1]) and len(new) == 1)
    return out
