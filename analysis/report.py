"""Leaderboard and plots of a sweep in one go.

    python -m analysis.report <run or sweep dirs...> [--out DIR]       # both
    python -m analysis.leaderboard <dirs...>                            # leaderboard only
    python -m analysis.plots <dirs...>                                  # plots only
    python -m analysis.report --wandb PROJECT [--wandb-entity E] [--wandb-group G] --out DIR

The leaderboard files go into the output directory (default: the first directory given), the
figures into its `plots/` folder. The three commands share the command line of analysis.cli.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console

from analysis import cli
from analysis.leaderboard import write_leaderboard
from analysis.plots import write_plots
from analysis.results import load_runs


def report(
    runs: pd.DataFrame,
    out_dir: str | Path,
    *,
    leaderboard: bool = True,
    plots: bool = True,
    console: Console | None = None,
) -> list[Path]:
    """Write the leaderboard files into `out_dir` and the figures into `out_dir/plots`
    (printing the leaderboard to `console` if given); returns the paths written."""
    written = []
    if leaderboard:
        written += write_leaderboard(runs, out_dir, console)
    if plots:
        written += write_plots(runs, Path(out_dir) / "plots")
    return written


def write_report(
    dirs: list[str | Path],
    out_dir: str | Path | None = None,
    *,
    leaderboard: bool = True,
    plots: bool = True,
    console: Console | None = None,
) -> list[Path]:
    """Collect the runs under `dirs` and write their leaderboard and plots (into `out_dir`,
    default the first of `dirs`); returns the paths written."""
    if not dirs:
        raise ValueError("give at least one run or sweep directory")
    runs = load_runs(dirs)
    return report(runs, out_dir or dirs[0], leaderboard=leaderboard, plots=plots, console=console)


def main(argv: list[str] | None = None) -> int:
    return cli.main(
        argv,
        lambda runs, out_dir, console: report(runs, out_dir, console=console),
        prog="python -m analysis.report",
        description="Write the leaderboard and the comparison plots of a sweep.",
    )


if __name__ == "__main__":
    raise SystemExit(main())
