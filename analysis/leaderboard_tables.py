"""The leaderboard as tables: one display table per setting (`display_table`, cells readable as
they are, e.g. `+0.1230 [+0.0500, +0.1960] *`), with the note on what each column holds and the
method behind the comparisons, rendered as Markdown, HTML or a rich table on the console.

The numbers come from analysis.leaderboard's `aggregate` (one row per setting and mixer variant)
and `problem_runs`; nothing here computes a statistic.
"""

from __future__ import annotations

import html

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from analysis.paired import ALPHA, MIN_SEEDS
from analysis.results import BASELINE, domain_caption, setting_title

# Task scores shown in the tables (all of them are in the CSV).
SHOWN_SCORES = ("acc", "correct_prob", "bpb")
NO_INTERVAL = f"no interval (fewer than {MIN_SEEDS} seeds)"
NO_BASELINE = f"no {BASELINE} run in this setting: add mixer={BASELINE} to the sweep"
NO_SHARED_SEED = f"no seed shared with {BASELINE}"
MARK = "*"  # the gain's Holm-adjusted p < 0.05: it beats or loses to uniform


def _number(value: float, digits: int = 4) -> str:
    return "–" if pd.isna(value) else f"{value:.{digits}f}"


def _share(value: float) -> str:
    return "–" if pd.isna(value) else f"{100 * value:.1f} %"


def _p(value: float) -> str:
    return "–" if pd.isna(value) else "<0.0001" if value < 1e-4 else f"{value:.4f}"


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def _gain_cell(label: str, verdict: str, gain: float, low: float, high: float, adjusted: float):
    if label == BASELINE:
        return "0 (baseline)"
    if verdict == "no baseline":
        return NO_BASELINE
    if pd.isna(gain):
        return NO_SHARED_SEED
    if pd.isna(low):
        return f"{gain:+.4f}, {NO_INTERVAL}"
    mark = f" {MARK}" if adjusted < ALPHA else ""
    return f"{gain:+.4f} [{low:+.4f}, {high:+.4f}]{mark}"


def _gain_columns(prefix: str) -> list[str]:
    """The gain, interval and Holm-adjusted p columns of the specialist loss (`prefix` "") or
    of a task score (`prefix` `<task>/<score>_`)."""
    if not prefix:
        return ["gain_vs_uniform", "gain_ci_low", "gain_ci_high", "gain_p_holm"]
    return [f"{prefix}{name}" for name in ("gain", "ci_low", "ci_high", "p_holm")]


def gain_cells(board: pd.DataFrame, prefix: str = "") -> list[str]:
    """The gain over uniform of every row as shown in the tables, e.g. `+0.1230 [+0.0500,
    +0.1960] *` (raw 95% interval; * : the Holm-adjusted p < 0.05), `+0.1000, no interval
    (fewer than 3 seeds)`, or why there is no gain (no uniform run in the setting, no seed
    shared with it): of the specialist loss, or (`prefix` = `<task>/<score>_`) of a task
    score."""
    columns = [
        board["mixer_label"],
        board["vs_uniform"],
        *(board[c] for c in _gain_columns(prefix)),
    ]
    return [_gain_cell(*values) for values in zip(*columns, strict=True)]


def _verdict_cell(verdict: str, paired_seeds: int) -> str:
    if verdict == "untested":
        return f"untested: {_seeds(paired_seeds)} paired"
    if verdict == "no baseline":
        return f"no {BASELINE} run"
    return verdict


def _task_cells(board: pd.DataFrame) -> dict[str, list[str]]:
    """A column per shown task score: its mean, then its gain over uniform."""
    columns = [c.removesuffix("_mean") for c in board.columns if c.endswith("/acc_mean")]
    cells = {}
    for task in (c.split("/")[0] for c in columns):
        for score in SHOWN_SCORES:
            column = f"{task}/{score}"
            if f"{column}_mean" in board:
                means = board[f"{column}_mean"].map(_number)
                gains = gain_cells(board, f"{column}_")
                cells[f"{task} {score} (gain)"] = [
                    f"{m} (baseline)" if label == BASELINE else f"{m} ({g})"
                    for label, m, g in zip(board["mixer_label"], means, gains, strict=True)
                ]
    return cells


def _worst_cell(loss: float, name: str | None, label: str | None) -> str:
    if pd.isna(loss) or not isinstance(name, str):
        return _number(loss)
    return f"{_number(loss)} ({domain_caption(name, {name: label})})"


