"""Accuracy against the number of demonstrations K, over seeds: the GPT-3 "learning at test time" curve.

For every K and seed, K demonstrations are drawn from the task's pool (seeded) and every evaluation
document is answered. K=0 has no randomness, so it runs once. Likelihood tasks measure the plain and
the calibrated accuracy from the same model calls (calibration only adds a content-free query per
prompt prefix); free-form tasks measure each metric of the task's answer extraction, and say why
answers came out empty (`zeroshot.eval.diagnose`). With `calibrate="auto"` likelihood tasks also
measure the "auto" series: per K, plain or calibrated scoring is chosen once by leave-one-out on the
demonstration pool (`zeroshot.text.calibration`), never on the documents. Each finished (K, seed) run
can be kept in a checkpoint file, and every document can be logged (`SampleLog`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from zeroshot.errors import UserError
from zeroshot.eval.diagnose import EmptyAnswers, EmptyTally, explain_empty
from zeroshot.eval.experiment import Checkpoint, Summary, grid_runs, plot_curves, run_grid
from zeroshot.eval.tasks import Task
from zeroshot.files import make_output_dir
from zeroshot.models.lm import GenerationConfig, LanguageModel
from zeroshot.text.calibration import AUTO_MAX_EXAMPLES, RULE, CalibrationChoice, choose_calibration
from zeroshot.text.chat import chat_prompt_template
from zeroshot.text.prompts import PromptBuilder, PromptTemplate, sample_demonstrations
from zeroshot.text.scoring import DEFAULT_CONTENT_FREE_INPUTS, LikelihoodScorer, check_normalization
from zeroshot.validation import DEFAULT_CALIBRATE, check_calibrate, split_ints


@dataclass
class EvalReport:
    """Everything one `evaluate` call measured, ready for JSON."""

    task: str
    kind: str
    model: str
    backend: str
    n_docs: int
    n_pool: int
    shots: list[int]
    seeds: list[int]
    normalization: str
    balanced: bool
    chance: float | None
    series: dict[str, list[Summary]] = field(default_factory=dict)  # "plain", "calibrated"
    dropped_demonstrations: dict[int, int] = field(default_factory=dict)  # K -> prompts that dropped some
    seconds: float = 0.0
    n_params: int | None = None
    chat_template: bool = False
    extraction: dict | None = None  # free-form: filters, folding and metrics
    missing_runs: list[str] = field(default_factory=list)  # "K:seed" runs not done (deadline reached)
    empty_answers: EmptyAnswers | None = None  # free-form: empty answers per K and cause, and the fix
    calibrate: str = "off"  # "off", "on" or "auto" ("off" for free-form tasks, which have no scores)
    calibration: dict[int, dict] | None = None  # auto: per K, `CalibrationChoice.to_dict()`

    def to_dict(self) -> dict:
        out = asdict(self)
        out["empty_answers"] = None if self.empty_answers is None else self.empty_answers.to_dict()
        return out


@dataclass(frozen=True)
class EvalConfig:
    """What `eval-text` measures on one task: every rule about it is in `check`, run when it is built.

    Built (and so checked) before any model loads: the CLI builds it from its options, Python callers
    from keyword arguments, and `evaluate`/`evaluate_models` take it as it is. `shots` may be given as
    a comma-separated string (`"0,1,4"`) or numbers; it is kept sorted, each K once. K=0 has no
    randomness, so it runs once whatever `seeds` is. `chat_template` None means the task file's
    setting. `soft_prompt` (a folder from `zeroshot tune-prompt`, classification only) puts its trained
    virtual tokens in the description's place, as `ZeroShotTextClassifier(soft_prompt=...)` does.
    `calibrate` is "off", "on" (plain and calibrated accuracy) or "auto" (both, and the one chosen per
    K by leave-one-out on at most `calibrate_examples` pool examples); True and False mean on and off.
    """

    task: Task
    shots: tuple[int, ...] | str = (0, 1, 2, 4, 8)
    seeds: int = 5
    first_seed: int = 0
    limit: int | None = None
    normalization: str = "sum"
    calibrate: bool | str = DEFAULT_CALIBRATE
    balanced: bool = False
    chat_template: bool | None = None
    max_new_tokens: int = 32
    soft_prompt: Path | None = None
    calibrate_examples: int = AUTO_MAX_EXAMPLES

    def __post_init__(self) -> None:
        # Parsing, not a rule: "0,4" and [4, 0, 4] both mean (0, 4); True (the old spelling) means "on".
        object.__setattr__(self, "shots", tuple(split_ints(self.shots, "--shots")))
        if isinstance(self.calibrate, bool):
            object.__setattr__(self, "calibrate", check_calibrate(self.calibrate))
        if self.soft_prompt is not None:
            object.__setattr__(self, "soft_prompt", Path(self.soft_prompt))
        self.check()

    def check(self) -> None:
        """Every rule of an evaluation, once; `UserError` naming the option at fault."""
        self.task.check_shots(list(self.shots))  # 0 <= K <= the task's demonstration pool
        check_normalization(self.normalization)
        check_calibrate(self.calibrate)
        if self.calibrate_examples < 1:
            raise UserError(f"calibrate_examples must be at least 1, got {self.calibrate_examples}")
        if self.seeds < 1:
            raise UserError(f"--seeds must be at least 1, got {self.seeds}")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit must be at least 1, got {self.limit}")
        # The one rule on decoding options, for the task file's stop sequences too.
        GenerationConfig(max_new_tokens=self.max_new_tokens, stop=list(self.task.stop or ())).check()
        if self.soft_prompt is not None and self.task.kind != "classification":
            raise UserError(f"--soft-prompt is for classification tasks; {self.task.name} is "
                            f"{self.task.kind}")

    @property
    def seed_list(self) -> list[int]:
        """The seeds each K > 0 runs with: first_seed, first_seed + 1, ..."""
        return list(range(self.first_seed, self.first_seed + self.seeds))

    @property
    def docs(self) -> list:
        """The evaluation documents: the task's, the first `limit` of them."""
        return self.task.docs[:self.limit] if self.limit else self.task.docs


