"""Comparison plots (PNG) of the runs of a sweep.

`python -m analysis.plots <run or sweep dirs...> [--out DIR]` writes into `<DIR>/plots/`:

- loss_curves.png: held-out specialist loss against training tokens, per mixer and setting;
- weight_trajectories.png: the mixture weights of every online mixer over training (stacked,
  the most-weighted components named by their description when the run recorded one, the
  rest summed as "other"; a grid of at most 3 panels a row, each with its legend below it);
- loss_vs_train_tokens.png, loss_vs_tokens_per_domain.png, loss_vs_num_domains.png: final
  specialist loss against each axis the sweep varies (skipped, with a message, otherwise);
- gain_vs_uniform.png: each mixer's specialist-loss gain over uniform, paired by seed, with its
  95% interval where at least 3 seeds pair up (see analysis.leaderboard);
- overhead.png: per mixer, the extra compute (FLOPs of its own passes / training FLOPs), the
  share of each run's training-step time spent in mixer updates, and the probe tokens read.
  Wall clock is never compared across runs: runs made at different times see different loads.

Every figure shows a mixer in the same colour (`mixer_colours`), and past 10 mixers a figure's
lines also differ in style (`mixer_linestyles`). Error bars and bands need at least two runs:
a point from one run is drawn without any. The functions return matplotlib Figures (None, with
the reason logged, when there is nothing to draw), so notebooks can show them.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, MaxNLocator, NullFormatter, StrMethodFormatter
from matplotlib.transforms import offset_copy

from analysis import cli
from analysis.leaderboard import MARK, aggregate, gain_cells
from analysis.paired import ALPHA, MIN_SEEDS
from analysis.results import (
    BASELINE,
    TARGET_LOSS,
    completed,
    domain_caption,
    domain_labels,
    load_trajectory,
    setting_columns,
    setting_title,
    validation_curve,
)

log = logging.getLogger(__name__)

# A fixed colour per mixer name (matplotlib's qualitative tab10, then two more); names not listed
# get one of SPARE (Dark2) not yet taken in the figure, starting from a hash of the name.
PALETTE = {
    "uniform": "#555555",
    "importance": "#ff7f0e",
    "doge": "#2ca02c",
    "dga": "#1f77b4",
    "dga_dr": "#9467bd",
    "static": "#8c564b",
    "doremi": "#d62728",
    "aioli": "#e377c2",
    "odm": "#bcbd22",
    "regmix": "#17becf",
    "importance_smoothed": "#e6ab02",
    "dga_unbounded": "#000080",
}
SPARE = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#a6761d")
# Variants of one mixer: its colour, then lighter / darker shades (negative: towards black).
SHADES = (0.0, 0.45, -0.4, 0.7, -0.65)
OTHER_COLOUR = "#d9d9d9"
# Components of the weight trajectories: tab10, then the same colours hatched.
DOMAIN_COLOURS = tuple(to_hex(c) for c in colormaps["tab10"].colors)
HATCHES = ("", "///", "...", "xxx")
# Past this many lines in a figure, linestyles cycle too.
DISTINCT_COLOURS = 10
LINESTYLES = ("-", "--", ":", "-.")
# A weight-trajectory panel's legend: two columns unless an entry is longer than this.
LEGEND_WIDE_ENTRY = 30
MAX_PANELS = 12
LOSS_LABEL = "held-out specialist loss (nats/token)"
SCALING_AXES = {
    "train_tokens": "training-token budget (tokens)",
    "tokens_per_domain": "training tokens per domain (cap; uncapped: mean domain size)",
    "num_domains": "number of domains k",
}


def base_name(label: str) -> str:
    return label.split("[", 1)[0]


def _shade(colour: str, amount: float) -> str:
    rgb = np.array(to_rgb(colour))
    towards = np.ones(3) if amount > 0 else np.zeros(3)
    return to_hex(rgb + abs(amount) * (towards - rgb))


def _spare_colour(name: str, taken: set[str]) -> str:
    """The first colour of SPARE not in `taken`, from a position set by a hash of `name` (so a
    new mixer keeps its colour from figure to figure unless another one took it first)."""
    start = zlib.crc32(name.encode()) % len(SPARE)
    ring = SPARE[start:] + SPARE[:start]
    return next((colour for colour in ring if colour not in taken), ring[0])


def mixer_colours(labels: Iterable[str]) -> dict[str, str]:
    """Colour per mixer variant: the mixer's palette colour for its default variant, shades of it
    for the others (in sorted order), so every figure built from the same runs agrees."""
    colours = {}
    labels = sorted(set(labels))
    names = sorted({base_name(label) for label in labels})
    taken = {PALETTE[name] for name in names if name in PALETTE}
    for name in names:
        colour = PALETTE.get(name) or _spare_colour(name, taken)
        taken.add(colour)
        variants = [label for label in labels if base_name(label) == name and label != name]
        colours[name] = colour
        for i, label in enumerate(variants, start=1):
            colours[label] = _shade(colour, SHADES[i % len(SHADES)])
    return colours


def mixer_linestyles(labels: Iterable[str]) -> dict[str, str]:
    """Linestyle per mixer variant: solid for the first DISTINCT_COLOURS (in sorted order), then
    dashed, dotted..., so that many lines stay apart where colours run short."""
    return {
        label: LINESTYLES[(i // DISTINCT_COLOURS) % len(LINESTYLES)]
        for i, label in enumerate(sorted(set(labels)))
    }


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def _grid(
    panels: int, width: float = 5.5, height: float = 4.0, cols: int | None = None
) -> tuple[Figure, list[Axes]]:
    """A figure of `panels` axes, `cols` a row (default: as many as fit, at most 3), each
    `width` x `height` inches."""
    cols = cols or min(panels, 3)
    rows = math.ceil(panels / cols)
    width = max(width, 8.0 / cols)  # room for the two-line title above a single panel
    fig = Figure(figsize=(width * cols, height * rows + 0.6), layout="constrained", dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[panels:]:
        ax.set_visible(False)
    return fig, list(axes[:panels])


def _panels(frame: pd.DataFrame, keys: list[str], what: str) -> list[tuple[dict, pd.DataFrame]]:
    """(setting, rows) per distinct value of `keys`, at most MAX_PANELS of them."""
    groups = [
        (dict(zip(keys, values, strict=True)), rows)
        for values, rows in frame.groupby(keys, dropna=False)
    ]
    if len(groups) > MAX_PANELS:
        log.info("%s: showing the first %d of %d panels", what, MAX_PANELS, len(groups))
    return groups[:MAX_PANELS]


def _varying(settings: list[dict]) -> tuple[list[str], list[str]]:
    """The setting keys that differ between panels, and those shared by all of them."""
    keys = list(settings[0])
    frame = pd.DataFrame(settings, columns=keys)
    varying = [k for k in keys if frame[k].nunique(dropna=False) > 1]
    return varying, [k for k in keys if k not in varying]


def _titles(fig: Figure, axes: list[Axes], settings: list[dict], heading: str) -> None:
    varying, shared = _varying(settings)
    for ax, setting in zip(axes, settings, strict=True):
        if varying:
            ax.set_title(setting_title(setting, varying), fontsize=10)
    fig.suptitle(f"{heading}\n{setting_title(settings[0], shared)}", fontsize=12)


def _finish_loss_axes(ax: Axes, xlabel: str, formatter) -> None:
    """The y axis, grid and legend every loss figure shares."""
    ax.xaxis.set_major_formatter(formatter)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(LOSS_LABEL)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _with_files(runs: pd.DataFrame) -> pd.DataFrame:
    """Completed runs that have a local directory (W&B rows have no metrics.csv here)."""
    done = completed(runs)
    return done[done["run_dir"].notna()]


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
    for setting, rows in _panels(_with_files(runs), setting_columns(runs), "loss curves"):
        curves = {label: _seed_curves(variant) for label, variant in rows.groupby("mixer_label")}
        curves = {label: table for label, table in curves.items() if not table.empty}
        if curves:
            panels.append((setting, curves))
    if not panels:
        log.info("loss curves: skipped, no completed run has a metrics.csv with validation rows")
        return None
    colours = mixer_colours(runs["mixer_label"])
    linestyles = mixer_linestyles(runs["mixer_label"])
    fig, axes = _grid(len(panels))
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
                label=f"{label} ({_seeds(seeds)})",
            )
            if seeds > 1:
                ax.fill_between(mean.index, mean - std, mean + std, color=colour, alpha=0.2, lw=0)
        _finish_loss_axes(ax, "training tokens", EngFormatter())
    _titles(
        fig,
        axes,
        [setting for setting, _ in panels],
        "Specialist loss during training (mean ± std over seeds)",
    )
    return fig


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
    for values, rows in _with_files(runs).groupby(["mixer_label", *keys], dropna=False):
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
    fig, axes = _grid(len(panels), width=5.0, height=3.2 + 0.2 * legend_rows, cols=cols)
    varying, shared = _varying([panel.setting for panel in panels])
    for ax, names, panel, columns in zip(axes, named, panels, legend_columns, strict=True):
        _stacked_weights(
            ax, panel.trajectory, panel.end, names, styles, panel.domain_labels, columns
        )
        title = f"{panel.label} ({_seeds(panel.seeds)})"
        if varying:
            title += f"\n{setting_title(panel.setting, varying)}"
        ax.set_title(title, fontsize=10, color=mixer_colour[panel.label], fontweight="bold")
    fig.suptitle(
        "Mixture weights during training (mean over seeds)\n"
        + setting_title(panels[0].setting, shared),
        fontsize=12,
    )
    return fig


def _count(sizes: pd.Series) -> str:
    """How many seeds the points of a line average over: "1 seed", "3 seeds", or "2-3 seeds"."""
    low, high = sizes.min(), sizes.max()
    return _seeds(low) if low == high else f"{low}-{high} seeds"


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
        for setting, rows in _panels(done, others, f"loss vs {axis}")
        if rows["x"].nunique() > 1
    ]
    if not panels:
        log.info("loss vs %s: skipped, the runs do not vary %s", axis, axis)
        return None
    colours = mixer_colours(runs["mixer_label"])
    linestyles = mixer_linestyles(runs["mixer_label"])
    fig, axes = _grid(len(panels))
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
        _finish_loss_axes(ax, SCALING_AXES[axis], formatter)
    _titles(
        fig,
        axes,
        [setting for setting, _ in panels],
        f"Final specialist loss vs {SCALING_AXES[axis].split(' (')[0]} (mean ± std over seeds)",
    )
    return fig


def _gain_point(ax: Axes, y: int, row, text: str, colour: str) -> None:
    """One variant's gain at height `y`: a point, its interval as an error bar (if it has one),
    and `text` above it."""
    interval = pd.notna(row.gain_ci_low)
    error = [[row.gain_vs_uniform - row.gain_ci_low], [row.gain_ci_high - row.gain_vs_uniform]]
    ax.errorbar(
        row.gain_vs_uniform, y, xerr=error if interval else None, fmt="o", capsize=4, color=colour
    )
    if not interval:
        text = f"{_seeds(row.paired_seeds)}: no interval"
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
    panels = _panels(shown, setting_columns(runs), "gain vs uniform")
    if not panels:
        log.info("gain vs uniform: skipped, no mixer shares a seed with a uniform run")
        return None
    colours = mixer_colours(runs["mixer_label"])
    rows_per_panel = max(len(rows) for _, rows in panels)
    fig, axes = _grid(len(panels), height=max(2.5, 0.6 * rows_per_panel + 1.5))
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
    _titles(
        fig,
        axes,
        [setting for setting, _ in panels],
        f"Gain over {BASELINE}, paired by seed (95% t-interval where ≥ {MIN_SEEDS} seeds pair up; "
        f"{MARK}: Holm-adjusted p < {ALPHA:g})",
    )
    return fig


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
    fig, axes = _grid(len(OVERHEADS), width=5.5, height=max(2.5, 0.45 * len(labels) + 1.5))
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


# File name -> figure builder, in the order they are written.
FIGURES: dict[str, Callable[[pd.DataFrame], Figure | None]] = {
    "loss_curves.png": plot_loss_curves,
    "weight_trajectories.png": plot_weight_trajectories,
    **{
        f"loss_vs_{axis}.png": (lambda runs, axis=axis: plot_scaling(runs, axis))
        for axis in SCALING_AXES
    },
    "gain_vs_uniform.png": plot_gains,
    "overhead.png": plot_overhead,
}


def write_plots(runs: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Write every figure that has something to show into `out_dir`; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, build in FIGURES.items():
        fig = build(runs)
        if fig is not None:
            fig.savefig(out_dir / name)
            written.append(out_dir / name)
    return written


def main(argv: list[str] | None = None) -> int:
    return cli.main(
        argv,
        lambda runs, out_dir, _console: write_plots(runs, Path(out_dir) / "plots"),
        prog="python -m analysis.plots",
        description=__doc__.split("\n")[0],
    )


if __name__ == "__main__":
    raise SystemExit(main())
