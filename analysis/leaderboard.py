"""The leaderboard: mixers ranked by held-out specialist loss within each setting.

`python -m analysis.leaderboard <run or sweep dirs...> [--out DIR]` prints it and writes
leaderboard.md, leaderboard.csv and leaderboard.html (into the first directory, or --out).

Per setting and mixer variant, over the completed seeds: mean and standard deviation (sample,
ddof=1; undefined for one seed) of the specialist and generic held-out losses; the gain over
uniform (uniform's mean specialist loss minus this mixer's, so positive is better); probe tokens
as a share of training tokens; the time spent in training steps (mixer updates included)
relative to uniform's; and the epochs of the most-repeated domain.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from analysis.results import BASELINE, completed, setting_columns, setting_title

LEADERBOARD_FILES = ("leaderboard.md", "leaderboard.csv", "leaderboard.html")


def baseline_mean(frame: pd.DataFrame, column: str, keys: list[str]) -> pd.Series:
    """For every row, the mean of `column` over the uniform rows of the same setting (NaN where
    the setting has no uniform run)."""
    baseline = frame[column].where(frame["mixer_label"] == BASELINE)
    return baseline.groupby([frame[k] for k in keys], dropna=False).transform("mean")


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (setting, mixer variant) over its completed runs, ranked within the setting
    (rank 1 = lowest mean specialist loss). Settings come from `setting_columns(runs)`."""
    keys = setting_columns(runs)
    done = completed(runs)
    if done.empty:
        return pd.DataFrame(columns=[*keys, "rank", "mixer_label"])
    board = (
        done.groupby([*keys, "mixer_label"], dropna=False)
        .agg(
            target_loss_mean=("target_loss", "mean"),
            target_loss_std=("target_loss", "std"),
            seeds=("target_loss", "size"),
            generic_loss_mean=("generic_loss", "mean"),
            generic_loss_std=("generic_loss", "std"),
            tokens_trained=("tokens_trained", "mean"),
            probe_tokens=("probe_tokens", "mean"),
            train_seconds=("train_seconds", "mean"),
            max_domain_epochs=("max_domain_epochs", "mean"),
        )
        .reset_index()
    )
    board["gain_vs_uniform"] = (
        baseline_mean(board, "target_loss_mean", keys) - board["target_loss_mean"]
    )
    board["probe_overhead"] = board["probe_tokens"] / board["tokens_trained"]
    board["time_overhead"] = (
        board["train_seconds"] / baseline_mean(board, "train_seconds", keys) - 1
    )
    board["rank"] = (
        board.groupby(keys, dropna=False)["target_loss_mean"].rank(method="min").astype(int)
    )
    ordered = [*keys, "rank", "mixer_label"]
    board = board[ordered + [c for c in board.columns if c not in ordered]]
    return board.sort_values([*keys, "rank", "mixer_label"], na_position="last").reset_index(
        drop=True
    )


def problem_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that did not complete (failed, still running or killed, unreadable)."""
    problems = runs[runs["status"] != "completed"]
    columns = ["status", "mixer_label", "seed", "run_dir", "error"]
    return problems.reindex(columns=columns).sort_values(["status", "mixer_label", "run_dir"])


def _number(value: float, digits: int = 4) -> str:
    return "–" if pd.isna(value) else f"{value:.{digits}f}"


def _percent(value: float) -> str:
    return "–" if pd.isna(value) else f"{100 * value:+.1f} %"


def display_table(board: pd.DataFrame) -> pd.DataFrame:
    """The rows of one setting as strings, with readable column names."""
    return pd.DataFrame(
        {
            "Rank": board["rank"],
            "Mixer": board["mixer_label"],
            "Specialist loss": [
                f"{_number(m)} ± {_number(s)}"
                for m, s in zip(board["target_loss_mean"], board["target_loss_std"], strict=True)
            ],
            "Seeds": board["seeds"],
            "Generic loss": [
                f"{_number(m)} ± {_number(s)}"
                for m, s in zip(board["generic_loss_mean"], board["generic_loss_std"], strict=True)
            ],
            "Gain vs uniform": [
                "–" if pd.isna(g) else f"{g:+.4f}" for g in board["gain_vs_uniform"]
            ],
            "Probe tokens": board["probe_overhead"].map(
                lambda p: "–" if pd.isna(p) else f"{100 * p:.1f} %"
            ),
            "Step time vs uniform": board["time_overhead"].map(_percent),
            "Max domain epochs": board["max_domain_epochs"].map(lambda e: _number(e, 2)),
        }
    )


def by_setting(board: pd.DataFrame, keys: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """(title, display table) per setting, in the board's order."""
    sections = []
    for values, rows in board.groupby(keys, dropna=False, sort=False):
        setting = dict(zip(keys, values, strict=True))
        sections.append((setting_title(setting), display_table(rows)))
    return sections


