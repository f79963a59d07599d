"""The leaderboard: mixers ranked by held-out specialist loss within each setting.

`python -m analysis.leaderboard <run or sweep dirs...> [--out DIR]` prints it and writes
leaderboard.md, leaderboard.csv and leaderboard.html (into the first directory, or --out).

Per setting and mixer variant, over the completed seeds: mean and standard deviation (sample,
ddof=1; undefined for one seed) of the specialist and generic held-out losses; the worst generic
domain's held-out loss (DoReMi's robustness measure); the gain over uniform with its paired 95%
interval, its p-value raw and Holm-adjusted, and whether the variant beats, ties with or loses to
uniform; the compute the mixer spends beyond training; and the epochs of the most-repeated
domain. `COLUMNS` and `TASK_STATS` below describe every column of leaderboard.csv.

Gain over uniform is paired by seed (runs of one setting with the same seed share the model's
initialisation and the data order): over the n seeds a variant shares with uniform,
d_s = uniform's specialist loss - the variant's, and the gain is mean(d) with the Student
t-interval mean(d) ± t_{0.975, n-1} · sd(d) / √n and the paired t-test's p-value
(analysis.paired); no interval below 3 seeds. A setting compares every variant with uniform, so
its p-values are Holm-adjusted over those comparisons, and the verdict (`vs_uniform`: beats,
ties, loses) comes from the adjusted p-value.

Ranks and letters come from every pair of variants in the setting, each compared seed by seed
and Holm-adjusted over all pairs: two variants share a letter unless their adjusted p < 0.05,
and variants in order of mean specialist loss stay in one rank group as long as any of them is
not separated from a later one, so two variants never have different ranks unless their own
comparison separates them. Tied ranks show as `1=`; the CSV has `rank`, `rank_tied` and
`letters`.

When the specialist set is a multiple-choice task (MMLU subjects), its scores (accuracy, the
probability on the correct answer, bits per byte of the correct answer: models/scoring.py) come
after the losses, each as mean over seeds with its paired gain over uniform (positive = better:
for bits per byte, uniform's minus the variant's) and 95% interval. A score is a mean over a few
questions, so where every run kept its per-question scores the interval resamples the questions
as well as the seeds (analysis/task_intervals.py); `<score>_interval` says which was used.

Cost is counted in FLOPs, so it does not depend on machine load: `compute_overhead` = the FLOPs
of the mixer's own forward/backward passes plus those spent before the run to produce what it
reuses (a reference model, a swarm of proxy runs: `upstream_flops`) / the FLOPs of the training
steps (mean over seeds).
Wall clock appears only within a run: `mixer_time_share` = time in mixer updates / time in
training steps.

The comparisons with uniform are analysis.comparisons's, the pairwise ones analysis.paired's;
analysis.leaderboard_tables renders the board as Markdown, HTML and a console table.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console

from analysis import cli
from analysis.comparisons import against_baseline, verdict_vs_baseline
from analysis.leaderboard_tables import by_setting, print_leaderboard, to_html, to_markdown
from analysis.paired import compact_letters, separated_pairs, tied_ranks
from analysis.results import (
    BASELINE,
    TASK_SCORES,
    completed,
    domain_labels,
    setting_columns,
    task_columns,
)
from analysis.task_intervals import against_baseline_over_questions, question_tables

LEADERBOARD_FILES = ("leaderboard.md", "leaderboard.csv", "leaderboard.html")
# The columns of leaderboard.csv after the setting's, with what each holds.
COLUMNS = {
    "rank": "1 = best mean specialist loss; variants with different ranks are separated by their "
    "own paired comparison (Holm-adjusted over every pair in the setting)",
    "rank_tied": "the rank is shared with another variant",
    "letters": "compact letter display: two variants share a letter unless their paired "
    "comparison, Holm-adjusted over every pair in the setting, separates them (p < 0.05)",
    "mixer_label": "the mixer and its non-default options, e.g. uniform[weights=natural]",
    "target_loss_mean": "held-out specialist loss, mean over seeds",
    "target_loss_std": "its standard deviation over seeds (ddof=1; empty for one seed)",
    "seeds": "completed seeds",
    "vs_uniform": "beats / ties / loses (from gain_p_holm), untested (fewer than 3 seeds "
    "paired with uniform), baseline (uniform itself), no baseline (no uniform run in the setting)",
    "gain_vs_uniform": "uniform's specialist loss minus this variant's, mean over paired seeds",
    "gain_ci_low": "its 95% t-interval, lower end (raw, not adjusted)",
    "gain_ci_high": "its 95% t-interval, upper end (raw, not adjusted)",
    "gain_p": "two-sided p-value of the paired t-test of the gain (raw)",
    "gain_p_holm": "gain_p Holm-adjusted over the setting's comparisons against uniform",
    "paired_seeds": "seeds this variant shares with uniform",
    "gain_excludes_zero": "the raw interval excludes 0 (before adjustment)",
    "generic_loss_mean": "mean held-out loss over the generic domains, mean over seeds",
    "generic_loss_std": "its standard deviation over seeds",
    "worst_domain_loss": "highest held-out loss of any generic domain, mean over seeds",
    "worst_domain": "that domain, when it is the same for every seed",
    "worst_domain_label": "its description",
    "compute_overhead": "FLOPs of the mixer's own passes and upstream work / training FLOPs",
    "mixer_time_share": "time in mixer updates / time in training steps, within each run",
    "tokens_trained": "training tokens, mean over seeds",
    "probe_tokens": "extra tokens the mixer read, mean over seeds",
    "probe_overhead": "probe_tokens / tokens_trained",
    "max_domain_epochs": "epochs of the most-repeated domain",
    "collapsed_seeds": "seeds whose run collapsed (mixers/collapse.py)",
    "flagged_seeds": "seeds whose record says whether the run collapsed",
}
# Per task score (`<task>/<score>`): these suffixes follow it in the board's columns.
TASK_STATS = {
    "_mean": "the score, mean over seeds",
    "_gain": "its gain over uniform, paired by seed (positive = better)",
    "_ci_low": "the gain's 95% interval, lower end (raw)",
    "_ci_high": "the gain's 95% interval, upper end (raw)",
    "_p": "the gain's p-value (raw)",
    "_p_holm": "_p Holm-adjusted over the setting's comparisons against uniform",
    "_interval": "how the interval and p were taken: `questions and seeds` (a two-level "
    "bootstrap, analysis/task_intervals.py) when every run kept its per-question scores, "
    "`seeds` (paired t over seeds) otherwise",
}


def _same_for_all(values: pd.Series) -> str | None:
    """The value every run has (None when they differ or one is missing)."""
    return values.iloc[0] if values.notna().all() and values.nunique() == 1 else None


def _setting_board(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The leaderboard rows of one setting's completed runs: one per mixer variant."""
    board = rows.groupby("mixer_label").agg(
        target_loss_mean=("target_loss", "mean"),
        target_loss_std=("target_loss", "std"),
        seeds=("target_loss", "size"),
        generic_loss_mean=("generic_loss", "mean"),
        generic_loss_std=("generic_loss", "std"),
        worst_domain_loss=("worst_domain_loss", "mean"),
        worst_domain=("worst_domain", _same_for_all),
        compute_overhead=("compute_overhead", "mean"),
        mixer_time_share=("mixer_time_share", "mean"),
        tokens_trained=("tokens_trained", "mean"),
        probe_tokens=("probe_tokens", "mean"),
        max_domain_epochs=("max_domain_epochs", "mean"),
        # Seeds whose run collapsed (mixers/collapse.py), of those whose record says either way.
        collapsed_seeds=("collapsed", lambda flags: int(flags.fillna(False).astype(bool).sum())),
        flagged_seeds=("collapsed", "count"),
    )
    board["worst_domain_label"] = board["worst_domain"].map(domain_labels(rows).get)
    board["probe_overhead"] = board["probe_tokens"] / board["tokens_trained"]
    # Specialist loss per seed (rows) and variant: the pairs of every comparison.
    by_seed = rows.dropna(subset=["seed"]).pivot_table(
        index="seed", columns="mixer_label", values="target_loss", aggfunc="mean"
    )
    labels = board.index.tolist()
    gains = against_baseline(-by_seed, labels)  # negated: lower loss is better
    has_baseline = BASELINE in labels
    board["vs_uniform"] = [
        verdict_vs_baseline(label, gains.loc[label], has_baseline) for label in labels
    ]
    board["gain_vs_uniform"] = gains["gain"]
    board["gain_ci_low"] = gains["ci_low"]
    board["gain_ci_high"] = gains["ci_high"]
    board["gain_p"] = gains["p"]
    board["gain_p_holm"] = gains["p_holm"]
    board["paired_seeds"] = gains["n"].fillna(0).astype(int)
    if has_baseline:  # uniform against itself: all its seeds
        board.loc[BASELINE, "paired_seeds"] = board.loc[BASELINE, "seeds"]
    board["gain_excludes_zero"] = (gains["ci_low"] > 0) | (gains["ci_high"] < 0)
    for column in task_columns(rows):
        _add_task_score(board, rows, column)
    order = board["target_loss_mean"].sort_values(kind="stable").index.tolist()
    separated = separated_pairs(by_seed, order)
    board["rank"] = pd.Series(tied_ranks(order, separated))
    board["rank_tied"] = board["rank"].duplicated(keep=False)
    board["letters"] = pd.Series(compact_letters(order, separated))
    board = board.reset_index()
    for key in keys:
        board[key] = rows[key].iloc[0]
    return board


