"""Each mixer variant's specialist-loss gain over uniform, paired by seed, with its 95%
interval (`plot_gains`; the numbers are the leaderboard's)."""

from __future__ import annotations

import logging

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from analysis.leaderboard import aggregate
from analysis.leaderboard_tables import MARK, gain_cells
from analysis.paired import ALPHA, MIN_SEEDS
from analysis.plot_panels import panel_grid, seeds_label, setting_panels, title_panels
from analysis.plot_style import mixer_colours
from analysis.results import BASELINE, setting_columns

log = logging.getLogger(__name__)


def _gain_point(ax: Axes, y: int, row, text: str, colour: str) -> None:
    """One variant's gain at height `y`: a point, its interval as an error bar (if it has one),
    and `text` above it."""
    interval = pd.notna(row.gain_ci_low)
    error = [[row.gain_vs_uniform - row.gain_ci_low], [row.gain_ci_high - row.gain_vs_uniform]]
    ax.errorbar(
        row.gain_vs_uniform, y, xerr=error if interval else None, fmt="o", capsize=4, color=colour
    )
    if not interval:
        text = f"{seeds_label(row.paired_seeds)}: no interval"
    ax.annotate(
        text,
        (row.gain_vs_uniform, y),
        xytext=(0, 7),
        textcoords="offset points",
        ha="center",
        fontsize=8,
    )


def plot_gains(runs: pd.DataFrame) -> Figure | None:
    """Per setting, each mixer variant's specialist-loss gain over uniform, paired by seed
    (positive = better), with its 95% t-interval as an error bar where at least MIN_SEEDS seeds
    pair up and "n seeds: no interval" otherwise (numbers from `aggregate`)."""
    board = aggregate(runs)
    shown = board[(board["mixer_label"] != BASELINE) & board["gain_vs_uniform"].notna()]
    panels = setting_panels(shown, setting_columns(runs), "gain vs uniform")
    if not panels:
        log.info("gain vs uniform: skipped, no mixer shares a seed with a uniform run")
        return None
    colours = mixer_colours(runs["mixer_label"])
    rows_per_panel = max(len(rows) for _, rows in panels)
    fig, axes = panel_grid(len(panels), height=max(2.5, 0.6 * rows_per_panel + 1.5))
    for ax, (_, rows) in zip(axes, panels, strict=True):
        texts = gain_cells(rows)
        for y, (row, text) in enumerate(zip(rows.itertuples(index=False), texts, strict=True)):
            _gain_point(ax, y, row, text, colours[row.mixer_label])
        ax.set_yticks(range(len(rows)), rows["mixer_label"])
        ax.set_ylim(len(rows) - 0.4, -0.7)  # best-ranked on top, room for the labels
        ax.axvline(0, color=colours[BASELINE], lw=1, ls="--")
        ax.margins(x=0.3)  # room for the labels beside the outermost points
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.set_xlabel(f"specialist-loss gain over {BASELINE} (nats/token; > 0: better)")
        ax.grid(axis="x", alpha=0.3)
    title_panels(
        fig,
        axes,
        [setting for setting, _ in panels],
        f"Gain over {BASELINE}, paired by seed (95% t-interval where ≥ {MIN_SEEDS} seeds pair up; "
        f"{MARK}: Holm-adjusted p < {ALPHA:g})",
    )
    return fig
