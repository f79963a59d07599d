"""What the comparison figures share: a grid of panels, one per setting, titled by what differs
between them, with the same loss axis."""

from __future__ import annotations

import logging
import math

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.results import completed, setting_title

log = logging.getLogger(__name__)

MAX_PANELS = 12
LOSS_LABEL = "held-out specialist loss (nats/token)"


def seeds_label(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def panel_grid(
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


def setting_panels(
    frame: pd.DataFrame, keys: list[str], what: str
) -> list[tuple[dict, pd.DataFrame]]:
    """(setting, rows) per distinct value of `keys`, at most MAX_PANELS of them."""
    groups = [
        (dict(zip(keys, values, strict=True)), rows)
        for values, rows in frame.groupby(keys, dropna=False)
    ]
    if len(groups) > MAX_PANELS:
        log.info("%s: showing the first %d of %d panels", what, MAX_PANELS, len(groups))
    return groups[:MAX_PANELS]


def varying_keys(settings: list[dict]) -> tuple[list[str], list[str]]:
    """The setting keys that differ between panels, and those shared by all of them."""
    keys = list(settings[0])
    frame = pd.DataFrame(settings, columns=keys)
    varying = [k for k in keys if frame[k].nunique(dropna=False) > 1]
    return varying, [k for k in keys if k not in varying]


def title_panels(fig: Figure, axes: list[Axes], settings: list[dict], heading: str) -> None:
    varying, shared = varying_keys(settings)
    for ax, setting in zip(axes, settings, strict=True):
        if varying:
            ax.set_title(setting_title(setting, varying), fontsize=10)
    fig.suptitle(f"{heading}\n{setting_title(settings[0], shared)}", fontsize=12)


def finish_loss_axes(ax: Axes, xlabel: str, formatter) -> None:
    """The y axis, grid and legend every loss figure shares."""
    ax.xaxis.set_major_formatter(formatter)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(LOSS_LABEL)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def runs_with_files(runs: pd.DataFrame) -> pd.DataFrame:
    """Completed runs that have a local directory (W&B rows have no metrics.csv here)."""
    done = completed(runs)
    return done[done["run_dir"].notna()]
