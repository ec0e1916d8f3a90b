"""Zero-shot detection of machine-written text with frozen LMs (GLTR, Binoculars).

Machine text sits where a language model's likelihood is high and its rank low (GLTR, Gehrmann et al.
2019). Four detectors, each a number per text, every one oriented so that **higher means more likely
machine-written**:

- `log-likelihood`: the mean log-probability of the text's tokens under the observer model;
- `log-rank`: minus the mean log of each token's rank in the observer's distribution (rank 1 = its
  first choice);
- `entropy`: minus the mean entropy of the observer's distribution at each token (sampled text goes
  where the model is sure);
- `binoculars`: minus Binoculars' ratio (Hans et al. 2024): the performer's log-perplexity of the text
  divided by the cross-perplexity of the two models (how surprised the performer is by the observer's
  predictions). Two models of one tokenizer are needed; the ratio cancels what the prompt made likely.

`raw` keeps each detector's own statistic (the ratio itself for Binoculars, where lower means machine).
A decision needs a threshold: fitted on labelled dev texts (`fit_calibration`), shipped for the default
models (`audit/data/generated-text-calibration.json`), or given. The scores are evidence, not proof: see
docs/audit.md for what they cannot show (short texts, paraphrase, other languages).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from zeroshot.errors import UserError
from zeroshot.models.lm import LanguageModel

DETECTORS = ("binoculars", "log-likelihood", "log-rank", "entropy")
DEFAULT_DETECTOR = "binoculars"
# The two catalogue models of one tokenizer (`zeroshot models pull NAME`). Per detector, the model that
# observes (and Binoculars' performer) was chosen on the dev split of the issue-30 measurement: the 0.5B
# reads alone better than the 1.5B; Binoculars works with the 1.5B observing and the 0.5B performing.
SMALL, LARGE = "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"
DEFAULT_MODELS: dict[str, tuple[str, str | None]] = {
    "binoculars": (LARGE, SMALL),
    "log-likelihood": (SMALL, None),
    "log-rank": (SMALL, None),
    "entropy": (SMALL, None),
}
MIN_TOKENS = 32  # below this, a mean over tokens is too noisy to judge: refused, never guessed
MAX_TOKENS = 512  # tokens judged per text, as Binoculars observes at most 512
DEFAULT_TARGET_FPR = 0.01  # a false accusation costs more than a miss: thresholds aim at 1 % of humans
CALIBRATION_FILE = Path(__file__).parent / "data" / "generated-text-calibration.json"


@dataclass
class DetectConfig:
    """What to run; `check()` refuses bad values before any model loads."""

    detector: str = DEFAULT_DETECTOR
    observer: str | None = None  # a catalogue name, GGUF or folder; None: DEFAULT_MODELS[detector]
    performer: str | None = None  # Binoculars only; None: DEFAULT_MODELS["binoculars"]
    backend: str = "auto"
    min_tokens: int = MIN_TOKENS
    max_tokens: int = MAX_TOKENS
    threshold: float | None = None  # on `score`; overrides any calibration
    calibration: str | None = None  # a file written by `Calibration.save`; None: the shipped one, if any

    def check(self) -> None:
        if self.detector not in DETECTORS:
            raise UserError(f"unknown detector {self.detector!r}: choose one of {', '.join(DETECTORS)}")
        if self.performer is not None and self.detector != "binoculars":
            raise UserError(f"--performer is for the binoculars detector only, not {self.detector}")
        if self.min_tokens < 2:
            raise UserError(f"the minimum length must be at least 2 tokens, got {self.min_tokens}")
        if self.max_tokens < self.min_tokens:
            raise UserError(f"the maximum length ({self.max_tokens} tokens) is below the minimum "
                            f"({self.min_tokens})")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise UserError(f"the threshold must be a finite number, got {self.threshold}")
        if self.calibration is not None:
            Calibration.load(self.calibration).check_matches(self)

    @property
    def observer_name(self) -> str:
        return self.observer or DEFAULT_MODELS.get(self.detector, (SMALL, None))[0]

    @property
    def performer_name(self) -> str | None:
        return (self.performer or DEFAULT_MODELS["binoculars"][1]) if self.detector == "binoculars" else None


@dataclass
class Calibration:
    """A threshold on one detector's score and a logistic map from score to probability, from dev texts.

    The probability is Platt scaling with both classes weighted equally: it assumes half of the texts
    you check are machine-written; scale the odds by your own prior if it differs.
    """

    detector: str
    observer: str
    performer: str | None
    threshold: float
    target_fpr: float
    slope: float
    intercept: float
    dev: dict = field(default_factory=dict)

    def probability(self, score: float) -> float:
        return float(1.0 / (1.0 + math.exp(-(self.slope * score + self.intercept))))

    def check_matches(self, config: DetectConfig) -> None:
        if self.detector != config.detector:
            raise UserError(f"the calibration is for the {self.detector} detector, not {config.detector}")

    def save(self, path: str | Path) -> Path:
        from zeroshot.files import write_atomic

        write_atomic(Path(path), json.dumps(asdict(self), indent=1) + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        try:
            data = json.loads(Path(path).read_text())
            return cls(**data)
        except FileNotFoundError:
            raise UserError(f"no calibration file at {path}") from None
        except (OSError, ValueError, TypeError) as exc:
            raise UserError(f"{path} is not a calibration file written by zeroshot ({exc})") from None


def fit_calibration(human: Sequence[float], machine: Sequence[float], config: DetectConfig,
                    target_fpr: float = DEFAULT_TARGET_FPR) -> Calibration:
    """The threshold that flags at most `target_fpr` of the human dev texts, and Platt scaling."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    human, machine = np.asarray(human, dtype=float), np.asarray(machine, dtype=float)
    if len(human) < 2 or len(machine) < 2:
        raise UserError("calibration needs at least 2 human and 2 machine-written texts")
    if not 0 < target_fpr < 1:
        raise UserError(f"the target false-positive rate must be between 0 and 1, got {target_fpr}")
    # The smallest threshold above all but a `target_fpr` share of the human scores.
    allowed = int(math.floor(target_fpr * len(human)))
    ordered = np.sort(human)[::-1]
    threshold = float(np.nextafter(ordered[allowed], np.inf))
    scores = np.concatenate([human, machine])[:, None]
    labels = np.r_[np.zeros(len(human)), np.ones(len(machine))]
    platt = LogisticRegression(class_weight="balanced").fit(scores, labels)
    dev = {"n_human": len(human), "n_machine": len(machine),
           "auroc": round(float(roc_auc_score(labels, scores[:, 0])), 4),
           "fpr": round(float((human >= threshold).mean()), 4),
           "tpr": round(float((machine >= threshold).mean()), 4)}
    return Calibration(config.detector, config.observer_name, config.performer_name, threshold, target_fpr,
                       float(platt.coef_[0, 0]), float(platt.intercept_[0]), dev)


