"""Decision accuracy across scales: does the mixers' order at a small scale hold one scale up?

As in DataDecide (Magnusson et al., 2025): for every target (specialist set) and every pair of
mixers run at both scales, the small scale "decides" which of the two is better by the mean over
seeds of one metric, and the large scale says which is better by the mean of another (or the
same). Decision accuracy is the share of pairs where the two agree (a tie in either mean counts
half). Two intervals: Clopper-Pearson's exact binomial interval over the pairs, and a bootstrap
over pairs and seeds: each resample draws, per target and scale, seeds with replacement (the same
seeds for every mixer: runs of one seed share the model's initialisation and data order), then
the pairs with replacement, and recomputes the accuracy; shown are the 2.5 and 97.5 percentiles.
A design that can say anything needs enough of both (`REQUIREMENTS`): the report lists what a
design falls short of.

Which small-scale metric predicts the large scale's ranking best is read off the table: for each
large-scale metric, the small-scale metric with the highest decision accuracy.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy import stats

from analysis.paired import MIN_SEEDS, Interval, paired_interval
from mixers.collapse import COLLAPSE_WEIGHT
from models.metric_keys import LOSS_DIRECTION, TASK_SCORES

REPETITION = "max_domain_epochs"  # how often a run saw its most repeated domain
# Metric (a summary column) -> +1 when higher is better, -1 when lower is.
METRICS = {
    "target_loss": LOSS_DIRECTION,
    **{f"mmlu/{score}": TASK_SCORES[score] for score in ("bpb", "correct_prob", "acc")},
}
RESAMPLES = 2000


def _grids(runs: pd.DataFrame, target: str, metrics: list[str]) -> dict:
    """{target: (mixers, {metric: array [seeds, mixers]})} (NaN where a run is missing)."""
    grids = {}
    for name, group in runs.groupby(target, sort=True):
        mixers = sorted(group["mixer_label"].unique())
        grids[name] = (
            mixers,
            {
                metric: group.pivot_table(index="seed", columns="mixer_label", values=metric)
                .reindex(columns=mixers)
                .to_numpy()
                for metric in metrics
            },
        )
    return grids


def _pair_scores(small: dict, large: dict, metrics: tuple[str, str], signs, picks) -> list:
    """Per (target, mixer pair) both scales ran, in a fixed order: 1 when its better mixer is
    the same at both scales, 0 when not, 0.5 for a tie in either, with the means over the seeds
    `picks[scale][target]` (row indices; repeats count). A mixer none of whose picked seeds ran
    (a design still missing runs) has no mean and orders nothing: its pairs count as ties."""
    scores = []
    for name in sorted(set(small) & set(large)):
        means = []
        for scale, grids, metric, sign in zip(
            ("small", "large"), (small, large), metrics, signs, strict=True
        ):
            mixers, values = grids[name]
            rows = values[metric][picks[scale][name]]
            ran = (~np.isnan(rows)).sum(axis=0)
            with np.errstate(invalid="ignore"):  # 0 / 0 for a mixer with none: NaN, a tie
                mean = np.nansum(rows, axis=0) / ran
            means.append(dict(zip(mixers, sign * mean, strict=True)))
        shared = sorted(set(means[0]) & set(means[1]))
        for a, b in itertools.combinations(shared, 2):
            first, second = (np.sign(m[a] - m[b]) for m in means)
            tie = first * second == 0 or np.isnan(first * second)
            scores.append(0.5 if tie else float(first == second))
    return scores


def clopper_pearson(scores: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval of the agreement rate over the pairs; a tie (0.5) counts as a
    failure for the lower bound and a success for the upper one."""
    n = len(scores)
    if n == 0:
        return np.nan, np.nan
    low_k, high_k = int(np.floor(sum(scores))), int(np.ceil(sum(scores)))
    low = stats.binomtest(low_k, n).proportion_ci(confidence, method="exact").low
    high = stats.binomtest(high_k, n).proportion_ci(confidence, method="exact").high
    return float(low), float(high)


