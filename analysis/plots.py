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
lines also differ in style (`mixer_linestyles`; both in analysis.plot_style). Error bars and
bands need at least two runs: a point from one run is drawn without any. The functions return
matplotlib Figures (None, with the reason logged, when there is nothing to draw), so notebooks
can show them; they are importable from here, and each kind lives in its own module:
analysis.plot_losses (loss curves, loss against a setting axis), analysis.plot_weights (weight
trajectories), analysis.plot_gains and analysis.plot_overhead, on the panel grid of
analysis.plot_panels.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from analysis import cli
from analysis.plot_gains import plot_gains
from analysis.plot_losses import SCALING_AXES, plot_loss_curves, plot_scaling
from analysis.plot_overhead import plot_overhead
from analysis.plot_weights import plot_weight_trajectories

__all__ = [
    "FIGURES",
    "SCALING_AXES",
    "main",
    "plot_gains",
    "plot_loss_curves",
    "plot_overhead",
    "plot_scaling",
    "plot_weight_trajectories",
    "write_plots",
]

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
