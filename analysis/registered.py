"""A registered family of comparisons against uniform, for the findings report.

The experiment's config declares, before its runs, its setting, its seeds and its mixers
(e.g. conf/experiment/bounded_defaults.yaml); every mixer is compared with uniform, paired by
seed, and the family's p-values are Holm-corrected, exactly as the leaderboard compares a
setting's mixers with uniform (analysis/leaderboard.py `against_baseline`): a mixer *beats*
uniform when its gain is positive with adjusted p < 0.05, *loses* when negative with adjusted
p < 0.05, *ties* otherwise, and is *untested* below 3 paired seeds. Raw and adjusted figures are shown side by side, and so is how many of each mixer's
seeds collapsed (mixers/collapse.py), which a mean loss alone would hide.
"""

from __future__ import annotations

import math

import pandas as pd

from analysis.leaderboard import against_baseline, verdict_vs_baseline
from analysis.results import BASELINE


def family_table(runs: pd.DataFrame, mixers: list[str]) -> pd.DataFrame:
    """One row per mixer of `mixers` (in that order): its seeds, mean specialist loss, paired
    gain over uniform (uniform - mixer) with its 95 % interval, raw and Holm-adjusted p (the
    leaderboard's comparisons with uniform, `against_baseline`), its verdict (beats, ties,
    loses, or untested below 3 seeds) and its collapsed seeds."""
    done = runs[runs["status"] == "completed"]
    by_seed = done.pivot_table(index="seed", columns="mixer_label", values="target_loss")
    gains = against_baseline(-by_seed, [BASELINE, *mixers])  # negated: lower loss is better
    rows = []
    for label in mixers:
        mine = done[done["mixer_label"] == label]
        gain = gains.loc[label]
        rows.append(
            {
                "mixer": label,
                "seeds": len(mine),
                "specialist_loss": mine["target_loss"].mean(),
                "gain": gain["gain"],
                "gain_ci_low": gain["ci_low"],
                "gain_ci_high": gain["ci_high"],
                "p": gain["p"],
                "p_holm": gain["p_holm"],
                "verdict": verdict_vs_baseline(label, gain, BASELINE in by_seed),
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
        "| mixer | seeds | specialist loss | gain [95 % CI] | p | p (Holm) | vs uniform "
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
