"""Intervals for a task score that resample the questions as well as the seeds.

A task score (MMLU accuracy) is a mean over a fixed, small set of questions: with 100 questions a
gain of 0.017 is one or two answers per seed, and a t-interval over seeds treats the questions as
if they were the whole population. Here two variants' per-question scores on the same questions
and seeds (paired both ways) give the mean difference with a two-level bootstrap: each resample
draws seeds with replacement, then questions with replacement (the same draw for both
variants), and takes the mean difference; the interval is its 2.5 and 97.5 percentiles, the
p-value twice the smaller tail share beyond 0.

A run with a multiple-choice task keeps each question's scores (experiments/results.py
TASK_QUESTIONS_FILE); the leaderboard takes a task score's gain over uniform from them, with this
interval, whenever every run of a setting has its file, and from the seeds alone otherwise.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.comparisons import baseline_table
from analysis.paired import CONFIDENCE, MIN_SEEDS, Interval
from analysis.results import BASELINE
from experiments.results import TASK_QUESTIONS_FILE

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


def question_tables(runs: pd.DataFrame, score: str) -> dict[str, pd.DataFrame] | None:
    """Per variant (`mixer_label`): its runs' per-question `score`, a row per seed and a column
    per question, read from each run's TASK_QUESTIONS_FILE; None unless every run has one."""
    if "run_dir" not in runs:
        return None
    tables = {}
    for label, mine in runs.groupby("mixer_label"):
        by_seed = {}
        for seed, run_dir in zip(mine["seed"], mine["run_dir"], strict=True):
            path = Path(run_dir) / TASK_QUESTIONS_FILE if isinstance(run_dir, str) else None
            if path is None or not path.exists():
                return None
            by_seed[seed] = pd.read_csv(path, index_col="question")[score]
        tables[label] = pd.DataFrame(by_seed).T
    return tables


def against_baseline_over_questions(
    tables: dict[str, pd.DataFrame], labels: list[str], sign: int
) -> pd.DataFrame:
    """`analysis.comparisons.against_baseline` with `question_seed_interval`: per variant, its
    gain over uniform (`sign` = +1 where higher is better, -1 where lower is) on the seeds and
    questions it shares with uniform, and the Holm-adjusted p over the variants."""
    base = tables.get(BASELINE)
    intervals = {}
    for label in (label for label in labels if label != BASELINE):
        mine = tables.get(label)
        if mine is None or base is None:
            intervals[label] = Interval(math.nan, math.nan, math.nan, 0)
            continue
        seeds = mine.index.intersection(base.index)
        questions = mine.columns.intersection(base.columns)
        a = sign * mine.loc[seeds, questions].to_numpy()
        b = sign * base.loc[seeds, questions].to_numpy()
        intervals[label] = question_seed_interval(a, b)
    return baseline_table(intervals, labels)
