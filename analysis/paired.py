"""Paired comparisons of mixer variants over seeds.

Runs of one setting with the same seed share the model's initialisation and the order of the
data, so two variants are compared seed by seed: over the seeds both ran, d_s = loss of one minus
loss of the other, and the 95% two-sided Student t-interval of the mean difference,
mean(d) ± t_{0.975, n-1} · sd(d) / √n (sd with ddof=1). With fewer than `MIN_SEEDS` shared seeds
there is no interval, and the two variants cannot be told apart.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

MIN_SEEDS = 3
CONFIDENCE = 0.95


class Interval(NamedTuple):
    """Mean paired difference over `n` seeds and its t-interval (NaN bounds below MIN_SEEDS)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        return bool(self.low > 0 or self.high < 0)  # False for NaN bounds


def paired_interval(differences: np.ndarray | list[float]) -> Interval:
    """The mean of paired differences and its `CONFIDENCE` Student t-interval."""
    d = np.asarray(differences, dtype=float)
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    if n < MIN_SEEDS:
        return Interval(mean, math.nan, math.nan, n)
    half = stats.t.ppf((1 + CONFIDENCE) / 2, n - 1) * d.std(ddof=1) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def compare(a: pd.Series | None, b: pd.Series | None) -> Interval:
    """Interval of a - b over the seeds both have: `a` and `b` are losses indexed by seed (None
    or NaN: that variant did not run the seed)."""
    if a is None or b is None:
        return paired_interval([])
    return paired_interval((a - b).dropna().to_numpy())


def tied_ranks(by_seed: pd.DataFrame, order: list[str]) -> dict[str, int]:
    """Rank per variant, ties where paired intervals cannot separate variants: walk down `order`
    (best mean loss first); a variant shares the rank of the current group's leader unless the
    interval of their difference, over their shared seeds, excludes 0, in which case it leads a
    new group ranked by its position (1-based). `by_seed`: loss per seed (rows) and variant."""
    ranks: dict[str, int] = {}
    leader = None
    for position, label in enumerate(order, start=1):
        if leader is None or compare(by_seed.get(leader), by_seed.get(label)).excludes_zero:
            leader = label
            ranks[label] = position
        else:
            ranks[label] = ranks[leader]
    return ranks