def shipped_calibration(config: DetectConfig) -> Calibration | None:
    """The calibration shipped for this detector and these models, if there is one."""
    if not CALIBRATION_FILE.is_file():
        return None
    for entry in json.loads(CALIBRATION_FILE.read_text()):
        cal = Calibration(**entry)
        if (cal.detector, cal.observer, cal.performer) == (config.detector, config.observer_name,
                                                          config.performer_name):
            return cal
    return None


@dataclass
class TextScore:
    """One text's verdict."""

    index: int
    tokens: int  # tokens judged (after the context)
    score: float  # higher = more likely machine-written
    raw: float  # the detector's own statistic
    probability: float | None  # P(machine) from the calibration; None without one
    machine: bool | None  # score >= threshold; None without a threshold

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DetectionResult:
    """Every text's verdict, what decided it, and how fast the models read."""

    detector: str
    observer: str
    performer: str | None
    threshold: float | None
    threshold_source: str  # "given", "calibration file", "shipped calibration" or "none"
    texts: list[TextScore]
    tokens: int  # judged tokens, all texts (each read once by each model)
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        """Judged tokens per second (Binoculars reads each with both models)."""
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "texts"}
        out["tokens_per_second"] = round(self.tokens_per_second, 1)
        out["texts"] = [t.to_dict() for t in self.texts]
        return out


# -- the statistics -----------------------------------------------------------------------------------

def token_statistics(rows: np.ndarray, ids: Sequence[int]) -> dict[str, np.ndarray]:
    """Per judged token, from (n, vocabulary) log-probability rows: its log-probability, its rank
    (1 = the model's first choice) and the distribution's entropy."""
    ids = np.asarray(ids, dtype=np.int64)
    chosen = rows[np.arange(len(ids)), ids]
    rank = 1 + (rows > chosen[:, None]).sum(axis=1)
    # In the rows' own precision (float32 from the models: a float64 copy of 65 x 152k rows costs more
    # than the arithmetic), summed in float64; a token of probability 0 adds nothing, not NaN.
    probs = np.exp(rows)
    entropy = -np.einsum("ij,ij->i", probs, np.where(np.isfinite(rows), rows, 0), dtype=np.float64)
    return {"logprob": chosen.astype(np.float64), "rank": rank, "entropy": entropy}


