"""Leaderboard and plots of a sweep in one go, and the command line both CLIs share.

    python -m analysis.report <run or sweep dirs...> [--out DIR]       # both
    python -m analysis.leaderboard <dirs...>                            # leaderboard only
    python -m analysis.plots <dirs...>                                  # plots only
    python -m analysis.report --wandb PROJECT [--wandb-entity E] [--wandb-group G] --out DIR

The leaderboard files go into the output directory (default: the first directory given), the
figures into its `plots/` folder.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd
from rich.console import Console

from analysis.leaderboard import write_leaderboard
from analysis.plots import write_plots
from analysis.results import load_runs, load_wandb_runs


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


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "dirs", nargs="*", type=Path, help="run or sweep directories (searched recursively)"
    )
    parser.add_argument("--out", type=Path, help="output directory (default: the first dir)")
    parser.add_argument(
        "--wandb", metavar="PROJECT", help="also load the runs of this W&B project (needs network)"
    )
    parser.add_argument("--wandb-entity", help="W&B entity (user or team) of --wandb")
    parser.add_argument("--wandb-group", help="only the runs of this W&B group")
    return parser


def main(
    argv: list[str] | None = None,
    *,
    leaderboard: bool = True,
    plots: bool = True,
    prog: str = "python -m analysis.report",
    description: str = "Write the leaderboard and the comparison plots of a sweep.",
) -> int:
    """The command line of analysis.report, analysis.leaderboard (plots=False) and
    analysis.plots (leaderboard=False); returns the exit status."""
    parser = _parser(prog, description)
    args = parser.parse_args(argv)
    if not args.dirs and not args.wandb:
        parser.error("give run or sweep directories, or --wandb PROJECT")
    if not args.dirs and args.out is None:
        parser.error("--out is needed when the runs come only from W&B")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        frames = [load_runs(args.dirs)] if args.dirs else []
        if args.wandb:
            frames.append(load_wandb_runs(args.wandb, args.wandb_entity, args.wandb_group))
    except (OSError, LookupError) as error:  # ConnectionError and FileNotFoundError are OSErrors
        print(f"error: {error}", file=sys.stderr)
        return 1
    console = Console(width=None if sys.stdout.isatty() else 160)
    written = report(
        pd.concat(frames, ignore_index=True),
        args.out or args.dirs[0],
        leaderboard=leaderboard,
        plots=plots,
        console=console,
    )
    for path in written:
        console.print(f"wrote {path}", highlight=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
