"""Intervals for a task score that resample the questions as well as the seeds.

A task score (MMLU accuracy) is a mean over a fixed, small set of questions: with 100 questions a
gain of 0.017 is one or two answers per seed, and a t-interval over seeds treats the questions as
if they were the whole population. Here two variants' per-question scores on the same questions
and seeds (paired both ways) give the mean difference with a two-level bootstrap: each resample
draws seeds with replacement, then questions with replacement (the same draw for both
variants), and takes the mean difference; the interval is its 2.5 and 97.5 percentiles, the
p-value twice the smaller tail share beyond 0.
"""

from __future__ import annotations

import numpy as np

from analysis.paired import CONFIDENCE, MIN_SEEDS, Interval

RESAMPLES = 4000


def question_seed_interval(
    a: np.ndarray, b: np.ndarray, resamples: int = RESAMPLES, seed: int = 0
) -> Interval:
    """Mean of a - b over seeds and questions (arrays [seeds, questions], rows paired by seed,
    columns by question), with the two-level bootstrap's interval and p-value (none below
    `MIN_SEEDS` seeds)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"per-question scores must pair up: shapes {a.shape} and {b.shape}")
    differences = a - b
    seeds, questions = differences.shape
    mean = float(differences.mean()) if differences.size else np.nan
    if seeds < MIN_SEEDS or questions == 0:
        return Interval(mean, np.nan, np.nan, seeds)
    rng = np.random.default_rng(seed)
    rows = rng.integers(seeds, size=(resamples, seeds))
    columns = rng.integers(questions, size=(resamples, questions))
    means = np.array([differences[np.ix_(r, c)].mean() for r, c in zip(rows, columns, strict=True)])
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    p = min(1.0, 2 * min((means <= 0).mean(), (means >= 0).mean()))
    return Interval(mean, float(low), float(high), seeds, float(p))