def evaluate(
    lm: LanguageModel,
    config: EvalConfig,
    progress: bool = True,
    sample_log: SampleLog | None = None,
    checkpoint: str | Path | None = None,
    deadline: float | None = None,
) -> EvalReport:
    """Accuracy of `lm` on `config.task` for each K in `config.shots` over `config.seeds` seeds.

    `config` was checked when it was built. `sample_log` receives one record per document and run.
    `checkpoint` is a JSON file that keeps every finished (K, seed) run: an interrupted evaluation
    started again with the same settings skips them. `deadline` (a `time.time()` value) stops starting
    new runs after it; the report then lists the runs it lacks in `missing_runs` and summarises the
    seeds that finished.
    """
    task, shots = config.task, list(config.shots)
    normalization, balanced = config.normalization, config.balanced
    chat = task.chat_template if config.chat_template is None else config.chat_template
    template = chat_prompt_template(lm, task.description, task.template) if chat else task.template
    docs = config.docs
    description = task.description
    if config.soft_prompt is not None:
        from zeroshot.text.soft_prompt import attach_soft_prompt

        lm = attach_soft_prompt(lm, config.soft_prompt)
        description = ""  # the trained virtual tokens take the description's place
    seed_list = config.seed_list
    free_form = task.kind == "free_form"
    mode = "off" if free_form else str(config.calibrate)
    calibrate, auto = mode != "off", mode == "auto"
    series_names = list(task.extractor.metrics) if free_form else (
        ["plain", "calibrated", "auto"] if auto else ["plain", "calibrated"] if calibrate else ["plain"])
    # on/off as the booleans they were: checkpoints written before "auto" stay valid.
    settings = {"task": task.name, "model": lm.name, "n_docs": len(docs), "shots": shots, "seeds": seed_list,
                "normalization": normalization, "calibrate": mode if auto else calibrate,
                "balanced": balanced, "chat": chat, "max_new_tokens": config.max_new_tokens}
    if config.soft_prompt is not None:  # absent without one: checkpoints written before it stay valid
        settings["soft_prompt"] = str(config.soft_prompt)
    if task.stop is not None:  # the same: absent unless the task file sets its own stop sequences
        settings["stop"] = list(task.stop)
    if auto:
        settings["calibrate_examples"] = config.calibrate_examples
    progress_file = Checkpoint(checkpoint, settings)
    pool = task.demonstration_pool()
    pool_ids = {id(d): doc.line for d, doc in zip(pool, task.pool, strict=True)}
    started = time.perf_counter()
    todo = [run for run in grid_runs(shots, seed_list) if f"{run[0]}:{run[1]}" not in progress_file.done]
    bar = tqdm(total=len(todo) * len(docs), desc=f"{task.name} {Path(lm.name).name}", unit="doc",
               disable=not progress)
    choices: dict[int, CalibrationChoice] = {}

    def choose(k: int) -> CalibrationChoice:
        """Auto's choice at K: once per K, whatever the seed (its leave-one-out draws its own
        demonstrations, not the run's); a resumed evaluation reuses the one its checkpoint kept."""
        if k not in choices:
            kept = [run["calibration"] for key, run in progress_file.done.items()
                    if key.split(":")[0] == str(k) and "calibration" in run]
            if kept:
                choices[k] = CalibrationChoice.from_dict(kept[0])
            else:
                bar.set_postfix_str(f"K={k}: choosing calibration on the pool")
                labels = task.labels if task.kind == "classification" else [d.choices for d in task.pool]
                # The pool only: the documents are no input of the choice.
                choices[k] = choose_calibration(
                    lm, pool, labels, k, description=description, template=template,
                    normalization=normalization, balanced=balanced, seed=config.first_seed,
                    max_examples=config.calibrate_examples)
        return choices[k]

    def measure(k: int, seed: int) -> dict:
        choice = choose(k) if auto else None
        bar.set_postfix_str(f"K={k} seed={seed}")
        demos = sample_demonstrations(pool, k, seed, balanced)
        builder = PromptBuilder(lm, description, demos, template)
        context = _RunContext(task, k, seed, [pool_ids[id(d)] for d in demos], builder, sample_log)
        if free_form:
            return _run_free_form(lm, context, docs, bar, config.max_new_tokens)
        scorer = LikelihoodScorer(builder, DEFAULT_CONTENT_FREE_INPUTS if calibrate else ())
        record = _run_likelihood(scorer, context, docs, bar, normalization, series_names,
                                 choice is not None and choice.calibrate)
        if choice is not None:
            record["calibration"] = choice.to_dict()
        return record

    grid = run_grid(shots, seed_list, measure, progress=False, checkpoint=progress_file, deadline=deadline)
    bar.close()
    chance = None
    if not free_form:
        chance = float(np.mean([1 / len(d.choices) for d in docs]))
    report = EvalReport(
        task.name,
        task.kind,
        lm.name,
        lm.backend,
        len(docs),
        len(task.pool),
        shots,
        seed_list,
        normalization,
        balanced,
        chance,
        dropped_demonstrations={k: max((r["short"] for key, r in grid.runs.items()
                                        if int(key.split(":")[0]) == k), default=0) for k in shots},
        n_params=lm.n_params,
        chat_template=chat,
        extraction=task.extractor.to_json() if free_form else None,
        missing_runs=grid.missing,
        calibrate=mode,
        calibration=_choices_by_k(grid.runs, shots) if auto else None,
    )
    if free_form:
        report.empty_answers = EmptyAnswers.from_runs(grid.runs, shots, chat=chat,
                                                      stop=free_form_stop(task, template),
                                                      extractor=task.extractor, pool=len(task.pool))
    report.series = grid.series
    report.seconds = time.perf_counter() - started
    return report


