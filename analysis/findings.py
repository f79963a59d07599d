"""The findings report: the DGA paper's claims tested at CPU scale, rendered from committed data.

    python -m analysis.findings            # docs/findings.md from analysis/findings/*.csv

Every experiment's runs are summarised into `analysis/findings/<experiment>.csv` (one row per run,
`python -m analysis.summaries`); this module reads only those files, so the report is rebuilt
byte for byte from what is committed, and names the experiments not yet run.

A claim is a comparison of two mixers in one setting: `better` should reach a lower held-out
specialist loss than `worse`. Its verdict follows the paired 95 % interval of worse - better
over seeds (analysis/paired.py): **reproduced** when the interval lies above 0, **not
reproduced** when it lies below 0, and **inconclusive at this scale** when it contains 0 or
there are fewer than 3 paired seeds. An interval that contains 0 is never "reproduced".
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.paired import MIN_SEEDS, Interval, compare

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "analysis" / "findings"
REPORT = ROOT / "docs" / "findings.md"

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
    # Which runs of the experiment the verdict is read from: {summary column: value}.
    where: dict


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
        "DGA with the EMA (beta = 0.5) does at least as well as plain DGA, whose weights oscillate.",
        "stability",
        better="dga[beta=0.5]",
        worse="dga",
        where={},
    ),
    Claim(
        "Overhead",
        "DGA's overhead is minimal compared with pre-training: at equal total compute it still "
        "beats uniform trained on the extra tokens.",
        "overhead",
        better="dga",
        worse="uniform",
        where={},
    ),
]


def load(experiment: str, data_dir: Path = DATA_DIR) -> pd.DataFrame | None:
    path = data_dir / f"{experiment}.csv"
    return pd.read_csv(path) if path.exists() else None


def _completed(runs: pd.DataFrame, where: dict) -> pd.DataFrame:
    runs = runs[runs["status"] == "completed"]
    for column, value in where.items():
        runs = runs[runs[column] == value]
    return runs


def claim_interval(runs: pd.DataFrame, claim: Claim) -> Interval:
    runs = _completed(runs, claim.where)
    by_seed = runs.pivot_table(index="seed", columns="mixer_label", values="target_loss")
    return compare(by_seed.get(claim.worse), by_seed.get(claim.better))


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
    rows = []
    done = runs[runs["status"] == "completed"]
    for (vocab, tokens), setting in done.groupby(["config.data.vocab_size", "train_tokens"]):
        by_seed = setting.pivot_table(index="seed", columns="mixer_label", values="target_loss")
        for label in [c for c in by_seed.columns if c != "uniform"]:
            interval = compare(by_seed.get("uniform"), by_seed[label])
            gains = (by_seed["uniform"] - by_seed[label]).dropna()
            spread = gains.std(ddof=1) if len(gains) > 1 else math.nan
            rows.append(
                {
                    "vocabulary": f"{int(vocab):,}",
                    "training tokens": f"{int(tokens):,}",
                    "mixer": label,
                    "gain vs uniform [95% CI]": _interval_text(interval),
                    "seed sd of gain": "–" if math.isnan(spread) else f"{spread:.4f}",
                    "|gain| / sd": "–" if not spread > 0 else f"{abs(interval.mean) / spread:.1f}",
                    "uniform loss": f"{by_seed['uniform'].mean():.3f}",
                }
            )
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
    ]
    return lines


def claim_section(claim: Claim, runs: pd.DataFrame | None) -> list[str]:
    lines = [f"## {claim.title}", "", f"*Claim.* {claim.statement}", ""]
    if runs is None:
        return [*lines, f"Not run yet: `make findings EXP={claim.experiment}`.", ""]
    interval = claim_interval(runs, claim)
    lines += [
        f"*Verdict: **{verdict(interval)}**.* Loss of {claim.worse} minus loss of "
        f"{claim.better}: {_interval_text(interval)} ({claim.experiment}, "
        + ", ".join(f"{k}={v}" for k, v in claim.where.items())
        + ").",
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