def binoculars_ratio(observer_rows: np.ndarray, performer_rows: np.ndarray, ids: Sequence[int]) -> float:
    """Binoculars' ratio: the performer's log-perplexity over the observer-to-performer cross-perplexity
    (`ppl / x_ppl` in the authors' code). Lower means more likely machine-written."""
    ids = np.asarray(ids, dtype=np.int64)
    log_ppl = -performer_rows[np.arange(len(ids)), ids].astype(np.float64).mean()
    x_ppl = -np.einsum("ij,ij->i", np.exp(observer_rows), performer_rows, dtype=np.float64).mean()
    return float(log_ppl / x_ppl)


def detector_score(detector: str, stats: dict[str, np.ndarray], ratio: float | None) -> tuple[float, float]:
    """(score oriented higher = machine, the detector's raw statistic)."""
    if detector == "binoculars":
        return -float(ratio), float(ratio)
    if detector == "log-likelihood":
        raw = float(stats["logprob"].mean())
        return raw, raw
    if detector == "log-rank":
        raw = float(np.log(stats["rank"]).mean())
        return -raw, raw
    raw = float(stats["entropy"].mean())
    return -raw, raw


# -- the models ----------------------------------------------------------------------------------------

def check_same_tokenizer(observer: LanguageModel, performer: LanguageModel) -> None:
    """Binoculars compares two distributions token by token: both models must share one vocabulary."""
    probe = "Binoculars compares 2 models: naïve café, 1234567, https://example.org/x?y=z."
    same = (observer.vocab_size == performer.vocab_size
            and observer.tokenize(probe) == performer.tokenize(probe))
    if same and observer.vocab_size:
        sample = np.linspace(0, observer.vocab_size - 1, 512).astype(int)
        same = all(observer.token_bytes(i) == performer.token_bytes(i) for i in sample)
    if not same:
        raise UserError(f"binoculars needs two models with the same tokenizer: {observer.name} and "
                        f"{performer.name} tokenize differently (pick two sizes of one family, e.g. "
                        f"{LARGE} and {SMALL})")


def load_models(config: DetectConfig) -> tuple[LanguageModel, LanguageModel | None]:
    """The observer (and the performer, for Binoculars), checked to share a tokenizer."""
    from zeroshot.models.loader import load_lm

    config.check()
    observer = load_lm(config.observer_name, backend=config.backend)
    performer = None
    if config.performer_name is not None:
        performer = load_lm(config.performer_name, backend=config.backend)
        check_same_tokenizer(observer, performer)
    return observer, performer


def check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts:
        raise UserError("give at least one text to judge")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"text {i} is empty: give some text to judge")
    return list(texts)


LABELS = ("human", "machine")


@dataclass
class TextsFile:
    """Texts read from a file: their contexts (None where a row has none) and labels (for calibration)."""

    texts: list[str]
    contexts: list[str | None]
    labels: list[str | None]


