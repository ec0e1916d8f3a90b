"""The statistics the audits share: bootstrap and Wilson intervals, and log-odds with a prior.

Intervals come from SciPy (percentile bootstrap, Wilson score); only the informative-prior log-odds
of Monroe, Colaresi and Quinn (2008, "Fightin' words") is written here, since no well-kept library
ships it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from zeroshot.errors import UserError

CONFIDENCE = 0.95


MIN_BOOTSTRAP = 100  # fewer resamples give a 95 % interval that moves with the seed more than with the data


def check_bootstrap(n_resamples: int) -> None:
    """The one rule on `--bootstrap`, for every audit that draws intervals."""
    if n_resamples < MIN_BOOTSTRAP:
        raise UserError(f"--bootstrap needs at least {MIN_BOOTSTRAP} resamples, got {n_resamples}")


def bootstrap_interval(values: Sequence[float] | np.ndarray, seed: int,
                       n_resamples: int = 2000) -> tuple[float | None, float | None]:
    """Percentile-bootstrap 95 % interval of the mean of `values`, reproducible for `seed`.

    A share is the mean of 0/1 values. (None, None) when there are fewer than two values.
    """
    from scipy.stats import bootstrap

    data = np.asarray(values, dtype=np.float64)
    if data.size < 2:
        return None, None
    if np.all(data == data[0]):  # SciPy warns on degenerate data; the interval is the point itself
        return float(data[0]), float(data[0])
    result = bootstrap((data,), np.mean,
                       n_resamples=n_resamples, confidence_level=CONFIDENCE, method="percentile",
                       vectorized=True, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def wilson_interval(successes: int, trials: int) -> tuple[float | None, float | None]:
    """Wilson score 95 % interval of a proportion; (None, None) with no trials."""
    from scipy.stats import binomtest

    if trials == 0:
        return None, None
    interval = binomtest(int(successes), int(trials)).proportion_ci(CONFIDENCE, method="wilson")
    return float(interval.low), float(interval.high)


def proportion(successes: int, trials: int) -> dict:
    """A share with its Wilson interval, as the reports print it."""
    low, high = wilson_interval(successes, trials)
    return {"count": int(successes), "n": int(trials), "share": successes / trials if trials else None,
            "low": low, "high": high}


_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def words(text: str, stop_words: frozenset[str] | None = None) -> list[str]:
    """Lower-case words of `text`, without `stop_words` (default: scikit-learn's English list)."""
    if stop_words is None:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        stop_words = ENGLISH_STOP_WORDS
    return [w for w in _WORD.findall(text.lower()) if w not in stop_words]


def log_odds_informative_prior(counts: Mapping[str, Counter], min_count: int = 3,
                               top_k: int = 10) -> dict[str, list[dict]]:
    """The words most over-represented in each group against all the other groups together.

    Monroe et al. (2008), eq. 22: log-odds ratio with an informative Dirichlet prior (the word counts of
    all groups together), divided by its standard deviation (a z-score). Words seen fewer than
    `min_count` times in a group are not listed for it. Returns, per group, the `top_k` words with the
    highest positive z-score, each with its count, delta and z.
    """
    total = Counter()
    for counter in counts.values():
        total.update(counter)
    prior_sum = sum(total.values())
    out: dict[str, list[dict]] = {}
    for group, mine in counts.items():
        others = total - mine
        n_mine, n_others = sum(mine.values()), sum(others.values())
        rows = []
        for word, count in mine.items():
            if count < min_count:
                continue
            alpha = total[word]
            y_i, y_j = count, others[word]
            delta = (math.log((y_i + alpha) / (n_mine + prior_sum - y_i - alpha))
                     - math.log((y_j + alpha) / (n_others + prior_sum - y_j - alpha)))
            z = delta / math.sqrt(1.0 / (y_i + alpha) + 1.0 / (y_j + alpha))
            if z > 0:
                rows.append({"word": word, "count": int(count), "others_count": int(y_j),
                             "delta": delta, "z": z})
        rows.sort(key=lambda row: (-row["z"], row["word"]))
        out[group] = rows[:top_k]
    return out