def display_table(board: pd.DataFrame) -> pd.DataFrame:
    """The rows of one setting as strings, with readable column names."""
    return pd.DataFrame(
        {
            "Rank": [
                f"{rank}=" if tied else str(rank)
                for rank, tied in zip(board["rank"], board["rank_tied"], strict=True)
            ],
            "Letters": board["letters"],
            "Mixer": board["mixer_label"],
            "Specialist loss": [
                f"{_number(m)} ± {_number(s)}"
                for m, s in zip(board["target_loss_mean"], board["target_loss_std"], strict=True)
            ],
            "Seeds": board["seeds"],
            f"vs {BASELINE}": [
                _verdict_cell(*values)
                for values in zip(board["vs_uniform"], board["paired_seeds"], strict=True)
            ],
            "Gain vs uniform [95% CI]": gain_cells(board),
            "p (Holm)": [
                "–" if pd.isna(p) else f"{_p(p)} ({_p(adjusted)})"
                for p, adjusted in zip(board["gain_p"], board["gain_p_holm"], strict=True)
            ],
            "Paired seeds": board["paired_seeds"],
            "Generic loss": [
                f"{_number(m)} ± {_number(s)}"
                for m, s in zip(board["generic_loss_mean"], board["generic_loss_std"], strict=True)
            ],
            "Worst domain loss": [
                _worst_cell(*values)
                for values in zip(
                    board["worst_domain_loss"],
                    board["worst_domain"],
                    board["worst_domain_label"],
                    strict=True,
                )
            ],
            **_task_cells(board),
            "Extra compute": board["compute_overhead"].map(_share),
            "Mixer time share": board["mixer_time_share"].map(_share),
            "Probe tokens": board["probe_overhead"].map(_share),
            "Max domain epochs": board["max_domain_epochs"].map(lambda e: _number(e, 2)),
            "Collapsed": [
                f"{c}/{n}" if n else "–"
                for c, n in zip(board["collapsed_seeds"], board["flagged_seeds"], strict=True)
            ],
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
    "better). Rank: by mean specialist loss, 1 = best in the setting; `1=` marks a shared rank: "
    "two mixers get different ranks only if their own paired comparison separates them. "
    "Letters: mixers that share a letter cannot be told apart; mixers with no letter in common "
    f"can. vs {BASELINE}: beats, ties or loses, from the Holm-adjusted p-value; untested below "
    f"{MIN_SEEDS} paired seeds. Gain vs uniform: uniform's specialist loss minus this mixer's, "
    "paired by seed (positive = better), with its raw 95% interval; "
    f"{MARK} marks a Holm-adjusted p below {ALPHA:.2f}. p (Holm): the paired t-test's p-value, "
    "raw and (in brackets) Holm-adjusted. Paired seeds: the seeds this mixer shares with "
    "uniform. Generic loss: mean held-out loss over the generic domains. Worst domain loss: the "
    "highest held-out loss of any generic domain, mean over seeds, with that domain when it is "
    "the same for every seed. Task scores (a multiple-choice specialist set, e.g. MMLU): acc "
    "(accuracy, answers compared by log-likelihood per byte), correct_prob (probability on the "
    "correct answer) and bpb (its bits per byte), mean over seeds with the paired gain over "
    "uniform (positive = better) and its 95% interval. Extra compute: FLOPs of the mixer's own "
    "forward and backward passes as a share of the training steps' FLOPs. Mixer time share: "
    "share of each run's training-step time spent in mixer updates (wall clock within the run). "
    "Probe tokens: extra tokens mixers read, as a share of training tokens. Max domain epochs: "
    "epochs of the most-repeated domain."
)
METHOD = (
    "Method: runs of one setting with the same seed share the model initialisation and the data "
    "order, so mixers are compared seed by seed. Gain: over the n seeds a mixer shares with "
    "uniform, d_s = uniform's specialist loss - the mixer's; shown is mean(d) with the 95% "
    "Student t-interval mean(d) ± t(0.975, n-1) · sd(d) / √n, or, below "
    f"{MIN_SEEDS} paired seeds, `{NO_INTERVAL}`. The p-value is the paired t-test's; a "
    "setting's comparisons with uniform are one family, Holm-adjusted together, and the verdict "
    f"and {MARK} come from the adjusted p-values. Letters and ranks: every pair of mixers in the "
    f"setting is compared the same way (over their shared seeds, at least {MIN_SEEDS}), "
    "Holm-adjusted over all pairs; a pair separates when its adjusted p < "
    f"{ALPHA:.2f}. Mixers sharing a letter are not separated. In order of mean specialist loss, "
    "the ranking splits only where every mixer above the split is separated from every mixer "
    "below it; each group's rank is its first mixer's position. All pairs are a larger family "
    f"than the comparisons with uniform, so a mixer can beat {BASELINE} yet share a letter "
    "with it."
)


def to_markdown(sections: list[tuple[str, pd.DataFrame]], problems: pd.DataFrame) -> str:
    parts = ["# Leaderboard", "", NOTE, ""]
    for title, table in sections:
        align = ["left" if column in ("Mixer", "Letters") else "right" for column in table.columns]
        markdown = table.to_markdown(index=False, disable_numparse=True, colalign=align)
        parts += [f"## {title}", "", markdown, ""]
    if sections:
        parts += [METHOD, ""]
    if not problems.empty:
        parts += ["## Runs that did not complete", ""]
        parts += [_problem_display(problems).to_markdown(index=False, disable_numparse=True), ""]
    return "\n".join(parts)


def to_html(sections: list[tuple[str, pd.DataFrame]], problems: pd.DataFrame) -> str:
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}"
        "th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#eee}"
        "td:nth-child(2),td:nth-child(3){text-align:left}"
    )
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Leaderboard</title>",
        f"<style>{style}</style></head><body><h1>Leaderboard</h1><p>{html.escape(NOTE)}</p>",
    ]
    for title, table in sections:
        parts += [f"<h2>{html.escape(title)}</h2>", table.to_html(index=False)]
    if sections:
        parts.append(f"<p>{html.escape(METHOD)}</p>")
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
            if column == "Mixer":  # never wrapped: a variant's name is one word
                rich_table.add_column(column, justify="left", no_wrap=True)
            else:
                rich_table.add_column(column, justify="right")
        for row in table.itertuples(index=False):
            rich_table.add_row(*(Text(str(cell)) for cell in row))  # no markup
        console.print(rich_table)
    if sections:
        console.print(Text(METHOD))
    if not problems.empty:
        rich_table = Table(title="Runs that did not complete", title_justify="left")
        shown = _problem_display(problems)
        for column in shown.columns:
            rich_table.add_column(column, overflow="fold")
        for row in shown.itertuples(index=False):
            rich_table.add_row(*(Text(str(cell)) for cell in row))  # no markup
        console.print(rich_table)
