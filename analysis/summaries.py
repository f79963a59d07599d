"""Compact summaries of sweeps, small enough to commit, and how well each setting separates the
mixers.

    python -m analysis.summaries <sweep dirs...> --out analysis/findings/<name>.csv

writes one row per run (setting, mixer variant, seed, status, final losses, costs, how much the
weights oscillated, weights as JSON; no checkpoints, no curves) and prints, per setting, the separation of each mixer from
uniform: the mean paired gain over seeds, its 95 % t-interval and the ratio |mean gain| / (seed
standard deviation of the paired gains). A setting where that ratio is large tells mixers apart
with a few seeds; one where it is below 1 needs many.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from analysis.paired import compare
from analysis.results import (
    BASELINE,
    flatten,
    load_runs,
    load_trajectory,
    setting_columns,
    task_columns,
)

SUMMARY_DIR = Path(__file__).resolve().parent / "findings"  # the committed summaries


def read_summary(experiment: str, data_dir: Path = SUMMARY_DIR) -> pd.DataFrame | None:
    path = data_dir / f"{experiment}.csv"
    if not path.exists():
        return None
    runs = pd.read_csv(path)
    runs["total_flops"] = total_flops(runs)
    return runs


def total_flops(runs: pd.DataFrame) -> pd.Series:
    """All the compute each run stands for: training, its mixer's own passes (probes) and its
    upstream runs (proxies, references)."""
    costs = [c for c in ("train_flops", "mixer_flops", "upstream_flops") if c in runs]
    return runs[costs].fillna(0).sum(axis=1)


RUN_COLUMNS = [
    "mixer_label",
    "seed",
    "status",
    "target_loss",
    "generic_loss",
    "worst_domain_loss",
    "tokens_trained",
    "probe_tokens",
    "mixer_flops",
    "train_flops",
    "upstream_flops",
    "domains",
    "max_domain_epochs",
    "time_averaged_max_weight",
    "collapsed",
]
WEIGHT_COLUMNS = ["final_weights", "time_averaged_weights"]
# Config columns that name a run's specialist set. A summary keeps them even when every completed
# run shares one target (a sweep summarised target by target must still say which), and they
# are part of a run's identity when summaries are merged.
TARGET_PREFIXES = ("config.data.specialist.where.", "config.data.specialist.subject")


def identity_columns(runs: pd.DataFrame) -> list[str]:
    """What tells two runs' settings apart: the setting columns, then the target columns."""
    keys = setting_columns(runs)
    targets = sorted(
        c
        for c in runs.columns
        if c.startswith(TARGET_PREFIXES) and c not in keys and runs[c].notna().any()
    )
    return [*keys, *targets]


def _trajectory(given: pd.DataFrame | str | None) -> pd.DataFrame | None:
    """A weight trajectory, or the one in run directory `given` (None without either)."""
    if isinstance(given, pd.DataFrame):
        return given
    return load_trajectory(given) if given else None


def weight_measures(run_dir: str | None) -> tuple[float, float]:
    """`weight_oscillation` and `sign_reversals` of a run, from one read of its weights.csv."""
    if not run_dir:
        return np.nan, np.nan
    trajectory = load_trajectory(run_dir)
    return weight_oscillation(trajectory), sign_reversals(trajectory)


def weight_oscillation(trajectory: pd.DataFrame | str | None) -> float:
    """How much a run's weights moved between consecutive updates: the mean L1 distance between
    successive rows of its weights.csv (0 for a static mixer; NaN without a trajectory). Plain
    DGA's weights are said to oscillate, and the EMA to damp them: this is the measure."""
    trajectory = _trajectory(trajectory)
    if trajectory is None:
        return np.nan
    if len(trajectory) < 2:
        return 0.0 if len(trajectory) else np.nan
    return float(trajectory.diff().abs().sum(axis=1).iloc[1:].mean())


def sign_reversals(trajectory: pd.DataFrame | str | None) -> float:
    """How often a weight's direction of change flips between consecutive updates: the share
    of (component, update) pairs, among those where both steps moved it, whose step has the
    opposite sign of the step before (NaN when nothing moved twice, e.g. a static mixer). An
    EMA shrinks each step (so `weight_oscillation` falls by construction) but keeps its sign,
    alpha_new - alpha = beta (alpha_hat - alpha): this measures the pre-EMA update's direction
    and can show the EMA doing nothing."""
    trajectory = _trajectory(trajectory)
    if trajectory is None:
        return np.nan
    steps = np.sign(trajectory.diff().to_numpy()[1:])
    both = (steps[1:] != 0) & (steps[:-1] != 0)
    if not both.any():
        return np.nan
    return float((steps[1:] != steps[:-1])[both].mean())