def _problem_display(problems: pd.DataFrame) -> pd.DataFrame:
    shown = problems.rename(
        columns={
            "status": "Status",
            "mixer_label": "Mixer",
            "seed": "Seed",
            "run_dir": "Run",
            "error": "Error",
        }
    )
    shown["Seed"] = shown["Seed"].map(lambda s: "–" if pd.isna(s) else str(int(s)))
    shown["Error"] = shown["Error"].map(lambda e: "" if not isinstance(e, str) else e)
    return shown


NOTE = (
    "Specialist loss: held-out specialist (target) loss, mean ± std over seeds (lower is "
    "better; rank 1 = best in the setting). Gain vs uniform: uniform's specialist loss minus "
    "this mixer's (positive = better). Probe tokens: extra tokens mixers read, as a share of "
    "training tokens. Step time vs uniform: time in training steps (mixer updates included) "
    "relative to uniform's. Max domain epochs: epochs of the most-repeated domain."
)


def to_markdown(sections: list[tuple[str, pd.DataFrame]], problems: pd.DataFrame) -> str:
    parts = ["# Leaderboard", "", NOTE, ""]
    for title, table in sections:
        align = ["left" if column == "Mixer" else "right" for column in table.columns]
        markdown = table.to_markdown(index=False, disable_numparse=True, colalign=align)
        parts += [f"## {title}", "", markdown, ""]
    if not problems.empty:
        parts += ["## Runs that did not complete", ""]
        parts += [_problem_display(problems).to_markdown(index=False, disable_numparse=True), ""]
    return "\n".join(parts)


def to_html(sections: list[tuple[str, pd.DataFrame]], problems: pd.DataFrame) -> str:
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}"
        "th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#eee}"
        "td:nth-child(2){text-align:left}"
    )
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Leaderboard</title>",
        f"<style>{style}</style></head><body><h1>Leaderboard</h1><p>{html.escape(NOTE)}</p>",
    ]
    for title, table in sections:
        parts += [f"<h2>{html.escape(title)}</h2>", table.to_html(index=False)]
    if not problems.empty:
        parts += ["<h2>Runs that did not complete</h2>"]
        parts += [_problem_display(problems).to_html(index=False)]
    parts.append("</body></html>")
    return "\n".join(parts)


def print_leaderboard(
    sections: list[tuple[str, pd.DataFrame]], problems: pd.DataFrame, console: Console
) -> None:
    for title, table in sections:
        rich_table = Table(title=title, title_justify="left")
        for column in table.columns:
            rich_table.add_column(column, justify="left" if column == "Mixer" else "right")
        for row in table.itertuples(index=False):
            rich_table.add_row(*(Text(str(cell)) for cell in row))  # no markup
        console.print(rich_table)
    if not problems.empty:
        rich_table = Table(title="Runs that did not complete", title_justify="left")
        shown = _problem_display(problems)
        for column in shown.columns:
            rich_table.add_column(column, overflow="fold")
        for row in shown.itertuples(index=False):
            rich_table.add_row(*(Text(str(cell)) for cell in row))  # no markup
        console.print(rich_table)


def write_leaderboard(
    runs: pd.DataFrame, out_dir: str | Path, console: Console | None = None
) -> list[Path]:
    """Print the leaderboard (when given a console) and write leaderboard.{md,csv,html} into
    `out_dir`; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    board = aggregate(runs)
    problems = problem_runs(runs)
    sections = by_setting(board, setting_columns(runs))
    if console is not None:
        print_leaderboard(sections, problems, console)
    md, csv, page = (out_dir / name for name in LEADERBOARD_FILES)
    md.write_text(to_markdown(sections, problems))
    board.to_csv(csv, index=False)
    page.write_text(to_html(sections, problems))
    return [md, csv, page]


def main(argv: list[str] | None = None) -> int:
    from analysis.report import main as report_main  # the shared CLI; it builds on this module

    description = __doc__.split("\n")[0]
    return report_main(
        argv, plots=False, description=description, prog="python -m analysis.leaderboard"
    )


if __name__ == "__main__":
    raise SystemExit(main())