def decision_table(
    small: pd.DataFrame,
    large: pd.DataFrame,
    target: str,
    metrics: dict[str, int] | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (small-scale metric, large-scale metric) present in both tables: the number
    of mixer pairs compared, the decision accuracy and its bootstrap interval. `small` and
    `large` are run summaries (their completed runs are used) with a `target` column."""
    metrics = metrics or METRICS
    small, large = (t[t["status"] == "completed"] for t in (small, large))
    present = [m for m in metrics if m in small and m in large]
    grids = {"small": _grids(small, target, present), "large": _grids(large, target, present)}
    every = {
        scale: {name: np.arange(len(v[1][present[0]])) for name, v in g.items()}
        for scale, g in grids.items()
    }
    rng = np.random.default_rng(seed)
    draws = [
        {
            scale: {name: rng.integers(len(rows), size=len(rows)) for name, rows in seeds.items()}
            for scale, seeds in every.items()
        }
        for _ in range(resamples)
    ]
    pairs = _agreement_pairs(grids)
    # Resampling one or two seeds gives an interval that only looks exact: none below MIN_SEEDS.
    seeds = min((len(rows) for scale in every.values() for rows in scale.values()), default=0)
    pair_draws = [rng.integers(pairs, size=pairs) for _ in range(resamples)] if pairs else []
    rows = []
    for chosen in itertools.product(present, present):
        signs = tuple(metrics[m] for m in chosen)
        scores = _pair_scores(grids["small"], grids["large"], chosen, signs, every)
        boot = [
            np.mean(np.asarray(_pair_scores(grids["small"], grids["large"], chosen, signs, d))[p])
            for d, p in zip(draws, pair_draws, strict=False)
        ]
        exact = clopper_pearson(scores)
        rows.append(
            {
                "small_metric": chosen[0],
                "large_metric": chosen[1],
                "pairs": pairs,
                "accuracy": float(np.mean(scores)) if scores else np.nan,
                "low": float(np.nanpercentile(boot, 2.5)) if seeds >= MIN_SEEDS else np.nan,
                "high": float(np.nanpercentile(boot, 97.5)) if seeds >= MIN_SEEDS else np.nan,
                "cp_low": exact[0],
                "cp_high": exact[1],
                "seeds": seeds,
            }
        )
    return pd.DataFrame(rows)


def _agreement_pairs(grids: dict) -> int:
    """How many (target, mixer pair) both scales ran."""
    count = 0
    for name in set(grids["small"]) & set(grids["large"]):
        shared = set(grids["small"][name][0]) & set(grids["large"][name][0])
        count += len(shared) * (len(shared) - 1) // 2
    return count


SUBJECT = "config.data.specialist.subject"  # the summary column of the MMLU subject swept
WHERE = "config.data.specialist.where."  # + part, topic, lang: a demo-corpus target's columns
SMALL_EXPERIMENT, LARGE_EXPERIMENT = "mmlu_specialist", "mmlu_specialist_up"
REGISTERED_SMALL, REGISTERED_LARGE = "decision_small", "decision_large"
# What a decision-accuracy design needs before it can say anything (issue review, DataDecide):
# mixer variants, pairs per target, the large scale's compute over the small one's per run, and
# the small scale's training tokens.
REQUIREMENTS = {"variants": 6, "pairs per target": 15, "compute gap": 3.0, "small tokens": 1e6}


def _with_target(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs with a `target` column: the MMLU subject, else the demo-corpus part it names (e.g.
    `bbc/tech`), else the data source (a constant when only one target ran)."""
    if SUBJECT in runs:
        return runs.assign(target=runs[SUBJECT].astype(str))
    columns = [f"{WHERE}{key}" for key in ("part", "topic", "lang") if f"{WHERE}{key}" in runs]
    if columns:
        names = runs[columns].apply(lambda row: "/".join(row.dropna().astype(str)), axis=1)
        return runs.assign(target=names)
    return runs.assign(target=runs["source"].astype(str))


def within_design(runs: pd.DataFrame, seeds: list[int]) -> pd.DataFrame:
    """A design's own runs (`reused_from` "", analysis/claims.py `with_reused`) and the runs it
    reuses from other designs at its own targets (those its own runs cover) and registered seeds
    only: the design it reuses may have run more of either. With a `target` column."""
    runs = _with_target(runs)
    own = runs["reused_from"] == ""
    ours = runs["target"].isin(runs.loc[own, "target"]) & runs["seed"].isin(seeds)
    return runs[own | ours]


def _column(runs: pd.DataFrame, name: str) -> pd.Series:
    """A summary column, or NaN (an unmet requirement) where the summary lacks it."""
    return runs[name] if name in runs else pd.Series(np.nan, index=runs.index)


def shortfalls(small: pd.DataFrame, large: pd.DataFrame) -> list[str]:
    """What the two scales' completed runs fall short of in `REQUIREMENTS` (empty: none)."""
    small, large = (t[t["status"] == "completed"] for t in (small, large))
    variants = min(
        (g["mixer_label"].nunique() for _, g in pd.concat([small, large]).groupby("target")),
        default=0,
    )
    pairs = variants * (variants - 1) // 2
    gap = _column(large, "total_flops").mean() / _column(small, "total_flops").mean()
    tokens = _column(small, "train_tokens").min()
    need = REQUIREMENTS
    found = {
        "variants": (variants, f"{variants} mixer variants per target (need {need['variants']})"),
        "pairs per target": (pairs, f"{pairs} pairs per target (need {need['pairs per target']})"),
        "compute gap": (gap, f"a {gap:.2f}x compute gap (need {need['compute gap']:.0f}x)"),
        "small tokens": (
            tokens,
            f"{tokens:,.0f} small-scale tokens (need {need['small tokens']:,.0f})",
        ),
    }
    return [text for key, (value, text) in found.items() if not value >= need[key]]


def gains_table(runs: pd.DataFrame, baseline: str = "uniform") -> pd.DataFrame:
    """Per subject and mixer: its paired gain over `baseline` in every metric (positive: better;
    a loss gain is the baseline's loss minus the mixer's), mean [95 % t-interval] over the seeds
    both ran. Does the mixture that lowers the specialist loss also raise the task's scores?"""
    done = runs[runs["status"] == "completed"]
    columns = [m for m in METRICS if m in done]
    rows = []
    for (target, mixer), group in done.groupby(["target", "mixer_label"], sort=True):
        base = done[(done["target"] == target) & (done["mixer_label"] == baseline)]
        if mixer == baseline or base.empty:
            continue
        row = {"subject": target, "mixer": mixer}
        for metric in columns:
            gain = METRICS[metric] * (
                group.set_index("seed")[metric] - base.set_index("seed")[metric]
            )
            interval = paired_interval(gain.dropna().to_numpy())
            row[metric] = _gain_cell(interval)
        rows.append(row)
    return pd.DataFrame(rows)


def _gain_cell(interval: Interval) -> str:
    if np.isnan(interval.low):
        return f"{interval.mean:+.4f} ({interval.n} seed(s))"
    return f"{interval.mean:+.4f} [{interval.low:+.4f}, {interval.high:+.4f}]"


def _cell(mean: float, low: float, high: float) -> str:
    if np.isnan(mean):
        return "–"
    return f"{mean:.2f}" if np.isnan(low) else f"{mean:.2f} [{low:.2f}, {high:.2f}]"


def missing_runs(small: pd.DataFrame, large: pd.DataFrame, seeds: list[int]) -> tuple[int, int]:
    """(missing, registered): of the runs a design needs for its verdict (both scales x every
    target and mixer either scale ran x the registered seeds), how many have not completed."""
    done = {
        (scale, *key)
        for scale, runs in (("small", small), ("large", large))
        for key in runs.loc[
            runs["status"] == "completed", ["target", "mixer_label", "seed"]
        ].itertuples(index=False, name=None)
    }
    both = pd.concat([small, large])
    needed = set(
        itertools.product(
            ("small", "large"), set(both["target"]), set(both["mixer_label"]), set(seeds)
        )
    )
    return len(needed - done), len(needed)


def _verdict(row: pd.Series) -> str:
    """The registered verdict on a decision-accuracy row: is its exact interval above chance?"""
    return f"{'above' if row['cp_low'] > 0.5 else 'not above'} 0.5"


def registered_outcome(small: pd.DataFrame, large: pd.DataFrame, seeds: list[int]) -> tuple:
    """The registered design in a few words, for the README summary: ("holds" or "not
    separated", its figures) once every registered run has completed and the design meets
    `REQUIREMENTS`; ("pending", how many runs are in) or ("short", what it lacks) before."""
    small, large = _with_target(small), _with_target(large)
    missing, needed = missing_runs(small, large, seeds)
    if missing:
        return "pending", f"{needed - missing} of {needed} runs in"
    if lacking := shortfalls(small, large):
        return "short", "; ".join(lacking)
    row = decision_table(small, large, "target", {"target_loss": LOSS_DIRECTION}).iloc[0]
    figures = (
        f"specialist-loss decision accuracy {row['accuracy']:.2f} [{row['cp_low']:.2f}, "
        f"{row['cp_high']:.2f}] over {row['pairs']} pairs, {_verdict(row)}"
    )
    return ("holds" if row["cp_low"] > 0.5 else "not separated"), figures


def _diagnostic_lines(small: pd.DataFrame, large: pd.DataFrame, shown: list[str]) -> list[str]:
    """What the means table's diagnostic columns say. A larger scale can reorder mixers for a
    reason other than model size: it trains on more tokens of the same domains, so a mixer that
    concentrates its weight repeats them more, and may collapse onto one."""
    lines = []
    if REPETITION in shown:
        most = {
            scale: runs.loc[runs["status"] == "completed", REPETITION].max()
            for scale, runs in (("small", small), ("large", large))
        }
        lines += [
            f"{REPETITION}: the epochs of a run's most repeated domain, at most "
            f"{most['small']:.1f} at the small scale and {most['large']:.1f} at the large one. "
            "The scales differ in tokens per domain as well as in model size, so an order that "
            "changes between them may come from repeated data rather than from the model.",
            "",
        ]
    if "collapsed" in shown:
        lines += [
            f"collapsed: the seeds whose time-averaged weights put more than {COLLAPSE_WEIGHT} "
            "on a domain they did not start on (mixers/collapse.py); the accuracy counts these "
            "runs as they came out.",
            "",
        ]
    return lines


def decision_section(
    small: pd.DataFrame | None,
    large: pd.DataFrame | None,
    reg: dict | None = None,
    notes: list[str] | None = None,
) -> list[str]:
    """The findings report's section: per-scale means and the decision-accuracy table, for the
    registered design (`decision_small`, `decision_large`, with `reg` its registration; `notes`:
    what its runs reuse and whether they were made under it) or the earlier MMLU sweeps."""
    registered = reg is not None
    names = (
        (REGISTERED_SMALL, REGISTERED_LARGE) if registered else (SMALL_EXPERIMENT, LARGE_EXPERIMENT)
    )
    title = (
        "## Registered: decision accuracy across scales"
        if registered
        else "## Decision accuracy across scales (MMLU subjects)"
    )
    lines = [title, ""]
    if registered:
        lines += [
            f"Registered in conf/experiment/{names[0]}.yaml and {names[1]}.yaml before their "
            "runs: six mixer variants on two targets, the tiny GPT on 1M tokens against "
            f"tiny_d160 on 2.5M tokens (3.6x the compute), seeds {', '.join(map(str, reg['seeds']))}"
            "; the verdict is whether the specialist loss's decision accuracy has a "
            "Clopper-Pearson interval above 0.5.",
            "",
            *(notes or []),
        ]
    missing = [
        f"`make findings EXP={name}`"
        for name, runs in zip(names, (small, large), strict=True)
        if runs is None
    ]
    if missing:
        return [*lines, f"Not run yet: {' and '.join(missing)}.", ""]
    small, large = _with_target(small), _with_target(large)
    lacking = shortfalls(small, large)
    if lacking:
        lines += [
            "**This design cannot support a verdict either way**: it has "
            + "; ".join(lacking)
            + ". Read the tables as a demonstration.",
            "",
        ]
    columns = [m for m in METRICS if m in small and m in large]
    shown = [c for c in (REPETITION, "collapsed") if c in small and c in large]
    repetition = [c for c in shown if c == REPETITION]
    means = []
    for scale, runs in (("small", small), ("large", large)):
        done = runs[runs["status"] == "completed"]
        grouped = done.groupby(["target", "model", "mixer_label"], sort=True)[columns + repetition]
        table = grouped.mean().round(4).round({REPETITION: 1}).reset_index()
        table = table.rename(columns={"target": "subject"})
        table.insert(0, "scale", scale)
        if "collapsed" in shown:
            flags = done["collapsed"].fillna(False).astype(bool)
            collapsed = flags.groupby([done["target"], done["model"], done["mixer_label"]]).sum()
            table.insert(len(table.columns), "collapsed", collapsed.to_numpy())
        table.insert(len(table.columns), "seeds", grouped.size().to_numpy())
        means.append(table)
    budget = {
        scale: runs.loc[runs["status"] == "completed", "total_flops"].sum()
        for scale, runs in (("small", small), ("large", large))
    }
    table = decision_table(small, large, "target")
    grid = table.assign(cell=[_cell(*v) for v in table[["accuracy", "low", "high"]].to_numpy()])
    grid = grid.pivot(index="small_metric", columns="large_metric", values="cell")
    grid = grid.reindex(index=columns, columns=columns).reset_index()
    best = [
        f"{metric}: {rows.loc[rows['accuracy'].idxmax(), 'small_metric']} "
        f"({rows['accuracy'].max():.2f})"
        for metric, rows in table.groupby("large_metric", sort=False)
        if rows["accuracy"].notna().any()
    ]
    loss = table[
        (table["small_metric"] == "target_loss") & (table["large_metric"] == "target_loss")
    ]
    exact = (
        f"On the specialist loss at both scales: {_cell(*loss[['accuracy', 'cp_low', 'cp_high']].iloc[0])} "
        "(Clopper-Pearson over the pairs)"
        if len(loss)
        else "No specialist loss at both scales"
    )
    not_in, needed = missing_runs(small, large, reg["seeds"]) if registered else (0, 0)
    if not_in:
        exact += (
            f"; the registered verdict is pending: {not_in} of the {needed} runs it needs "
            "(every target, mixer and registered seed at both scales) have not completed"
        )
    elif registered and len(loss) and not lacking:
        exact += f": {_verdict(loss.iloc[0])}, the registered verdict"
    lines += [
        f"The same mixers, targets and seeds at two model scales (`{names[0]}`, `{names[1]}`). "
        f"Compute: {budget['small'] / 1e15:.1f} PFLOP at the small scale, "
        f"{budget['large'] / 1e15:.1f} PFLOP at the large one (training and mixer passes of the "
        "completed runs). Means over seeds (losses and bits per byte: lower is better; accuracy "
        "and the probability of the correct answer: higher is better):",
        "",
        pd.concat(means, ignore_index=True).to_markdown(index=False, disable_numparse=True),
        "",
        *_diagnostic_lines(small, large, shown),
        "Gain over uniform at each scale (positive: better; paired by seed, mean [95 % "
        "t-interval], uncorrected): does a lower specialist loss come with a better score on "
        "the task?",
        "",
    ]
    for scale, runs in (("small", small), ("large", large)):
        gains = gains_table(runs)
        if len(gains):
            lines += [
                f"*{scale} scale*",
                "",
                gains.to_markdown(index=False, disable_numparse=True),
                "",
            ]
    lines += [
        f"Decision accuracy over {int(table['pairs'].max()) if len(table) else 0} "
        "(target, mixer pair)s: the share ordered alike by a small-scale metric (rows) and a "
        "large-scale one (columns), with a 95 % bootstrap interval over pairs and seeds "
        "(analysis/decision.py; none with fewer than "
        f"{MIN_SEEDS} seeds: this table has {int(table['seeds'].min()) if len(table) else 0}). "
        "0.5 is what a coin would reach.",
        "",
        grid.rename(columns={"small_metric": "small \\ large"}).to_markdown(
            index=False, disable_numparse=True
        ),
        "",
        f"{exact}. Best small-scale predictor of each large-scale metric: " + "; ".join(best) + ".",
        "",
    ]
    return lines
