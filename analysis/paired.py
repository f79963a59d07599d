"""Paired comparisons of mixer variants over seeds, with multiplicity control.

Runs of one setting with the same seed share the model's initialisation and the order of the
data, so two variants are compared seed by seed: over the seeds both ran, d_s = loss of one minus
loss of the other, and the 95% two-sided Student t-interval of the mean difference,
mean(d) ± t_{0.975, n-1} · sd(d) / √n (sd with ddof=1), with the p-value of the paired t-test of
mean(d) = 0 (p < 0.05 exactly when the interval excludes 0). With fewer than `MIN_SEEDS` shared
seeds there is neither, and the two variants cannot be told apart.

A family of comparisons (every variant against the baseline, or every pair of variants) is
corrected with Holm's step-down method (`holm`); a verdict is taken from the adjusted p-values.
`compact_letters` and `tied_ranks` turn the pairwise verdicts into letters and ranks that never
set apart two variants their own comparison does not separate.
"""

from __future__ import annotations

import itertools
import math
import string
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

MIN_SEEDS = 3
ALPHA = 0.05  # a (Holm-adjusted) p-value below this separates two variants
CONFIDENCE = 1 - ALPHA
LETTERS = string.ascii_lowercase + string.ascii_uppercase


class Interval(NamedTuple):
    """Mean paired difference over `n` seeds, its t-interval and the two-sided p-value of the
    paired t-test (NaN bounds and p below MIN_SEEDS)."""

    mean: float
    low: float
    high: float
    n: int
    p: float = math.nan

    @property
    def excludes_zero(self) -> bool:
        return bool(self.low > 0 or self.high < 0)  # False for NaN bounds


def paired_interval(differences: np.ndarray | list[float]) -> Interval:
    """The mean of paired differences, its `CONFIDENCE` Student t-interval and t-test p-value."""
    d = np.asarray(differences, dtype=float)
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    if n < MIN_SEEDS:
        return Interval(mean, math.nan, math.nan, n)
    se = d.std(ddof=1) / math.sqrt(n)
    half = stats.t.ppf((1 + CONFIDENCE) / 2, n - 1) * se
    # Identical differences (se = 0): the interval is the point itself, so p follows it.
    p = float(2 * stats.t.sf(abs(mean) / se, n - 1)) if se > 0 else float(mean == 0)
    return Interval(mean, mean - half, mean + half, n, p)


def compare(a: pd.Series | None, b: pd.Series | None) -> Interval:
    """Interval of a - b over the seeds both have: `a` and `b` are losses indexed by seed (None
    or NaN: that variant did not run the seed)."""
    if a is None or b is None:
        return paired_interval([])
    return paired_interval((a - b).dropna().to_numpy())


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given: the i-th smallest of the m tested p-values
    becomes max over j <= i of min(1, (m - j + 1) · p_(j)). NaN (no test: too few seeds) stays
    NaN and does not count in m."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(len(p), math.nan)
    tested = np.flatnonzero(~np.isnan(p))
    running = 0.0
    for rank, index in enumerate(tested[np.argsort(p[tested], kind="stable")]):
        running = max(running, min(1.0, (len(tested) - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def separated_pairs(by_seed: pd.DataFrame, labels: list[str]) -> set[frozenset[str]]:
    """The pairs of `labels` whose paired t-test, Holm-adjusted over all pairs that have one,
    gives p < ALPHA. `by_seed`: loss per seed (rows) and variant (columns)."""
    pairs = list(itertools.combinations(labels, 2))
    p_values = [compare(by_seed.get(a), by_seed.get(b)).p for a, b in pairs]
    return {
        frozenset(pair)
        for pair, p in zip(pairs, holm(p_values), strict=True)
        if p < ALPHA  # False for NaN
    }


def compact_letters(order: list[str], separated: set[frozenset[str]]) -> dict[str, str]:
    """A compact letter display: two variants share a letter exactly when they are not a
    `separated` pair. Built by insert-and-absorb (Piepho 2004, Comput. Stat. Data Anal. 46):
    start from one group holding every variant; for each separated pair, split every group
    holding both into a copy without either one; drop groups contained in another. Letters go
    to the groups in `order` (best first), so "a" holds the best variant."""
    groups = [set(order)]
    for pair in sorted(separated, key=lambda p: sorted(order.index(x) for x in p)):
        first, second = pair
        split = []
        for group in groups:
            split += [group - {first}, group - {second}] if pair <= group else [group]
        groups = [g for g in split if not any(g < other for other in split)]
        groups = [g for i, g in enumerate(groups) if g not in groups[:i]]
    groups.sort(key=lambda g: sorted(order.index(x) for x in g))
    return {
        label: "".join(LETTERS[i] for i, group in enumerate(groups) if label in group)
        for label in order
    }


def tied_ranks(order: list[str], separated: set[frozenset[str]]) -> dict[str, int]:
    """Rank per variant of `order` (best mean loss first): consecutive variants form one group
    as long as any variant in it is not separated from a later one, so that two variants in
    different groups are always a `separated` pair; a group's rank is its first member's
    position (1-based)."""
    ranks: dict[str, int] = {}
    start = reach = 0  # the group's first position; the last position it must extend to
    for position, label in enumerate(order):
        if position > reach:
            start = position
        for later in range(position + 1, len(order)):
            if frozenset((label, order[later])) not in separated:
                reach = max(reach, later)
        ranks[label] = start + 1
    return ranks
