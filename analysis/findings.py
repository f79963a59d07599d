"""The findings report: the DGA paper's claims tested at CPU scale, rendered from committed data.

    python -m analysis.findings            # docs/findings.md from analysis/findings/*.csv

Every experiment's runs are summarised into `analysis/findings/<experiment>.csv` (one row per run,
`python -m analysis.summaries`); this module reads only those files, so the report is rebuilt
byte for byte from what is committed, and names the experiments not yet run.

A claim is a comparison of two mixers: `better` should reach a lower value of a metric (the
held-out specialist loss, or for stability how much the weights oscillate) than `worse`, each in
the runs its filters select. Its verdict follows the paired 95 % interval of worse - better
over seeds (analysis/paired.py): **reproduced** when the interval lies above 0, **not
reproduced** when it lies below 0, and **inconclusive at this scale** when it contains 0 or
there are fewer than 3 paired seeds. An interval that contains 0 is never "reproduced".
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.paired import MIN_SEEDS, Interval, compare
from analysis.summaries import separation

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "analysis" / "findings"
REPORT = ROOT / "docs" / "findings.md"
VOCABULARY = "config.data.vocab_size"  # the summary column of the swept vocabulary size

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = (
    "reproduced",
    "not reproduced",
    "inconclusive at this scale",
)


def verdict(interval: Interval) -> str:
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


CLAIMS = [
    Claim(
        "Token-limited generic set",
        "With few tokens per domain, importance sampling repeats the domains it favours and "
        "overfits; DGA does better than importance sampling.",
        "token_limited",
        better="dga",
        worse="importance",
        where={"tokens_per_domain": 10_000},
    ),
    Claim(
        "Fine granularity",
        "With many fine domains and few specialist examples, DGA with distribution reweighting "
        "does better than importance sampling, at a cost flat in the number of domains.",
        "fine_grained",
        better="dga_dr",
        worse="importance",
        where={"num_domains": 256},
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
    ),
]


def load(experiment: str, data_dir: Path = DATA_DIR) -> pd.DataFrame | None:
    path = data_dir / f"{experiment}.csv"
    return pd.read_csv(path) if path.exists() else None


def _by_seed(runs: pd.DataFrame, label: str, where: dict, metric: str) -> pd.Series | None:
    """`metric` per seed of the completed runs of `label` that match `where`."""
    runs = runs[(runs["status"] == "completed") & (runs["mixer_label"] == label)]
    for column, value in where.items():
        if column not in runs:
            return None
        runs = runs[runs[column] == value]
    return runs.groupby("seed")[metric].mean() if len(runs) else None


def claim_interval(runs: pd.DataFrame, claim: Claim) -> Interval:
    worse = _by_seed(runs, claim.worse, {**claim.where, **claim.worse_where}, claim.metric)
    better = _by_seed(runs, claim.better, {**claim.where, **claim.better_where}, claim.metric)
    return compare(worse, better)


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


def regime_section(runs: pd.DataFrame | None) -> list[str]:
    lines = ["## Which CPU setting separates the mixers (`experiment=regime`)", ""]
    if runs is None:
        return [*lines, "Not run yet: `make findings EXP=regime`.", ""]
    table = separation(runs, [VOCABULARY, "train_tokens"])
    rows = [
        {
            "vocabulary": f"{int(row[VOCABULARY]):,}",
            "training tokens": f"{int(row['train_tokens']):,}",
            "mixer": row["mixer_label"],
            "gain vs uniform [95% CI]": _interval_text(
                Interval(row["gain"], row["gain_ci_low"], row["gain_ci_high"], row["seeds"])
            ),
            "seed sd of gain": "–" if math.isnan(row["seed_std"]) else f"{row['seed_std']:.4f}",
            "ratio gain / sd": "–" if math.isnan(row["ratio"]) else f"{row['ratio']:.1f}",
            "uniform loss": f"{row['baseline_loss']:.3f}",
        }
        for _, row in table.iterrows()
    ]
    separated = [
        f"{r['mixer']} at vocabulary {r['vocabulary']}, {r['training tokens']} tokens"
        for r, low, high in zip(rows, table["gain_ci_low"], table["gain_ci_high"], strict=True)
        if low > 0 or high < 0
    ]
    lines += [
        "The demo corpus (k = 16, 4 coarse clusters, BBC tech as the specialist set), tiny GPT, "
        "three seeds per mixer. Gain: uniform's held-out specialist loss minus the mixer's, "
        "paired by seed, with its 95 % t-interval. The ratio |gain| / (seed standard deviation "
        "of the paired gains) says how many seeds a setting needs to tell a mixer from uniform: "
        "with 3 seeds, an interval excludes 0 only when the ratio exceeds about 2.5 "
        "(t(0.975, 2) / sqrt(3)).",
        "",
        _table(pd.DataFrame(rows)),
        "",
        "Settings where three seeds separate a mixer from uniform (its interval excludes 0): "
        + ("; ".join(separated) or "none")
        + ".",
        "",
    ]
    return lines


def claim_section(claim: Claim, runs: pd.DataFrame | None) -> list[str]:
    lines = [f"## {claim.title}", "", f"*Claim.* {claim.statement}", ""]
    if runs is None:
        return [*lines, f"Not run yet: `make findings EXP={claim.experiment}`.", ""]
    interval = claim_interval(runs, claim)

    def side(label: str, where: dict) -> str:
        filters = {**claim.where, **where}
        return label + (
            f" ({', '.join(f'{k}={v}' for k, v in filters.items())})" if filters else ""
        )

    lines += [
        f"*Verdict: **{verdict(interval)}**.* {claim.metric} of "
        f"{side(claim.worse, claim.worse_where)} minus that of "
        f"{side(claim.better, claim.better_where)}, paired by seed: "
        f"{_interval_text(interval)} (`experiment={claim.experiment}`).",
        "",
    ]
    return lines


def render(data_dir: Path = DATA_DIR) -> str:
    missing = [c.experiment for c in CLAIMS if load(c.experiment, data_dir) is None]
    parts = [
        "# Findings: the DGA paper's claims at CPU scale",
        "",
        "Generated by `python -m analysis.findings` from the committed run summaries in "
        "`analysis/findings/`; do not edit by hand. Verdicts follow the paired 95 % interval over "
        "seeds: *reproduced* only when it excludes 0 in the paper's direction, *not reproduced* "
        "when it excludes 0 the other way, *inconclusive at this scale* otherwise.",
        "",
    ]
    if missing:
        parts += [f"Experiments not run yet: {', '.join(missing)}.", ""]
    parts += regime_section(load("regime", data_dir))
    for claim in CLAIMS:
        parts += claim_section(claim, load(claim.experiment, data_dir))
    return "\n".join(parts).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.findings", description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="folder of summary CSVs")
    parser.add_argument("--out", type=Path, default=REPORT, help="report to write")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(args.data))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