def read_texts_file(path: str | Path) -> TextsFile:
    """A `.jsonl` file of {"text", optional "context", optional "label": "human" or "machine"}, or any
    other text file with one text per line."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if path.suffix != ".jsonl":
        texts = [line.strip() for line in raw.splitlines() if line.strip()]
        if not texts:
            raise UserError(f"{path} holds no text")
        return TextsFile(texts, [None] * len(texts), [None] * len(texts))
    out = TextsFile([], [], [])
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise UserError(f"{path}, line {number}: not JSON") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise UserError(f'{path}, line {number}: each line needs a "text" string')
        label = row.get("label")
        if label is not None and label not in LABELS:
            raise UserError(f'{path}, line {number}: label must be "human" or "machine", got {label!r}')
        context = row.get("context")
        if context is not None and not isinstance(context, str):
            raise UserError(f'{path}, line {number}: "context" must be a string')
        out.texts.append(row["text"])
        out.contexts.append(context)
        out.labels.append(label)
    if not out.texts:
        raise UserError(f"{path} holds no text")
    return out


def calibrate_on(file: TextsFile, result: DetectionResult, config: DetectConfig,
                 target_fpr: float = DEFAULT_TARGET_FPR) -> Calibration:
    """Fit a calibration on scored texts whose labels the file gives (every row needs one)."""
    if any(label is None for label in file.labels):
        missing = file.labels.index(None)
        raise UserError(f'calibration needs a "label" (human or machine) on every row; row {missing} has '
                        "none")
    human = [t.score for t, label in zip(result.texts, file.labels, strict=True) if label == "human"]
    machine = [t.score for t, label in zip(result.texts, file.labels, strict=True) if label == "machine"]
    return fit_calibration(human, machine, config, target_fpr)


def split_judged(lm: LanguageModel, text: str, context: str | None,
                 config: DetectConfig) -> tuple[list[int], list[int]]:
    """(context ids, judged ids): the judged text starts after `context`, or after the model's
    begin-of-sequence token, or after its own first token when the model has none."""
    if context:
        context_ids = lm.tokenize(context, add_bos=True)
        ids = lm.tokenize(context + " " + text, add_bos=True)
        if ids[: len(context_ids)] != context_ids:  # the join merged a token: judge the text on its own
            ids = context_ids + lm.tokenize(" " + text)
        judged = ids[len(context_ids):]
    else:
        context_ids, judged = lm.bos_ids(), lm.tokenize(text)
        if not context_ids:
            context_ids, judged = judged[:1], judged[1:]
    return context_ids, judged[: config.max_tokens]


def score_texts(texts: Sequence[str], observer: LanguageModel, performer: LanguageModel | None = None,
                config: DetectConfig | None = None, context: str | Sequence[str] | None = None,
                progress: bool = False) -> DetectionResult:
    """Score `texts` with loaded models. `context`: text each one continues (a prompt, a headline),
    read by the models but not judged; one for all or one per text. Texts are refused, not guessed,
    when shorter than `config.min_tokens`."""
    config = config or DetectConfig()
    config.check()
    texts = check_texts(texts)
    contexts = [context] * len(texts) if context is None or isinstance(context, str) else list(context)
    if len(contexts) != len(texts):
        raise UserError(f"{len(contexts)} contexts for {len(texts)} texts: give one context, or one per text")
    if config.detector == "binoculars" and performer is None:
        raise UserError("the binoculars detector needs a performer model")
    split = [split_judged(observer, t, c, config) for t, c in zip(texts, contexts, strict=True)]
    short = [(i, len(j)) for i, (_, j) in enumerate(split) if len(j) < config.min_tokens]
    if short:
        listed = ", ".join(f"text {i} ({n} tokens)" for i, n in short[:5])
        raise UserError(f"too short to judge: {listed}{' ...' if len(short) > 5 else ''}; the detector "
                        f"needs at least {config.min_tokens} tokens of text, below that its verdict would be "
                        "a guess")
    threshold, source, calibration = _decision_rule(config)
    bar = _progress(len(texts), progress)
    started, scores = time.perf_counter(), []
    for i, (context_ids, ids) in enumerate(split):
        rows = observer.continuation_distributions(context_ids, [ids])[0]
        stats = token_statistics(rows, ids)
        ratio = None
        if config.detector == "binoculars":
            performer_rows = performer.continuation_distributions(context_ids, [ids])[0]
            ratio = binoculars_ratio(rows, performer_rows, ids)
        score, raw = detector_score(config.detector, stats, ratio)
        scores.append(TextScore(i, len(ids), round(score, 6), round(raw, 6),
                                None if calibration is None else round(calibration.probability(score), 4),
                                None if threshold is None else bool(score >= threshold)))
        bar.update(1)
    bar.close()
    seconds = time.perf_counter() - started
    return DetectionResult(config.detector, observer.name, performer.name if performer else None, threshold,
                           source, scores, sum(len(j) for _, j in split), seconds)


def detect_generated(texts: Sequence[str], config: DetectConfig | None = None,
                     context: str | Sequence[str] | None = None, progress: bool = False) -> DetectionResult:
    """Judge whether each text was written by a language model: one call, models loaded here.

    >>> detect_generated(["The committee said on Tuesday ..."]).texts[0].score   # doctest: +SKIP
    """
    config = config or DetectConfig()
    check_texts(texts)
    observer, performer = load_models(config)  # checks the config before either model loads
    return score_texts(texts, observer, performer, config, context, progress)


def _decision_rule(config: DetectConfig) -> tuple[float | None, str, Calibration | None]:
    calibration = Calibration.load(config.calibration) if config.calibration else shipped_calibration(config)
    if config.threshold is not None:
        return config.threshold, "given", calibration
    if calibration is not None:
        return calibration.threshold, "calibration file" if config.calibration else "shipped calibration", \
            calibration
    return None, "none", None


def _progress(total: int, show: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="judging texts", unit="text", disable=not show or total < 2)
