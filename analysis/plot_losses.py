"""Specialist loss: its curve during training (`plot_loss_curves`) and its final value against
a setting axis the sweep varies (`plot_scaling`), mean ± std over seeds."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, NullFormatter, StrMethodFormatter
from matplotlib.transforms import offset_copy

from analysis.plot_panels import (
    finish_loss_axes,
    panel_grid,
    runs_with_files,
    seeds_label,
    setting_panels,
    title_panels,
)
from analysis.plot_style import mixer_colours, mixer_linestyles
from analysis.results import TARGET_LOSS, completed, setting_columns, validation_curve

log = logging.getLogger(__name__)

SCALING_AXES = {
    "train_tokens": "training-token budget (tokens)",
    "tokens_per_domain": "training tokens per domain (cap; uncapped: mean domain size)",
    "num_domains": "number of domains k",
}


def _seed_curves(variant: pd.DataFrame) -> pd.DataFrame:
    """The specialist-loss curves of a variant's runs: one column per run, rows by tokens."""
    curves = []
    for run_dir, files in zip(variant["run_dir"], variant["files"], strict=True):
        curve = validation_curve(run_dir, files["metrics"])
        if not curve.empty:
            loss = curve[TARGET_LOSS]
            curves.append(loss[~loss.index.duplicated(keep="last")])
    return pd.concat(curves, axis=1).sort_index() if curves else pd.DataFrame()


def plot_loss_curves(runs: pd.DataFrame) -> Figure | None:
    """Specialist loss against training tokens: mean over seeds (band: ± std), per setting."""
    panels = []
    for setting, rows in setting_panels(
        runs_with_files(runs), setting_columns(runs), "loss curves"
    ):
        curves = {label: _seed_curves(variant) for label, variant in rows.groupby("mixer_label")}
        curves = {label: table for label, table in curves.items() if not table.empty}
        if curves:
            panels.append((setting, curves))
    if not panels:
        log.info("loss curves: skipped, no completed run has a metrics.csv with validation rows")
        return None
    colours = mixer_colours(runs["mixer_label"])
    linestyles = mixer_linestyles(runs["mixer_label"])
    fig, axes = panel_grid(len(panels))
    for ax, (_, curves) in zip(axes, panels, strict=True):
        for label, table in curves.items():
            mean, std = table.mean(axis=1), table.std(axis=1)
            seeds = table.shape[1]
            colour = colours[label]
            ax.plot(
                mean.index,
                mean,
                marker="o",
                ms=3,
                color=colour,
                ls=linestyles[label],
                label=f"{label} ({seeds_label(seeds)})",
            )
            if seeds > 1:
                ax.fill_between(mean.index, mean - std, mean + std, color=colour, alpha=0.2, lw=0)
        finish_loss_axes(ax, "training tokens", EngFormatter())
    title_panels(
        fig,
        axes,
        [setting for setting, _ in panels],
        "Specialist loss during training (mean ± std over seeds)",
    )
    return fig


def _count(sizes: pd.Series) -> str:
    """How many seeds the points of a line average over: "1 seed", "3 seeds", or "2-3 seeds"."""
    low, high = sizes.min(), sizes.max()
    return seeds_label(low) if low == high else f"{low}-{high} seeds"


def plot_scaling(runs: pd.DataFrame, axis: str) -> Figure | None:
    """Final specialist loss against one setting axis (a key of SCALING_AXES), mean ± std over
    seeds, one panel per combination of the other setting keys that varies the axis."""
    if axis not in SCALING_AXES:
        raise ValueError(f"axis must be one of {sorted(SCALING_AXES)}, got {axis!r}")
    done = completed(runs).copy()
    keys = setting_columns(runs)
    others = [k for k in keys if k != axis]
    x = done[axis]
    if axis == "tokens_per_domain":  # an uncapped run: its actual mean tokens per domain
        x = x.fillna(done["mean_domain_tokens"])
    done["x"] = pd.to_numeric(x, errors="coerce")
    panels = [
        (setting, rows)
        for setting, rows in setting_panels(done, others, f"loss vs {axis}")
        if rows["x"].nunique() > 1
    ]
    if not panels:
        log.info("loss vs %s: skipped, the runs do not vary %s", axis, axis)
        return None
    colours = mixer_colours(runs["mixer_label"])
    linestyles = mixer_linestyles(runs["mixer_label"])
    fig, axes = panel_grid(len(panels))
    for ax, (_, rows) in zip(axes, panels, strict=True):
        values = np.sort(rows["x"].dropna().unique())
        if values[0] > 0 and values[-1] / values[0] >= 4:
            ax.set_xscale("log")  # before plotting: the dodge offsets build on the scale
        variants = list(rows.groupby("mixer_label"))
        for i, (label, variant) in enumerate(variants):
            stats = variant.groupby("x")["target_loss"].agg(["mean", "std", "size"])
            # Mixers side by side around each x (a few points apart), so error bars stay apart.
            dodge = offset_copy(
                ax.transData, fig=fig, x=5 * (i - (len(variants) - 1) / 2), units="points"
            )
            ax.errorbar(
                stats.index,
                stats["mean"],
                yerr=stats["std"],  # NaN for a point from one run: no bar, no caps
                marker="o",
                ms=4,
                capsize=3,
                color=colours[label],
                ls=linestyles[label],
                label=f"{label} ({_count(stats['size'])})",
                transform=dodge,
            )
        # The dodge transform hides the points from autoscaling: give it their extent.
        extent = rows.groupby(["mixer_label", "x"])["target_loss"].agg(["mean", "std"]).fillna(0)
        x = extent.index.get_level_values("x")
        ax.update_datalim(np.column_stack([x, extent["mean"] - extent["std"]]))
        ax.update_datalim(np.column_stack([x, extent["mean"] + extent["std"]]))
        ax.autoscale_view()
        if len(values) <= 8:  # label exactly the values the sweep ran
            ax.set_xticks(values)
            ax.xaxis.set_minor_formatter(NullFormatter())
        integer = axis == "num_domains"
        formatter = StrMethodFormatter("{x:,.0f}") if integer else EngFormatter()
        finish_loss_axes(ax, SCALING_AXES[axis], formatter)
    title_panels(
        fig,
        axes,
        [setting for setting, _ in panels],
        f"Final specialist loss vs {SCALING_AXES[axis].split(' (')[0]} (mean ± std over seeds)",
    )
    return fig
