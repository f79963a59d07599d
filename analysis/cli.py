"""The command line that analysis.report, analysis.leaderboard and analysis.plots share: collect
the runs (from directories and/or W&B), write the outputs, list the files written."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from rich.console import Console

from analysis.results import load_runs
from analysis.wandb_runs import load_wandb_runs

# What a command writes: (runs, output directory, console to print to) -> the paths written.
Writer = Callable[[pd.DataFrame, Path, Console], list[Path]]


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


def main(argv: list[str] | None, write: Writer, *, prog: str, description: str) -> int:
    """Parse `argv`, load the runs and `write` them; returns the exit status."""
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
    written = write(pd.concat(frames, ignore_index=True), args.out or args.dirs[0], console)
    for path in written:
        console.print(f"wrote {path}", highlight=False)
    return 0
