"""The mixture weights of every online mixer over training (`plot_weight_trajectories`):
stacked, the most-weighted components named by their description, the rest summed as "other"."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

from analysis.plot_panels import (
    MAX_PANELS,
    panel_grid,
    runs_with_files,
    seeds_label,
    varying_keys,
)
from analysis.plot_style import mixer_colours
from analysis.results import (
    domain_caption,
    domain_labels,
    load_trajectory,
    setting_columns,
    setting_title,
)

log = logging.getLogger(__name__)

OTHER_COLOUR = "#d9d9d9"
# Components of the weight trajectories: tab10, then the same colours hatched.
DOMAIN_COLOURS = tuple(to_hex(c) for c in colormaps["tab10"].colors)
HATCHES = ("", "///", "...", "xxx")
# A weight-trajectory panel's legend: two columns unless an entry is longer than this.
LEGEND_WIDE_ENTRY = 30


def _updates_weights(rows: pd.DataFrame) -> bool:
    """Whether the runs' mixer updates its weights during training (`mixer.update_every` > 0);
    its trajectory may hold one row, the weights of its only update, kept to the end."""
    if "config.mixer.update_every" not in rows:
        return False
    return bool((pd.to_numeric(rows["config.mixer.update_every"], errors="coerce") > 0).any())


def _mean_trajectory(rows: pd.DataFrame) -> tuple[pd.DataFrame, float, bool]:
    """Mean over seeds of the runs' weight trajectories, indexed by training tokens (the weights
    in force from then on: the last row of a step, each run carried forward between its
    updates); the tokens at the end of training; and whether any run's weights ever moved
    within its trajectory."""
    trajectories, moved = [], False
    for run_dir, files, tokens, steps in rows[
        ["run_dir", "files", "tokens_trained", "steps"]
    ].itertuples(index=False):
        trajectory = load_trajectory(run_dir, files["trajectory"])
        if trajectory.empty:
            continue
        moved |= len(trajectory.drop_duplicates()) > 1
        trajectory = trajectory[~trajectory.index.duplicated(keep="last")]
        trajectory.index = trajectory.index * (tokens / steps)
        trajectories.append(trajectory)
    if not trajectories:
        return pd.DataFrame(), 0.0, False
    tokens = sorted(set().union(*(t.index for t in trajectories)))
    mean = sum(t.reindex(tokens).ffill() for t in trajectories) / len(trajectories)
    return mean.div(mean.sum(axis=1), axis=0), float(rows["tokens_trained"].max()), moved


def _top_components(trajectory: pd.DataFrame, top: int) -> list[str]:
    """The `top` components with the largest mean weight over the trajectory."""
    return list(trajectory.mean().sort_values(ascending=False).index[:top])


def _legend_caption(name: str, labels: dict[str, str]) -> str:
    """A component's legend entry: the start of its description (`domain_caption`'s words
    without the name), or its name when it has none."""
    caption = domain_caption(name, labels)
    return caption.removeprefix(f"{name} ") if caption != name else name


class _Style(NamedTuple):
    colour: str
    hatch: str


def _component_styles(ranked: Iterable[str]) -> dict[str, _Style]:
    """Colour (and past DISTINCT_COLOURS components, hatching) per component, in rank order."""
    return {
        name: _Style(
            DOMAIN_COLOURS[i % len(DOMAIN_COLOURS)],
            HATCHES[(i // len(DOMAIN_COLOURS)) % len(HATCHES)],
        )
        for i, name in enumerate(ranked)
    }


def _stacked_weights(
    ax: Axes,
    trajectory: pd.DataFrame,
    end: float,
    named: list[str],
    styles: dict[str, _Style],
    labels: dict[str, str],
    legend_columns: int,
) -> None:
    """Stacked areas, piecewise constant between updates: the `named` components (in the legend
    below the panel by their description in `labels`), then the rest summed as "other (n)"."""
    layers = trajectory[named].copy()
    rest = [c for c in trajectory.columns if c not in named]
    if rest:
        layers[f"other ({len(rest)})"] = trajectory[rest].sum(axis=1)
    if end > layers.index[-1]:
        layers.loc[end] = layers.iloc[-1]
    bottom = np.zeros(len(layers))
    for column in layers.columns:
        top_edge = bottom + layers[column].to_numpy()
        style = styles.get(column, _Style(OTHER_COLOUR, ""))
        ax.fill_between(
            layers.index,
            bottom,
            top_edge,
            step="post",
            facecolor=style.colour,
            hatch=style.hatch,
            edgecolor="white",
            label=_legend_caption(column, labels),
            lw=0,
        )
        bottom = top_edge
    ax.set_xlim(layers.index[0], layers.index[-1])
    ax.set_ylim(0, 1)
    ax.set_xlabel("training tokens")
    ax.set_ylabel("mixture weight")
    ax.xaxis.set_major_formatter(EngFormatter())
    # Below the panel (constrained layout makes room), the top of the stack first.
    ax.legend(
        fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.2),
        ncol=legend_columns,
        frameon=False,
        reverse=True,
    )


class _TrajectoryPanel(NamedTuple):
    label: str
    seeds: int
    setting: dict
    trajectory: pd.DataFrame
    end: float
    domain_labels: dict[str, str]


def _trajectory_panels(runs: pd.DataFrame) -> list[_TrajectoryPanel]:
    """A panel per online mixer variant and setting whose runs have a weight trajectory."""
    keys = setting_columns(runs)
    panels = []
    for values, rows in runs_with_files(runs).groupby(["mixer_label", *keys], dropna=False):
        trajectory, end, moved = _mean_trajectory(rows)
        if not trajectory.empty and (moved or _updates_weights(rows)):
            setting = dict(zip(keys, values[1:], strict=True))
            labels = domain_labels(rows)
            panels.append(_TrajectoryPanel(values[0], len(rows), setting, trajectory, end, labels))
    return panels


def plot_weight_trajectories(runs: pd.DataFrame, top: int = 6) -> Figure | None:
    """The weight trajectory of each online mixer variant (mean over seeds), one panel per
    variant and setting, in a near-square grid (at most 3 panels a row). A component (domain or
    basis) has the same colour in every panel."""
    panels = _trajectory_panels(runs)
    if not panels:
        log.info(
            "weight trajectories: skipped, no run of an online mixer (one that updates its "
            "weights) has a weight trajectory"
        )
        return None
    if len(panels) > MAX_PANELS:
        log.info("weight trajectories: showing the first %d of %d panels", MAX_PANELS, len(panels))
        panels = panels[:MAX_PANELS]
    named = [_top_components(panel.trajectory, top) for panel in panels]
    # Colours go to the components by their total weight over all panels.
    weight = pd.concat(
        [panel.trajectory[names].mean() for panel, names in zip(panels, named, strict=True)]
    )
    styles = _component_styles(weight.groupby(level=0).sum().sort_values(ascending=False).index)
    mixer_colour = mixer_colours(runs["mixer_label"])
    captions = [
        [_legend_caption(name, panel.domain_labels) for name in names]
        for panel, names in zip(panels, named, strict=True)
    ]
    legend_columns = [1 if max(map(len, c)) > LEGEND_WIDE_ENTRY else 2 for c in captions]
    legend_rows = max(
        math.ceil((len(c) + 1) / n) for c, n in zip(captions, legend_columns, strict=True)
    )  # + 1: "other"
    cols = min(3, math.ceil(math.sqrt(len(panels))))
    fig, axes = panel_grid(len(panels), width=5.0, height=3.2 + 0.2 * legend_rows, cols=cols)
    varying, shared = varying_keys([panel.setting for panel in panels])
    for ax, names, panel, columns in zip(axes, named, panels, legend_columns, strict=True):
        _stacked_weights(
            ax, panel.trajectory, panel.end, names, styles, panel.domain_labels, columns
        )
        title = f"{panel.label} ({seeds_label(panel.seeds)})"
        if varying:
            title += f"\n{setting_title(panel.setting, varying)}"
        ax.set_title(title, fontsize=10, color=mixer_colour[panel.label], fontweight="bold")
    fig.suptitle(
        "Mixture weights during training (mean over seeds)\n"
        + setting_title(panels[0].setting, shared),
        fontsize=12,
    )
    return fig