def _choices_by_k(runs: dict[str, dict], shots: list[int]) -> dict[int, dict]:
    """Auto's choice at each K that has a finished run (every run of a K records the same one)."""
    found: dict[int, dict] = {}
    for key, run in runs.items():
        k = int(key.split(":")[0])
        if "calibration" in run and k not in found:
            found[k] = run["calibration"]
    return {k: found[k] for k in shots if k in found}


@dataclass
class _RunContext:
    """What every document of one (K, seed) run shares, for its sample records."""

    task: Task
    k: int
    seed: int
    demo_ids: list[int]  # task-file lines (or article positions) of the demonstrations, in prompt order
    builder: PromptBuilder
    log: SampleLog | None

    def record(self, doc, prompt_demos: int, **fields) -> None:
        if self.log is None:
            return
        prompt = self.builder.prefix_text(prompt_demos) + self.builder.template.format_query(doc.query)
        self.log.write({"task": self.task.name, "k": self.k, "seed": self.seed, "doc_id": doc.line,
                        "demonstration_ids": self.demo_ids[:prompt_demos], "prompt": prompt,
                        "target": doc.target, **fields})


def _run_likelihood(scorer: LikelihoodScorer, ctx: _RunContext, docs, bar, normalization: str,
                    series_names: list[str], auto_calibrates: bool = False) -> dict:
    """Accuracy per series; "auto" scores the way the pool chose (`auto_calibrates`)."""
    correct = {name: 0 for name in series_names}
    short = 0
    for doc in docs:
        result = scorer.score(doc.query, list(doc.choices))
        short += result.n_demonstrations < ctx.k
        predicted = {}
        for name in series_names:
            calibrated = name == "calibrated" or (name == "auto" and auto_calibrates)
            best = result.choices[int(np.argmax(result.scores(normalization, calibrated)))]
            predicted[name] = best
            correct[name] += best == doc.target
        if ctx.log is not None:
            loglik = {"raw": result.logprob_sum.tolist(),
                      "normalised": result.scores(normalization).tolist()}
            if "calibrated" in series_names:
                loglik["calibrated"] = result.scores(normalization, True).tolist()
            ctx.record(doc, result.n_demonstrations, choices=result.choices, loglikelihood=loglik,
                       normalization=normalization, prediction=predicted,
                       correct={name: predicted[name] == doc.target for name in series_names})
        bar.update(1)
    return {"accuracy": {name: correct[name] / len(docs) for name in series_names}, "short": short}


