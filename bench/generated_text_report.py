"""Issue 30's detection table: AUROC and TPR at 1 % FPR per detector x generator, choices made on dev.

    python -m bench.generated_text_report

Reads `.cache/generated-text/scores.jsonl` (`bench/generated_text_score.py`). On the **dev** split it
chooses, per detector, which Qwen2.5-Coder size observes (and for Binoculars, which one is the observer
and which the performer), pooling the generators; it fits each detector's shipped calibration there
(threshold at 1 % of dev humans, Platt scaling). On the **test** split, once: AUROC with a bootstrap
95 % interval, TPR at 1 % FPR (the ROC's), and what the shipped threshold does (its FPR and TPR).
`scores-small.jsonl` (the 0.5B alone) fills single-model cells that both models have not read yet;
`scores-stranger.jsonl` (SmolLM2-135M, `--models stranger`) gives the black-box curve against size.

Writes bench/results/generated-text-headline.json (the issue's keys), generated-text-details.json,
generated-text-detectability.png, and src/zeroshot/audit/data/generated-text-calibration.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
DATA = HERE.parent / ".cache" / "generated-text"
RESULTS = HERE / "results"
CALIBRATION = HERE.parent / "src" / "zeroshot" / "audit" / "data" / "generated-text-calibration.json"
SIZES = {"smollm2-135m": 135e6, "gemma-3-270m": 270e6, "qwen2.5-coder-0.5b": 494e6,
         "qwen2.5-coder-1.5b": 1.54e9}
MODEL_NAMES = {"small": "qwen2.5-coder-0.5b", "large": "qwen2.5-coder-1.5b"}
OTHER = {"small": "large", "large": "small"}


def has(record: dict, detector: str, observer: str) -> bool:
    """Whether `record` holds what the detector needs (Binoculars and the 1.5B need both models' pass)."""
    return "bino_small_observes" in record if detector == "binoculars" or observer == "large" else True


def scores(records: list[dict], detector: str, observer: str) -> np.ndarray:
    return np.array([score_of(r, detector, observer) for r in records if has(r, detector, observer)])


def score_of(record: dict, detector: str, observer: str) -> float:
    """The detector's score (higher = machine) with `observer` ("small", "large" or "stranger")
    observing."""
    if detector == "log-likelihood":
        return record[f"{observer}_logprob"]
    if detector == "log-rank":
        return -record[f"{observer}_logrank"]
    if detector == "entropy":
        return -record[f"{observer}_entropy"]
    return -record[f"bino_{observer}_observes"]


def auroc(human: np.ndarray, machine: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.zeros(len(human)), np.ones(len(machine))], np.r_[human, machine]))


def tpr_at_fpr(human: np.ndarray, machine: np.ndarray, fpr: float = 0.01) -> float:
    """The share of machine texts above the threshold that flags `fpr` of the human texts (ROC's)."""
    threshold = np.quantile(human, 1 - fpr, method="higher")
    return float((machine > threshold).mean())