def registration_digest(registration: dict) -> str:
    """A short fingerprint of a registration (a config's `registration`, nested or flattened as
    the `config.registration.*` columns are): a run records the one it was made under, so a
    design changed after its runs exist shows in the report ("" without one)."""
    flat = {
        k: _plain(v)
        for k, v in flatten(registration).items()
        if not _missing(v) and k != "parts"  # how the runs are made, not the design
    }
    if not flat:
        return ""
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:12]


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _plain(value: object) -> str:
    """One spelling per value, whether it came from YAML or back from a CSV (10000 = 10000.0)."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | float | np.integer | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _run_registration(row: pd.Series) -> str:
    prefix = "config.registration."
    flat = {k.removeprefix(prefix): v for k, v in row.items() if k.startswith(prefix)}
    return registration_digest(flat)


def summarize(runs: pd.DataFrame, keys: list[str] | None = None) -> pd.DataFrame:
    """One row per run: its setting columns (`keys`, by default `identity_columns`), then
    `RUN_COLUMNS`, any task scores (`mmlu/acc`...), the weights' oscillation, then the weights as
    JSON."""
    keys = identity_columns(runs) if keys is None else keys
    table = runs[keys + RUN_COLUMNS + task_columns(runs)].copy()
    measures = [weight_measures(d) for d in runs["run_dir"]]
    table["weight_oscillation"] = [oscillation for oscillation, _ in measures]
    table["sign_reversals"] = [reversals for _, reversals in measures]
    table["registration"] = [_run_registration(row) for _, row in runs.iterrows()]
    for column in WEIGHT_COLUMNS:
        table[column] = [
            json.dumps({k: round(v, 6) for k, v in w.items()}) if isinstance(w, dict) else ""
            for w in runs[column]
        ]
    return table.sort_values([*keys, "mixer_label", "seed"]).reset_index(drop=True)


def merge(previous: pd.DataFrame, summary: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """`summary` plus the rows of `previous` (an earlier summary of the same experiment) for runs
    it does not hold, a run being its setting, mixer variant and seed: a sweep re-run in parts
    (one mixer now, another later, or after its run directories are gone) adds to what was
    committed instead of replacing it, and a run summarised again replaces its older row."""
    # Keys the earlier summary has too (one written before a column was summarised lacks it).
    run_keys = [*(k for k in keys if k in previous), "mixer_label", "seed"]

    def run_ids(table: pd.DataFrame) -> pd.Series:
        columns = table.reindex(columns=run_keys).astype(object)
        return columns.where(columns.notna(), "").astype(str).agg("|".join, axis=1)

    kept = previous[~run_ids(previous).isin(set(run_ids(summary)))]
    merged = pd.concat([summary, kept], ignore_index=True) if len(kept) else summary
    return merged.sort_values(run_keys).reset_index(drop=True)


def separation(summary: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per setting and mixer variant: uniform's mean loss, the paired gain over uniform
    (uniform - variant) with its interval, the seed standard deviation of the paired gains and
    their ratio."""
    rows = []
    done = summary[summary["status"] == "completed"]
    for values, setting in done.groupby(keys, dropna=False, sort=True):
        by_seed = setting.pivot_table(index="seed", columns="mixer_label", values="target_loss")
        if BASELINE not in by_seed:
            continue
        for label in by_seed.columns.drop(BASELINE):
            gains = (by_seed[BASELINE] - by_seed[label]).dropna()
            interval = compare(by_seed[BASELINE], by_seed[label])
            spread = gains.std(ddof=1) if len(gains) > 1 else np.nan
            rows.append(
                {
                    **dict(zip(keys, values, strict=True)),
                    "mixer_label": label,
                    "baseline_loss": by_seed[BASELINE].mean(),
                    "seeds": interval.n,
                    "gain": interval.mean,
                    "gain_ci_low": interval.low,
                    "gain_ci_high": interval.high,
                    "seed_std": spread,
                    "ratio": abs(interval.mean) / spread if spread > 0 else np.nan,
                }
            )
    return pd.DataFrame(rows)


def _print(table: pd.DataFrame, console: Console) -> None:
    shown = Table(title="Separation from uniform (paired over seeds)", title_justify="left")
    for column in table.columns:
        shown.add_column(column, justify="left" if column == "mixer_label" else "right")
    for row in table.itertuples(index=False):
        shown.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    console.print(shown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.summaries", description=__doc__)
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep or run directories")
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of an existing --out file for runs the sweep dirs do not hold",
    )
    args = parser.parse_args(argv)
    runs = load_runs(args.dirs)
    keys = identity_columns(runs)
    previous = pd.read_csv(args.out) if args.merge and args.out.exists() else None
    if previous is not None:
        # A setting column of the earlier summary stays one when every run added now shares its
        # value (a part of the sweep at one vocabulary size), or the merged rows would lack it.
        keys += [
            c for c in previous.columns if c in runs and c.startswith("config.") and c not in keys
        ]
    summary = summarize(runs, keys)
    if previous is not None:
        summary = merge(previous, summary, keys)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary.to_csv(args.out, index=False)
    _print(separation(summary, keys), Console(width=200))
    print(f"wrote {args.out} ({len(summary)} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