def free_form_stop(task: Task, template: PromptTemplate) -> list[str]:
    """Where a free-form answer ends: the task file's "stop" sequences if it sets them; else, inside a chat
    template, nowhere (its end-of-turn token ends the answer), and on a plain prompt at a newline."""
    if task.stop is not None:
        return list(task.stop)
    return [] if template.special else ["\n"]


def _run_free_form(lm: LanguageModel, ctx: _RunContext, docs, bar, max_new_tokens: int) -> dict:
    """Greedy generations, filtered into answers and scored by the task's metrics; empty answers are
    explained (`zeroshot.eval.diagnose`), in the run's record and in each sample."""
    extractor = ctx.task.extractor
    builder = ctx.builder
    stop = free_form_stop(ctx.task, builder.template)
    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.0, stop=stop)
    correct = {name: 0 for name in extractor.metrics}
    short = 0
    empty = EmptyTally()
    for doc in docs:
        prompt = builder.build(doc.query, longest_answer_tokens=config.max_new_tokens)
        short += prompt.n_demonstrations < ctx.k
        text = builder.prefix_text(prompt.n_demonstrations) + builder.template.format_query(doc.query)
        generation = lm.generate(text, config)
        answer = extractor.extract(generation)
        why = explain_empty(lm, text, config, generation, answer)
        empty.add(why, generation)
        verdicts = extractor.score(answer, doc.target)
        for name, ok in verdicts.items():
            correct[name] += ok
        # The raw generation (after the stop) beside the answer the filters kept, and why it is empty.
        ctx.record(doc, prompt.n_demonstrations, stop=stop, generation=generation, answer=answer,
                   correct=verdicts, **(why.fields() if why else {}))
        bar.update(1)
    return {"accuracy": {name: correct[name] / len(docs) for name in extractor.metrics}, "short": short,
            "empty": empty.to_record()}