def bootstrap_auroc(human, machine, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    values = [auroc(rng.choice(human, len(human)), rng.choice(machine, len(machine))) for _ in range(n)]
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def test_cell(human: np.ndarray, machine: np.ndarray) -> dict:
    """One cell of a test table: the counts, AUROC with its bootstrap 95 % interval, TPR at 1 % FPR."""
    low, high = bootstrap_auroc(human, machine)
    return {"n_human": len(human), "n_machine": len(machine), "auroc": round(auroc(human, machine), 4),
            "auroc_95": [round(low, 4), round(high, 4)],
            "tpr_at_1pct_fpr": round(tpr_at_fpr(human, machine), 4)}


def main() -> None:
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args()
    from zeroshot.audit.generated import DETECTORS, DetectConfig, fit_calibration

    # Texts both models read (every detector), then texts the 0.5B alone read (the single-model ones).
    # A text both passes read counts once, with both models' record.
    records, seen = [], set()
    for name in ("scores.jsonl", "scores-small.jsonl"):
        if (DATA / name).exists():
            for line in (DATA / name).read_text().splitlines():
                record = json.loads(line) if line.strip() else None
                if record and (record["id"], record["source"]) not in seen:
                    seen.add((record["id"], record["source"]))
                    records.append(record)
    generators = sorted({r["source"] for r in records} - {"human"}, key=SIZES.get)
    by = {(split, source): [r for r in records if r["split"] == split and r["source"] == source]
          for split in ("dev", "test") for source in ["human", *generators]}
    details: dict = {"generators": generators, "dev": {}, "test": {}, "choice": {}, "calibration": {}}
    calibrations = []
    for detector in DETECTORS:
        options = {}
        # Both observers compared on the same dev texts: those both models read.
        both = {key: [r for r in rs if has(r, "binoculars", "large")] for key, rs in by.items()}
        for observer in ("small", "large"):
            human = scores(both["dev", "human"], detector, observer)
            machine = np.concatenate([scores(both["dev", g], detector, observer) for g in generators])
            options[observer] = round(auroc(human, machine), 4)
        observer = max(options, key=options.get)
        # The same per generator: a scorer that *is* the generator (the 0.5B on its own text) is the
        # white-box case, far easier than a stranger's text; the note reads both. A generator added after
        # these choices (the 1.5B: test split only) has no dev column, so it cannot move them.
        per_generator = {g: {o: round(auroc(scores(both["dev", "human"], detector, o),
                                            scores(both["dev", g], detector, o)), 4)
                             for o in ("small", "large")} for g in generators if both["dev", g]}
        details["dev"][detector] = {"auroc_by_observer": options, "by_generator": per_generator}
        details["choice"][detector] = {"observer": MODEL_NAMES[observer],
                                       "performer": MODEL_NAMES[OTHER[observer]] if detector == "binoculars"
                                       else None}
        dev_human = scores(by["dev", "human"], detector, observer)
        dev_machine = np.concatenate([scores(by["dev", g], detector, observer) for g in generators])
        config = DetectConfig(detector, MODEL_NAMES[observer],
                              MODEL_NAMES[OTHER[observer]] if detector == "binoculars" else None)
        cal = fit_calibration(dev_human, dev_machine, config)
        calibrations.append(cal)
        test_human = scores(by["test", "human"], detector, observer)
        details["test"][detector] = {}
        for g in generators:
            test_machine = scores(by["test", g], detector, observer)
            if min(len(test_human), len(test_machine)) < 2:
                continue  # not scored yet
            details["test"][detector][g] = {
                **test_cell(test_human, test_machine),
                "shipped_threshold_fpr": round(float((test_human >= cal.threshold).mean()), 4),
                "shipped_threshold_tpr": round(float((test_machine >= cal.threshold).mean()), 4),
                "mean_tokens_machine": round(float(np.mean([r["tokens"] for r in by["test", g]
                                                            if has(r, detector, observer)])), 1),
            }
        details["calibration"][detector] = {"threshold": cal.threshold, "dev": cal.dev}
    details["mean_tokens_human"] = round(float(np.mean([r["tokens"] for r in by["test", "human"]])), 1)
    cells = [c for d in details["test"].values() for c in d.values()]
    headline = {  # the smallest cell's counts: every number below rests on at least these many texts
        "n_human": min(c["n_human"] for c in cells),
        "n_machine": min(c["n_machine"] for c in cells),
        "auroc": {d: {g: c["auroc"] for g, c in details["test"][d].items()} for d in DETECTORS},
        "tpr_at_1pct_fpr": {d: {g: c["tpr_at_1pct_fpr"] for g, c in details["test"][d].items()}
                            for d in DETECTORS},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "generated-text-headline.json").write_text(json.dumps(headline, indent=1) + "\n")
    (RESULTS / "generated-text-details.json").write_text(json.dumps(details, indent=1) + "\n")
    from dataclasses import asdict

    CALIBRATION.write_text(json.dumps([asdict(c) for c in calibrations], indent=1) + "\n")
    details["stranger"] = stranger_table(generators)
    (RESULTS / "generated-text-details.json").write_text(json.dumps(details, indent=1) + "\n")
    plot(details, generators)
    print(json.dumps(headline, indent=1))


def stranger_table(generators: list[str]) -> dict:
    """The single-model detectors read by SmolLM2-135M, a family that wrote none of the texts (the
    same distance from every generator): the detector is chosen on dev, every one reported on test."""
    path = DATA / "scores-stranger.jsonl"
    if not path.exists():
        return {}
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    by = {(r["split"], r["source"]): [] for r in records}
    for r in records:
        by[r["split"], r["source"]].append(r)
    table: dict = {"scorer": "smollm2-135m", "dev": {}, "test": {}}
    for detector in ("log-likelihood", "log-rank", "entropy"):
        human = scores(by.get(("dev", "human"), []), detector, "stranger")
        machine = np.concatenate([scores(by.get(("dev", g), []), detector, "stranger") for g in generators])
        if min(len(human), len(machine)) < 2:
            return {}  # not scored yet
        table["dev"][detector] = round(auroc(human, machine), 4)
        test_human = scores(by.get(("test", "human"), []), detector, "stranger")
        table["test"][detector] = {}
        for g in generators:
            test_machine = scores(by.get(("test", g), []), detector, "stranger")
            if min(len(test_human), len(test_machine)) < 2:
                continue  # not scored yet
            table["test"][detector][g] = test_cell(test_human, test_machine)
    table["choice"] = max(table["dev"], key=table["dev"].get)
    return table


def auroc_curve(ax, cells: dict, generators: list[str], sizes: list[float], **style) -> None:
    """AUROC against generator size, with each cell's bootstrap interval as its error bar."""
    values = [cells[g]["auroc"] for g in generators]
    errors = np.array([[cells[g]["auroc"] - cells[g]["auroc_95"][0],
                        cells[g]["auroc_95"][1] - cells[g]["auroc"]] for g in generators]).T
    ax.errorbar(sizes, values, yerr=errors, capsize=3, **style)


def plot(details: dict, generators: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from bench.generated_text_set import SAMPLING

    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    sizes = [SIZES[g] for g in generators]
    for detector, cells in details["test"].items():
        if set(cells) != set(generators):
            continue
        auroc_curve(ax, cells, generators, sizes, marker="o", label=f"{detector} (AUROC)")
    stranger = details.get("stranger") or {}
    # The black-box curve: one scorer, equally foreign to every generator.
    if stranger and set(stranger["test"][stranger["choice"]]) == set(generators):
        auroc_curve(ax, stranger["test"][stranger["choice"]], generators, sizes, marker="s", ls="--",
                    color="black", label=f"{stranger['choice']} by {stranger['scorer']} (black box for all)")
    # GPT-3 (Brown et al. 2020, §3.9.4): people told 175B news from real 52 % of the time, 86 % for a
    # deliberately bad control model. Accuracy of people, not a detector's AUROC: the trend is the point.
    ax.scatter([175e9], [0.52], marker="*", s=160, color="black", zorder=3,
               label="people vs GPT-3 175B (accuracy, GPT-3 paper)")
    ax.axhline(0.86, color="grey", ls=":", lw=1)
    ax.text(2e9, 0.865, "people vs a deliberately bad model: 86 % (GPT-3 paper)", fontsize=7, color="grey")
    ax.axhline(0.5, color="grey", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("generator size (parameters)")
    ax.set_ylabel("AUROC, human vs machine (test)")
    ax.set_ylim(0.4, 1.02)
    ax.set_title("Zero-shot detection of BBC-style articles, by generator size")
    ax.legend(fontsize=7, loc="center right")
    for g, s in zip(generators, sizes, strict=True):
        # The 0.5B is also the single-model detectors' scorer and Binoculars' performer, the 1.5B
        # Binoculars' observer: for those cells the detector reads its own model's text (white box).
        white = {"qwen2.5-coder-0.5b": " (white box: it also scores)",
                 "qwen2.5-coder-1.5b": " (white box for Binoculars)"}.get(g, "")
        # Sampling differs by family (each maker's published settings) and moves detectability more
        # than size does here: the label carries the temperature.
        label = f"{g} (T {SAMPLING[g]['temperature']}){white}"
        ax.annotate(label, (s, 0.43), fontsize=7, ha="left", rotation=20)
    fig.tight_layout()
    fig.savefig(RESULTS / "generated-text-detectability.png", dpi=120)


if __name__ == "__main__":
    main()
