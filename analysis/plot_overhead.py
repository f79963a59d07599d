"""What each mixer costs beyond training (`plot_overhead`): extra compute, the share of each
run's time in mixer updates, and the probe tokens read."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.plot_panels import panel_grid
from analysis.plot_style import mixer_colours
from analysis.results import completed

log = logging.getLogger(__name__)

# Overhead columns: (column, x-axis label, panel title).
OVERHEADS = (
    ("compute_overhead", "mixer + upstream FLOPs (% of training FLOPs)", "Extra compute"),
    (
        "mixer_time_share",
        "time in mixer updates (% of the run's training-step time)",
        "Time in mixer updates (within each run)",
    ),
    ("probe_share", "probe tokens (% of training tokens)", "Extra data read"),
)


def plot_overhead(runs: pd.DataFrame) -> Figure | None:
    """Per mixer variant over all its runs (mean ± std): the FLOPs of the mixer's own forward and
    backward passes as a share of the training steps' FLOPs, the share of each run's
    training-step time spent in mixer updates (wall clock, compared within a run only), and
    probe tokens as a share of training tokens. Runs that did not record a number show n/a."""
    done = completed(runs).copy()
    if done.empty:
        log.info("overhead: skipped, no completed runs")
        return None
    done["probe_share"] = done["probe_tokens"] / done["tokens_trained"]
    columns = [column for column, _, _ in OVERHEADS]
    stats = 100 * done.groupby("mixer_label")[columns].agg(["mean", "std"])
    labels = list(stats.index)
    colours = mixer_colours(runs["mixer_label"])
    fig, axes = panel_grid(len(OVERHEADS), width=5.5, height=max(2.5, 0.45 * len(labels) + 1.5))
    positions = np.arange(len(labels))
    for ax, (column, xlabel, title) in zip(axes, OVERHEADS, strict=True):
        means = stats[(column, "mean")]
        ax.barh(
            positions,
            means.fillna(0),
            xerr=stats[(column, "std")],  # NaN for a mixer with one run: no error bar
            color=[colours[label] for label in labels],
            capsize=3,
        )
        for y, value in zip(positions, means, strict=True):
            text = "n/a" if pd.isna(value) else f"{value:.1f} %"
            at = 0 if pd.isna(value) else max(value, 0)
            ax.annotate(text, (at, y), xytext=(4, 8), textcoords="offset points", fontsize=8)
        ax.set_yticks(positions, labels)
        ax.invert_yaxis()
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel(xlabel)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Overhead per mixer (mean ± std over runs)", fontsize=12)
    return fig
