"""A registered family of comparisons against uniform, for the findings report.

The experiment's config declares, before its runs, its setting, its seeds and its mixers
(e.g. conf/experiment/bounded_defaults.yaml); every mixer is compared with uniform, paired by
seed, and the family's p-values are Holm-corrected. A mixer *beats* uniform when its gain is
positive with adjusted p < 0.05, *loses* when negative with adjusted p < 0.05, and *ties*
otherwise. Raw and adjusted figures are shown side by side, and so is how many of each mixer's
seeds collapsed (mixers/collapse.py), which a mean loss alone would hide.
"""

from __future__ import annotations

import math

import pandas as pd

from analysis.paired import ALPHA, compare, holm
from analysis.results import BASELINE

BEATS, TIES, LOSES = "beats uniform", "ties", "loses to uniform"


def family_table(runs: pd.DataFrame, mixers: list[str]) -> pd.DataFrame:
    """One row per mixer of `mixers` (in that order): its seeds, mean specialist loss, paired
    gain over uniform (uniform - mixer) with its 95 % interval, raw and Holm-adjusted p, the
    verdict from the adjusted p, and its collapsed seeds."""
    done = runs[runs["status"] == "completed"]
    by_seed = done.pivot_table(index="seed", columns="mixer_label", values="target_loss")
    intervals = [compare(by_seed.get(BASELINE), by_seed.get(label)) for label in mixers]
    adjusted = holm([interval.p for interval in intervals])
    rows = []
    for label, interval, p_holm in zip(mixers, intervals, adjusted, strict=True):
        mine = done[done["mixer_label"] == label]
        separated = p_holm < ALPHA  # False for NaN
        verdict = (BEATS if interval.mean > 0 else LOSES) if separated else TIES
        rows.append(
            {
                "mixer": label,
                "seeds": len(mine),
                "specialist_loss": mine["target_loss"].mean(),
                "gain": interval.mean,
                "gain_ci_low": interval.low,
                "gain_ci_high": interval.high,
                "p": interval.p,
                "p_holm": p_holm,
                "verdict": verdict,
                "collapsed": int(mine["collapsed"].fillna(False).astype(bool).sum()),
                "time_averaged_max_weight": mine["time_averaged_max_weight"].mean(),
            }
        )
    return pd.DataFrame(rows)


def _p(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.3f}" if value >= 0.001 else "<0.001"


def family_section(title: str, registration: str, runs: pd.DataFrame | None) -> list[str]:
    """The report's section: what was registered, then the table (or that it has not run)."""
    lines = [f"## {title}", "", registration, ""]
    if runs is None:
        return [*lines, "Not run yet.", ""]
    mixers = sorted(set(runs["mixer_label"]) - {BASELINE})
    table = family_table(runs, mixers)
    uniform = runs[(runs["mixer_label"] == BASELINE) & (runs["status"] == "completed")]
    lines += [
        f"Uniform: specialist loss {uniform['target_loss'].mean():.3f} over "
        f"{len(uniform)} seed{'s' if len(uniform) != 1 else ''}. Gain = uniform - mixer, paired "
        f"by seed; Holm over the family of {len(mixers)} comparison"
        f"{'s' if len(mixers) != 1 else ''}.",
        "",
        "| mixer | seeds | specialist loss | gain [95 % CI] | p | p (Holm) | verdict "
        "| collapsed seeds | time-averaged max weight |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table.itertuples(index=False):
        interval = (
            f"{row.gain:+.3f} [{row.gain_ci_low:+.3f}, {row.gain_ci_high:+.3f}]"
            if not math.isnan(row.gain_ci_low)
            else f"{row.gain:+.3f} (no interval)"
        )
        lines.append(
            f"| {row.mixer} | {row.seeds} | {row.specialist_loss:.3f} | {interval} "
            f"| {_p(row.p)} | {_p(row.p_holm)} | {row.verdict} "
            f"| {row.collapsed} of {row.seeds} | {row.time_averaged_max_weight:.2f} |"
        )
    return [*lines, ""]
