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
for bits per byte, uniform's minus the variant's) and 95% interval.

Cost is counted in FLOPs, so it does not depend on machine load: `compute_overhead` = the FLOPs
of the mixer's own forward/backward passes plus those spent before the run to produce what it
reuses (a reference model, a swarm of proxy runs: `upstream_flops`) / the FLOPs of the training
steps (mean over seeds).
Wall clock appears only within a run: `mixer_time_share` = time in mixer updates / time in
training steps.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from analysis import cli
from analysis.paired import (
    ALPHA,
    MIN_SEEDS,
    compact_letters,
    compare,
    holm,
    separated_pairs,
    tied_ranks,
)
from analysis.results import (
    BASELINE,
    TASK_SCORES,
    completed,
    domain_caption,
    domain_labels,
    setting_columns,
    setting_title,
    task_columns,
)

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
    "_ci_low": "the gain's 95% t-interval, lower end (raw)",
    "_ci_high": "the gain's 95% t-interval, upper end (raw)",
    "_p": "the gain's paired t-test p-value (raw)",
    "_p_holm": "_p Holm-adjusted over the setting's comparisons against uniform",
}
# Task scores shown in the tables (all of them are in the CSV).
SHOWN_SCORES = ("acc", "correct_prob", "bpb")
NO_INTERVAL = f"no interval (fewer than {MIN_SEEDS} seeds)"
NO_BASELINE = f"no {BASELINE} run in this setting: add mixer={BASELINE} to the sweep"
NO_SHARED_SEED = f"no seed shared with {BASELINE}"
MARK = "*"  # the gain's Holm-adjusted p < 0.05: it beats or loses to uniform


def _same_for_all(values: pd.Series) -> str | None:
    """The value every run has (None when they differ or one is missing)."""
    return values.iloc[0] if values.notna().all() and values.nunique() == 1 else None


def against_baseline(scores: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """Per variant of `labels`: its gain over uniform in `scores` (per seed (rows) and variant;
    higher is better), paired by seed, with its interval (`ci_low`, `ci_high`), paired seeds
    (`n`), p-value and Holm-adjusted p-value over the other variants' comparisons with uniform.
    Uniform's own row: gain 0, nothing else."""
    others = [label for label in labels if label != BASELINE]
    gains = pd.DataFrame(
        [compare(scores.get(label), scores.get(BASELINE)) for label in others],
        index=pd.Index(others, dtype=object),
        columns=["gain", "ci_low", "ci_high", "n", "p"],
    )
    gains["p_holm"] = holm(gains["p"].tolist())
    gains = gains.reindex(labels)
    if BASELINE in gains.index:
        gains.loc[BASELINE, "gain"] = 0.0
    return gains


def verdict_vs_baseline(label: str, gain: pd.Series, has_baseline: bool) -> str:
    """`vs_uniform` of one variant from its row of `against_baseline`."""
    if not has_baseline:
        return "no baseline"
    if label == BASELINE:
        return "baseline"
    if gain["n"] < MIN_SEEDS:
        return "untested"
    if gain["p_holm"] < ALPHA:
        return "beats" if gain["gain"] > 0 else "loses"
    return "ties"


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
    """The task score `column`'s mean per variant, and its gain over uniform paired by seed,
    signed so that positive is better, with its p-values (raw and Holm-adjusted)."""
    sign = TASK_SCORES[column.split("/")[1]]
    by_seed = sign * rows.dropna(subset=["seed"]).pivot_table(
        index="seed", columns="mixer_label", values=column, aggfunc="mean"
    )
    gains = against_baseline(by_seed, board.index.tolist())
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