class SampleLog:
    """Per-document records as JSON Lines (lm-evaluation-harness's --log_samples), flushed line by line."""

    def __init__(self, path: str | Path, model: str | None = None) -> None:
        self.path = Path(path)
        self.fields = {} if model is None else {"model": model}  # in every record: which model answered
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")  # appends: a resumed run keeps what it had
        except OSError as exc:
            raise UserError(f"cannot write the sample log {self.path}: {exc.strerror}") from None

    def write(self, record: dict) -> None:
        self._fh.write(json.dumps({**self.fields, **record}, ensure_ascii=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def format_table(report: EvalReport) -> str:
    """Accuracy per K as a plain-text table (mean ± std [min, max] over seeds)."""
    names = list(report.series)
    header = f"{'K':>3}  {'seeds':>5}  " + "  ".join(f"{name:>28}" for name in names)
    lines = [header]
    for i, k in enumerate(report.shots):
        cells = []
        for name in names:
            p = report.series[name][i]
            cells.append(f"{p.mean:6.1%} ± {p.std:5.1%} [{p.min:5.1%}, {p.max:5.1%}]")
        lines.append(
            f"{k:>3}  {len(report.series[names[0]][i].per_seed):>5}  " + "  ".join(f"{c:>28}" for c in cells)
        )
    if report.chance is not None:
        lines.append(f"chance: {report.chance:.1%}")
    if report.calibration:
        lines.append(format_calibration(report))
    dropped = {k: n for k, n in report.dropped_demonstrations.items() if n}
    if dropped:
        lines.append(
            "prompts that dropped demonstrations to fit the context (worst seed): "
            + ", ".join(f"K={k}: {n}" for k, n in dropped.items())
        )
    if report.empty_answers is not None:  # free-form: why many answers are empty, and the fix
        lines.extend(report.empty_answers.lines())
    return "\n".join(lines)


def format_calibration(report: EvalReport) -> str:
    """Auto's choices in one line: "calibration auto (leave-one-out on the demonstration pool): K=1
    calibrated (plain 30 vs calibrated 41 of 50 pool examples right, 2.1 s); K=4 plain (...)"."""
    parts = [f"K={k} {CalibrationChoice.from_dict(choice).describe(k)}"
             for k, choice in (report.calibration or {}).items()]
    return f"calibration auto ({RULE}): " + "; ".join(parts)


def save_report(report: EvalReport, out_dir: str | Path) -> tuple[Path, Path]:
    """Write `<task>.json` and `<task>.png` (accuracy against K) under `out_dir`; returns both paths."""
    out = make_output_dir(out_dir)
    stem = f"{report.task}-{report.normalization}"
    json_path, png_path = out / f"{stem}.json", out / f"{stem}.png"
    json_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    plot_report(report, png_path)
    return json_path, png_path


def plot_report(report: EvalReport, path: str | Path) -> None:
    """Accuracy against K: per series the mean with a ±1 std band over seeds (as `fewshot-curve` draws)."""
    plot_curves(report.series, path, shots=report.shots, chance=report.chance,
                xlabel="number of demonstrations in the prompt (K)",
                title=f"{report.task}: {report.n_docs} docs, {len(report.seeds)} seeds, "
                      f"{report.normalization}; {Path(report.model).name} ({report.backend})")