def _add_task_score(board: pd.DataFrame, rows: pd.DataFrame, column: str) -> None:
    """The task score `column`'s mean per variant, and its gain over uniform paired by seed (and
    by question, when the runs kept their per-question scores), signed so that positive is
    better, with its p-values (raw and Holm-adjusted)."""
    score = column.split("/")[1]
    sign = TASK_SCORES[score]
    questions = question_tables(rows, score)
    if questions is not None:
        gains = against_baseline_over_questions(questions, board.index.tolist(), sign)
    else:
        by_seed = sign * rows.dropna(subset=["seed"]).pivot_table(
            index="seed", columns="mixer_label", values=column, aggfunc="mean"
        )
        gains = against_baseline(by_seed, board.index.tolist())
    board[f"{column}_interval"] = "seeds" if questions is None else "questions and seeds"
    board[f"{column}_mean"] = rows.groupby("mixer_label")[column].mean()
    board[f"{column}_gain"] = gains["gain"]
    board[f"{column}_ci_low"] = gains["ci_low"]
    board[f"{column}_ci_high"] = gains["ci_high"]
    board[f"{column}_p"] = gains["p"]
    board[f"{column}_p_holm"] = gains["p_holm"]


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (setting, mixer variant) over its completed runs, ranked within the setting
    (rank 1 = lowest mean specialist loss, ties where the paired comparisons cannot separate
    variants). Settings come from `setting_columns(runs)`."""
    keys = setting_columns(runs)
    done = completed(runs)
    if done.empty:
        return pd.DataFrame(columns=[*keys, *COLUMNS])
    boards = [_setting_board(rows, keys) for _, rows in done.groupby(keys, dropna=False)]
    scores = [f"{column}{stat}" for column in task_columns(done) for stat in TASK_STATS]
    board = pd.concat(boards, ignore_index=True)[[*keys, *COLUMNS, *scores]]
    return board.sort_values([*keys, "rank", "target_loss_mean", "mixer_label"]).reset_index(
        drop=True
    )


def problem_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that did not complete (failed, diverged, still running or killed, unreadable), and
    completed ones without a finite final specialist loss (recorded before runs said that they
    diverged): none of them is ranked."""
    finite = pd.to_numeric(runs["target_loss"], errors="coerce").abs() < float("inf")
    unscored = (runs["status"] == "completed") & ~finite
    columns = ["status", "mixer_label", "seed", "run_dir", "error"]
    problems = runs[(runs["status"] != "completed") | unscored].reindex(columns=columns)
    problems.loc[unscored[problems.index], "error"] = "the final target loss is not finite"
    return problems.sort_values(["status", "mixer_label", "run_dir"])


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
    return cli.main(
        argv,
        write_leaderboard,
        prog="python -m analysis.leaderboard",
        description=__doc__.split("\n")[0],
    )


if __name__ == "__main__":
    raise SystemExit(main())
