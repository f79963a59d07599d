"""Every mixer variant of a setting against uniform, paired by seed, and the verdict it gives.

Over the n seeds a variant shares with uniform, d_s = the variant's score - uniform's (higher is
better; for a loss, the caller negates it): the gain is mean(d) with its Student t-interval and
the paired t-test's p-value (analysis.paired). A setting compares every variant with uniform, so
its p-values are Holm-adjusted over those comparisons, and the verdict (beats, ties, loses) comes
from the adjusted p-value. The leaderboard (analysis.leaderboard) and the registered claims
(analysis.registered) both read their comparisons from here.
"""

from __future__ import annotations

import pandas as pd

from analysis.paired import ALPHA, MIN_SEEDS, Interval, compare, holm
from analysis.results import BASELINE


def against_baseline(scores: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """Per variant of `labels`: its gain over uniform in `scores` (per seed (rows) and variant;
    higher is better), paired by seed, with its interval (`ci_low`, `ci_high`), paired seeds
    (`n`), p-value and Holm-adjusted p-value over the other variants' comparisons with uniform.
    Uniform's own row: gain 0, nothing else."""
    others = [label for label in labels if label != BASELINE]
    intervals = [compare(scores.get(label), scores.get(BASELINE)) for label in others]
    return baseline_table(dict(zip(others, intervals, strict=True)), labels)


def baseline_table(intervals: dict[str, Interval], labels: list[str]) -> pd.DataFrame:
    """Each variant's interval against uniform as `against_baseline`'s rows: with the p-values
    Holm-adjusted together, uniform's own row at gain 0, in the order of `labels`."""
    gains = pd.DataFrame(
        [tuple(interval) for interval in intervals.values()],
        index=pd.Index(list(intervals), dtype=object),
        columns=["gain", "ci_low", "ci_high", "n", "p"],
    )
    gains["p_holm"] = holm(gains["p"].tolist())
    gains = gains.reindex(labels)
    if BASELINE in gains.index:
        gains.loc[BASELINE, "gain"] = 0.0
    return gains


def verdict_vs_baseline(label: str, gain: pd.Series, has_baseline: bool) -> str:
    """`vs_uniform` of one variant from its row of `against_baseline`."""
    if not has_baseline:
        return "no baseline"
    if label == BASELINE:
        return "baseline"
    if gain["n"] < MIN_SEEDS:
        return "untested"
    if gain["p_holm"] < ALPHA:
        return "beats" if gain["gain"] > 0 else "loses"
    return "ties"
