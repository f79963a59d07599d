"""The earlier, unregistered findings sections: each compares two mixers on one claim of the DGA
paper, and says which way the raw paired 95 % interval of worse - better points (never a
verdict: analysis/claims.py gives those, from registered designs only).

A claim's `better` should reach a lower value of a metric than `worse`, each in the runs its
filters select. Its section has a table of every mixer variant in its experiment (mean over
seeds, paired gain over uniform where uniform ran) and a figure (`docs/findings/<experiment>.png`);
an experiment that extends a claim's along its x axis in another setting (fine granularity past
k = 64, on larger corpora) joins its table and figure, each row naming its experiment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.paired import MIN_SEEDS, Interval, compare
from analysis.plot_style import mixer_colours
from analysis.summaries import SUMMARY_DIR, read_summary

FIGURES = "findings"  # beside the report: docs/findings/<experiment>.png

# Every findings sweep runs seeds 0-2 (conf/experiment/*.yaml); a verdict over more seeds used
# seeds added after a look at these, and the report says so (see `claim_section`).
PLANNED_SEEDS = 3

# Which way an exploratory section's raw interval points: never a verdict (analysis/claims.py).
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = (
    "excludes 0 the claim's way",
    "excludes 0 against the claim",
    "contains 0",
)


def direction(interval: Interval) -> str:
    """From the interval of (loss of the mixer the paper says is worse) - (the better one's)."""
    if interval.n < MIN_SEEDS or math.isnan(interval.low):
        return INCONCLUSIVE
    if interval.low > 0:
        return REPRODUCED
    if interval.high < 0:
        return NOT_REPRODUCED
    return INCONCLUSIVE


@dataclass(frozen=True)
class Claim:
    title: str
    statement: str
    experiment: str
    better: str
    worse: str
    # Which runs of the experiment the verdict is read from: {summary column: value}, for both
    # sides, and for each side alone (e.g. the token budgets of an equal-compute comparison).
    where: dict
    metric: str = "target_loss"
    better_where: dict = field(default_factory=dict)
    worse_where: dict = field(default_factory=dict)
    # The summary column the experiment varies: its table's rows and its figure's x axis.
    x: str = "mixer_label"
    x_title: str = "mixer"
    # Experiments that extend this one along x in another setting (a larger corpus): their runs
    # join its table (a row names its experiment) and figure; `where` may pick one of them
    # ({"experiment": name}) for the verdict.
    parts: tuple[str, ...] = ()
    log2_x: bool = False

    @property
    def experiments(self) -> tuple[str, ...]:
        return (self.experiment, *self.parts)


CLAIMS = [
    Claim(
        "Token-limited generic set",
        "With few tokens per domain, importance sampling repeats the domains it favours and "
        "overfits; DGA does better than importance sampling.",
        "token_limited",
        better="dga",
        worse="importance",
        where={"tokens_per_domain": 10_000},
        x="tokens_per_domain",
        x_title="training tokens per domain (cap)",
    ),
    Claim(
        "Fine granularity",
        "With many fine domains and few specialist examples, DGA with distribution reweighting "
        "does better than importance sampling, at a cost flat in the number of domains.",
        "fine_grained",
        better="dga_dr",
        worse="importance",
        where={"experiment": "fine_grained_x8", "num_domains": 512},
        x="num_domains",
        x_title="domains (k)",
        parts=("fine_grained_x4", "fine_grained_x8"),
        log2_x=True,
    ),
    Claim(
        "The EMA stabilises DGA",
        "Plain DGA's weights oscillate; the EMA (beta = 0.5) makes them stable. Measured as the "
        "mean L1 step of the weights between updates (`weight_oscillation`).",
        "stability",
        better="dga[beta=0.5]",
        worse="dga",
        where={},
        metric="weight_oscillation",
    ),
    Claim(
        "Overhead",
        "DGA's overhead is minimal compared with pre-training: at equal total compute (uniform "
        "trained on 1.5 times the tokens, what DGA spends probing at k = 16) it still does better.",
        "overhead",
        better="dga",
        worse="uniform",
        where={},
        better_where={"train_tokens": 1_000_000},
        worse_where={"train_tokens": 1_500_000},
        x="total_flops",
        x_title="total compute (training + mixer FLOPs)",
    ),
]


def load_claim(claim: Claim, data_dir: Path = SUMMARY_DIR) -> pd.DataFrame | None:
    """The runs of the claim's experiment and its parts, each row with its `experiment`."""
    frames = [
        runs.assign(experiment=experiment)
        for experiment in claim.experiments
        if (runs := read_summary(experiment, data_dir)) is not None
    ]
    return pd.concat(frames, ignore_index=True) if frames else None


def _by_seed(runs: pd.DataFrame, label: str, where: dict, metric: str) -> pd.Series | None:
    """`metric` per seed of the completed runs of `label` that match `where`."""
    runs = runs[(runs["status"] == "completed") & (runs["mixer_label"] == label)]
    for column, value in where.items():
        if column not in runs:
            return None
        runs = runs[runs[column] == value]
    return runs.groupby("seed")[metric].mean() if len(runs) else None


def claim_interval(runs: pd.DataFrame, claim: Claim, seeds: int | None = None) -> Interval:
    """The verdict's interval, over all paired seeds or over the first `seeds` of them."""
    worse = _by_seed(runs, claim.worse, {**claim.where, **claim.worse_where}, claim.metric)
    better = _by_seed(runs, claim.better, {**claim.where, **claim.better_where}, claim.metric)
    if seeds is not None and worse is not None and better is not None:
        paired = worse.index.intersection(better.index).sort_values()[:seeds]
        worse, better = worse[paired], better[paired]
    return compare(worse, better)


def _added_seeds_text(runs: pd.DataFrame, claim: Claim, interval: Interval) -> str:
    """Discloses optional stopping: seeds added after the planned ones were looked at make the
    chance of a false verdict larger than the interval's nominal 5 %."""
    if interval.n <= PLANNED_SEEDS:
        return ""
    first = claim_interval(runs, claim, PLANNED_SEEDS)
    return (
        f" Seeds beyond the sweep's first {PLANNED_SEEDS} were added after those gave "
        f"{_interval_text(first)} (*{direction(first)}*); a seed count chosen after a look makes "
        "a false finding likelier than the interval's nominal 5 %, so this interval is weaker "
        f"than one planned at {interval.n} seeds."
    )


def _signed(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:+.4f}"


def _interval_text(interval: Interval) -> str:
    if interval.n < MIN_SEEDS or math.isnan(interval.low):
        return f"{_signed(interval.mean)} over {interval.n} seed(s): no interval"
    return (
        f"{_signed(interval.mean)} [{_signed(interval.low)}, {_signed(interval.high)}] "
        f"over {interval.n} seeds"
    )


def _table(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, disable_numparse=True)


def _number(value: float) -> str:
    if isinstance(value, str):
        return value
    if float(value).is_integer() and abs(value) < 1e7:
        return f"{int(value):,}"
    return f"{value:.3g}"


def _x_text(x, group: pd.DataFrame, claim: Claim) -> str:
    """The x value; for a number of domains, with how many remained after small clusters were
    merged, where the summary records it (`domains`)."""
    if claim.x == "num_domains" and "domains" in group and group["domains"].notna().any():
        remained = int(group["domains"].dropna().iloc[0])
        if remained != x:
            return f"{_number(x)} ({remained:,} after merging)"
    return _number(x)


def variant_table(runs: pd.DataFrame, claim: Claim) -> pd.DataFrame:
    """Per value of the claim's x column and mixer variant: seeds, mean and seed sd of the
    claim's metric and of the specialist loss, the paired gain over uniform at the same x and,
    where the claim's `worse` mixer is not uniform, over that mixer too (columns without any
    value left out). Where a mixer spends
    compute of its own (probes), its FLOPs as a fraction of the training's."""
    done = runs[runs["status"] == "completed"]
    if "experiment" not in done:
        done = done.assign(experiment=claim.experiment)
    several = done["experiment"].nunique() > 1
    with_cost = "mixer_flops" in done and (done["mixer_flops"] > 0).any()
    rows = []
    for (x, experiment, label), group in done.groupby(
        [claim.x, "experiment", "mixer_label"], sort=True
    ):
        row = {
            claim.x_title: _x_text(x, group, claim),
            **({"experiment": experiment} if several else {}),
            "mixer": label,
            "seeds": str(len(group)),
            f"{claim.metric} (mean ± sd)": f"{group[claim.metric].mean():.4f} ± "
            + ("–" if len(group) < 2 else f"{group[claim.metric].std(ddof=1):.4f}"),
        }
        if claim.metric != "target_loss":
            row["target_loss (mean)"] = f"{group['target_loss'].mean():.4f}"
        if with_cost:
            row["mixer / training FLOPs"] = f"{(group.mixer_flops / group.train_flops).mean():.2f}"
        baselines = ["uniform"] + ([claim.worse] if claim.worse != "uniform" else [])
        for baseline in baselines:
            other = done[
                (done[claim.x] == x)
                & (done["experiment"] == experiment)
                & (done["mixer_label"] == baseline)
            ]
            gain = compare(
                other.groupby("seed")["target_loss"].mean() if len(other) else None,
                group.groupby("seed")["target_loss"].mean(),
            )
            # No gain where the baseline did not run at this x, or for the baseline itself.
            no_gain = label == baseline or not len(other)
            row[f"gain vs {baseline} [95% CI]"] = "–" if no_gain else _interval_text(gain)
        rows.append(row)
    table = pd.DataFrame(rows)
    # A gain column with no value at all (no baseline at any x of the experiment) says nothing.
    return table.loc[:, ~(table == "–").all()]


def claim_figure(runs: pd.DataFrame, claim: Claim) -> Figure:
    """The claim's metric against its x column: one dot per run, a line through each mixer
    variant's means."""
    done = runs[runs["status"] == "completed"]
    if "experiment" not in done:
        done = done.assign(experiment=claim.experiment)
    fig = Figure(figsize=(6.5, 4.2), layout="constrained", dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    colours = mixer_colours(done["mixer_label"])
    categorical = claim.x == "mixer_label"
    positions = {label: i for i, label in enumerate(sorted(done["mixer_label"].unique()))}
    for (label, experiment), group in done.groupby(["mixer_label", "experiment"], sort=True):
        # A part's runs (another setting): hollow markers, a dashed line, its name in the legend.
        part = experiment != claim.experiment
        xs = group[claim.x].map(positions) if categorical else group[claim.x]
        ax.scatter(
            xs,
            group[claim.metric],
            s=18,
            alpha=0.6,
            label=f"{label} ({experiment})" if part else label,
            **({"facecolors": "none", "edgecolors": colours[label]} if part else {}),
            **({} if part else {"color": colours[label]}),
        )
        if not categorical:
            means = group.groupby(claim.x)[claim.metric].mean()
            style = "--" if part else "-"
            ax.plot(means.index, means.to_numpy(), style, color=colours[label], linewidth=1.5)
    if categorical:
        ax.set_xticks(list(positions.values()), list(positions))
    elif claim.log2_x:
        ax.set_xscale("log", base=2)
    ax.set_xlabel(claim.x_title)
    ax.set_ylabel(claim.metric)
    ax.set_title(f"{claim.title} (experiment={claim.experiment})", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def claim_section(
    claim: Claim, runs: pd.DataFrame | None, figure_dir: Path | None = None
) -> list[str]:
    lines = [f"## {claim.title}", "", f"*Claim.* {claim.statement}", ""]
    if runs is None:
        return [*lines, f"Not run yet: `make findings EXP={claim.experiment}`.", ""]
    verdict_experiment = claim.where.get("experiment", claim.experiment)
    interval = claim_interval(runs, claim)

    def side(label: str, where: dict) -> str:
        filters = {k: v for k, v in {**claim.where, **where}.items() if k != "experiment"}
        return label + (
            f" ({', '.join(f'{k}={v}' for k, v in filters.items())})" if filters else ""
        )

    figure = f"{FIGURES}/{claim.experiment}.png"
    if figure_dir is not None:
        figure_dir.mkdir(parents=True, exist_ok=True)
        claim_figure(runs, claim).savefig(figure_dir / f"{claim.experiment}.png", metadata=PNG)
    if interval.n == 0:  # one side has no completed run yet: nothing to judge
        outcome = (
            f"*No verdict yet*: no completed seed pairs {side(claim.worse, claim.worse_where)} "
            f"with {side(claim.better, claim.better_where)}; `make findings "
            f"EXP={verdict_experiment}` completes the sweep (completed runs are skipped)."
        )
    else:
        outcome = (
            f"*Exploratory: the raw interval {direction(interval)}.* {claim.metric} of "
            f"{side(claim.worse, claim.worse_where)} minus that of "
            f"{side(claim.better, claim.better_where)}, paired by seed: "
            f"{_interval_text(interval)} (`experiment={verdict_experiment}`)."
            + _added_seeds_text(runs, claim, interval)
        )
    lines += [
        outcome,
        "",
        _table(variant_table(runs, claim)),
        "",
        f"![{claim.title}]({figure})",
        "",
    ]
    return lines


# No creation date or software version in the PNGs: a re-render changes no byte.
PNG = {"Software": None}
