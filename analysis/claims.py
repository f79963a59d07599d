"""Registered claims: verdicts only from a design declared before its runs.

A findings experiment's config (conf/experiment/claim_*.yaml, bounded_defaults.yaml) carries a
`registration` (experiments/config.py `Registration`): the claim, the seeds, the verdict cell
(summary column -> value) and families of comparisons, each "a > b" (a better than b on the
family's metric, lower being better), paired by seed. A family's p-values are Holm-corrected
together; a comparison's verdict is taken from the adjusted p (below 0.05: the better side
*beats* the other) and only once every registered seed has completed. Runs outside the cell or
the seeds (seeds added after a look, another k) are summarised as exploratory, never as a
verdict. Every run records the registration it was made under; one that differs from the
config's current registration is reported. A design may reuse another registered design's runs
of identical config (`reuses`: experiment -> mixer labels) rather than repeat them; those runs
are checked against that design's registration.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from analysis.decision import (
    REGISTERED_LARGE,
    REGISTERED_SMALL,
    decision_section,
    registered_outcome,
    within_design,
)
from analysis.paired import ALPHA, MIN_SEEDS, compare, holm
from analysis.results import load_runs
from analysis.summaries import registration_digest, summarize, total_flops
from experiments.config import Registration

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "experiment"
# Stability measures shown for every mixer of a registered claim (run-summary columns).
SIGN_REVERSALS = "sign_reversals"


def registration(experiment: str, conf_dir: Path = CONF_DIR) -> dict | None:
    """The experiment config's registration, as plain data (None if it has none)."""
    path = conf_dir / f"{experiment}.yaml"
    if not path.exists():
        return None
    declared = OmegaConf.load(path).get("registration")
    if declared is None:
        return None
    # Through its schema, as a run records it (defaults filled in, e.g. a family's metric).
    reg = OmegaConf.to_container(OmegaConf.merge(OmegaConf.structured(Registration), declared))
    for other in reg["reuses"]:
        if registration(other, conf_dir) is None:
            raise ValueError(
                f"{path.name}: registration.reuses names {other!r}, which is not a registered "
                f"experiment (no registration in {conf_dir / (other + '.yaml')})"
            )
    return reg


def registered_experiments(conf_dir: Path = CONF_DIR) -> list[str]:
    """The experiments with a registered family of comparisons, in name order (the decision-
    accuracy design registers its seeds and claim but no family: analysis/decision.py)."""
    return [
        p.stem
        for p in sorted(conf_dir.glob("*.yaml"))
        if (reg := registration(p.stem, conf_dir)) and reg["families"]
    ]


def with_reused(runs: pd.DataFrame | None, reg: dict, load) -> pd.DataFrame | None:
    """`runs` and the runs `reg` reuses from other registered designs (`load(experiment)` gives
    a design's run summary or None), each marked with the design it came from (`reused_from`,
    "" for the design's own)."""
    frames = [] if runs is None else [runs.assign(reused_from="")]
    for other, labels in (reg.get("reuses") or {}).items():
        theirs = load(other)
        if theirs is not None:
            frames.append(theirs[theirs["mixer_label"].isin(labels)].assign(reused_from=other))
    return pd.concat(frames, ignore_index=True) if frames else None


def comparison_sides(comparison: str) -> tuple[str, str]:
    """ "a > b" -> (a, b)."""
    better, sep, worse = comparison.partition(" > ")
    if not sep or not better.strip() or not worse.strip():
        raise ValueError(f"a registered comparison reads 'a > b', got {comparison!r}")
    return better.strip(), worse.strip()


def split_design(runs: pd.DataFrame, reg: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The completed runs inside the registered cell and seeds, and every other completed run
    (exploratory)."""
    done = runs[runs["status"] == "completed"]
    inside = done["seed"].isin(reg["seeds"])
    for column, value in (reg.get("cell") or {}).items():
        inside &= done[column] == value if column in done else False
    return done[inside], done[~inside]


def _by_seed(runs: pd.DataFrame, label: str, metric: str) -> pd.Series | None:
    mine = runs[runs["mixer_label"] == label]
    return mine.groupby("seed")[metric].mean() if len(mine) and metric in mine else None


def family_table(runs: pd.DataFrame, comparisons: list[str], metric: str) -> pd.DataFrame:
    """One row per comparison "a > b": the paired gain (b - a on `metric`, positive when a is
    better), its 95 % interval, paired seeds, raw and Holm-adjusted p."""
    rows = []
    for comparison in comparisons:
        better, worse = comparison_sides(comparison)
        interval = compare(_by_seed(runs, worse, metric), _by_seed(runs, better, metric))
        rows.append({"comparison": comparison, **interval._asdict()})
    table = pd.DataFrame(rows)
    table["p_holm"] = holm(table["p"].tolist())
    return table


def verdict(row: pd.Series, seeds_registered: int) -> str:
    better, worse = comparison_sides(row["comparison"])
    if row["n"] < max(MIN_SEEDS, seeds_registered):
        return f"pending ({row['n']} of {seeds_registered} seeds)"
    if row["p_holm"] < ALPHA:
        return f"{better} beats {worse}" if row["mean"] > 0 else f"{worse} beats {better}"
    return "not separated"


def _p(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.3f}" if value >= 0.001 else "<0.001"


def _interval(row) -> str:
    if row["n"] == 0:
        return "–"
    if math.isnan(row["low"]):
        return f"{row['mean']:+.3f} (no interval)"
    return f"{row['mean']:+.3f} [{row['low']:+.3f}, {row['high']:+.3f}]"


def _where_text(family: dict) -> str:
    where = family.get("where") or {}
    return f" on {', '.join(f'{k} = {v}' for k, v in where.items())}" if where else ""


def family_runs(family: dict, runs: pd.DataFrame) -> pd.DataFrame:
    """The runs a family compares: those matching its `where` (all of them without one)."""
    for column, value in (family.get("where") or {}).items():
        runs = runs[runs[column] == value] if column in runs else runs.iloc[:0]
    return runs


def family_results(family: dict, runs: pd.DataFrame, seeds: int) -> pd.DataFrame:
    """`family_table` on the family's runs, with each comparison's verdict."""
    runs = family_runs(family, runs)
    table = family_table(runs, family["comparisons"], family.get("metric", "target_loss"))
    table["verdict"] = [verdict(row, seeds) for _, row in table.iterrows()]
    return table


def family_lines(name: str, family: dict, runs: pd.DataFrame, seeds: int) -> list[str]:
    table = family_results(family, runs, seeds)
    lines = [
        f"*Family `{name}`*{_where_text(family)} ({family.get('metric', 'target_loss')}, lower "
        f'is better; gain = b - a for "a > b", paired by seed; Holm over its {len(table)} '
        f"comparison{'s' if len(table) != 1 else ''}):",
        "",
        "| comparison | seeds | gain [95 % CI] | p | p (Holm) | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for _, row in table.iterrows():
        lines.append(
            f"| {row['comparison']} | {row['n']} | {_interval(row)} | {_p(row['p'])} "
            f"| {_p(row['p_holm'])} | {row['verdict']} |"
        )
    return [*lines, ""]


def _outcome(row: pd.Series) -> str:
    """A verdict in a word, for the summary: *holds*, *reversed* or the verdict itself."""
    better, worse = comparison_sides(row["comparison"])
    return {f"{better} beats {worse}": "holds", f"{worse} beats {better}": "reversed"}.get(
        row["verdict"], row["verdict"]
    )


README_START = "<!-- generated by python -m analysis.findings: do not edit by hand -->"
README_END = "<!-- end of the generated summary -->"


def with_summary(readme: str, lines: list[str]) -> str:
    """`readme` with the text between its summary markers replaced by `lines`."""
    start, end = readme.find(README_START), readme.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"README.md lacks the markers {README_START} ... {README_END}")
    block = "\n".join([README_START, *lines, README_END])
    return readme[:start] + block + readme[end + len(README_END) :]


def summary_lines(load, conf_dir: Path = CONF_DIR) -> list[str]:
    """The README's findings summary, four lines however many designs are registered: the
    comparisons that hold and those reversed (each with its design's seeds, paired gain and
    Holm-adjusted p), those not separated, and the designs pending or not run.
    `load(experiment)` gives an experiment's run summary or None."""
    by_outcome: dict[str, list[str]] = {"holds": [], "reversed": [], "not separated": []}
    waiting, not_run = [], []
    for experiment in registered_experiments(conf_dir):
        reg = registration(experiment, conf_dir)
        runs = with_reused(load(experiment), reg, load)
        if runs is None:
            not_run.append(f"`{experiment}`")
            continue
        design, _ = split_design(runs, reg)
        seeds = ", ".join(map(str, reg["seeds"]))
        mine: dict[str, list[str]] = {outcome: [] for outcome in by_outcome}
        pending = []  # the fewest seeds in, of each family still waiting for its seeds
        for name, family in reg["families"].items():
            table = family_results(family, design, len(reg["seeds"]))
            if any(v.startswith("pending") for v in table["verdict"]):
                pending.append(int(table["n"].min()))
                continue
            # A family's verdicts are final once its own seeds are in (Holm is within it).
            on = f" on {name}" if family.get("where") else ""
            for _, row in table.iterrows():
                outcome = _outcome(row)
                if outcome in ("holds", "reversed"):
                    figures = f" {_interval(row)}, Holm p {_p(row['p_holm'])}"
                else:
                    outcome, figures = "not separated", ""
                mine[outcome].append(f"{row['comparison']}{on}{figures}")
        if pending:
            of = len(reg["families"])
            which = f" for {len(pending)} of its {of} families" if len(pending) < of else ""
            waiting.append(
                f"`{experiment}` ({min(pending)} of {len(reg['seeds'])} seeds in{which})"
            )
        for outcome, results in mine.items():
            if results:
                by_outcome[outcome].append(
                    f"`{experiment}` (seeds {seeds}): {'; '.join(results)}"
                    if outcome != "not separated"
                    else f"`{experiment}`: {', '.join(results)}"
                )
    reg, small, large = decision_runs(load, conf_dir)
    scales = {REGISTERED_SMALL: small, REGISTERED_LARGE: large}
    not_run += [f"`{experiment}`" for experiment, runs in scales.items() if runs is None]
    if small is not None and large is not None:
        outcome, text = registered_outcome(small, large, reg["seeds"])
        design = " and ".join(f"`{experiment}`" for experiment in scales)
        if outcome in by_outcome:
            seeds = ", ".join(map(str, reg["seeds"]))
            by_outcome[outcome].append(f"{design} (seeds {seeds}): {text}")
        else:
            waiting.append(f"{design} ({text})")
    titles = {
        "holds": "Holds",
        "reversed": "Reversed (the other side wins)",
        "not separated": "Not separated",
    }
    lines = [
        f"- {titles[outcome]}: {' | '.join(results)}."
        for outcome, results in by_outcome.items()
        if results
    ]
    rest = [f"pending or elsewhere: {', '.join(waiting)}"] if waiting else []
    rest += [f"registered, not run yet: {', '.join(not_run)}"] if not_run else []
    if rest:
        text = "; ".join(rest)
        lines.append(f"- {text[0].upper()}{text[1:]}.")
    return lines


def measures_lines(runs: pd.DataFrame) -> list[str]:
    """Per mixer: its specialist loss, its compute against uniform's, collapsed seeds and how
    often its weights' update direction reversed (analysis/summaries.py `sign_reversals`)."""
    compute = total_flops(runs).groupby(runs["mixer_label"]).mean()
    base = compute.get("uniform", math.nan)
    lines = [
        "| mixer | seeds | specialist loss | compute (x uniform's) | collapsed seeds "
        "| sign reversals per update (– not recorded or no moves) |",
        "|---|---|---|---|---|---|",
    ]
    for label, mine in runs.groupby("mixer_label", sort=True):
        collapsed = mine["collapsed"].fillna(False).astype(bool).sum()
        reversals = mine[SIGN_REVERSALS].mean() if SIGN_REVERSALS in mine else math.nan
        ratio = compute[label] / base if base > 0 else math.nan  # no FLOPs recorded
        lines.append(
            f"| {label} | {len(mine)} | {mine['target_loss'].mean():.3f} "
            f"| {'–' if math.isnan(ratio) else f'{ratio:.3f}'} "
            f"| {collapsed} of {len(mine)} | "
            f"{'–' if math.isnan(reversals) else f'{reversals:.3f}'} |"
        )
    return [*lines, ""]


def _registration_note(runs: pd.DataFrame, reg: dict, conf_dir: Path) -> list[str]:
    """Says whether the runs were made under the registration their design's config holds now
    (this design's, or for a reused run the design it came from), and which runs are reused."""
    origin = runs["reused_from"] if "reused_from" in runs else pd.Series("", index=runs.index)
    current = {
        name: registration_digest(registration(name, conf_dir) if name else reg)
        for name in set(origin)
    }
    expected = origin.map(current)
    recorded = (
        runs["registration"].fillna("")
        if "registration" in runs
        else pd.Series([""] * len(runs), dtype=object)
    )
    changed = (recorded != "") & (recorded != expected)
    lines = []
    for name, reused in runs[origin != ""].groupby(origin[origin != ""], sort=True):
        labels = ", ".join(sorted(set(reused["mixer_label"])))
        lines += [
            f"Reused from `experiment={name}` (same data, model and training options): "
            f"{len(reused)} run(s) of {labels}.",
            "",
        ]
    if changed.any():
        was = sorted(set(recorded[changed]))
        lines += [
            f"**The registration changed after runs existed**: {int(changed.sum())} run(s) were "
            f"made under {', '.join(was)}, the config now holds {current['']}"
            + (" (or, for reused runs, their design's)" if len(current) > 1 else "")
            + ".",
            "",
        ]
    elif (recorded == "").any():
        lines += [
            f"{int((recorded == '').sum())} run(s) carry no registration record (made before "
            "runs recorded theirs); the design is the config's, committed before them.",
            "",
        ]
    return lines


def repeated_runs(runs: pd.DataFrame, elsewhere: dict[str, pd.DataFrame | None]) -> list[str]:
    """Says which of a design's own runs give, to the last digit, the specialist loss of
    another design's run of the same mixer and seed. A seed fixes data order, init and the
    mixer's randomness, so the same config and seed is one computation: such runs repeat that
    design's evidence, they do not replicate it."""
    own = runs[runs["reused_from"] == ""] if "reused_from" in runs else runs
    key = ["mixer_label", "seed", "target_loss"]
    lines = []
    for other, theirs in sorted(elsewhere.items()):
        if theirs is None or not {*key} <= set(theirs):
            continue
        same = own[key].merge(theirs[key].drop_duplicates(), on=key)
        if len(same):
            labels = ", ".join(sorted(set(same["mixer_label"])))
            lines += [
                f"{len(same)} of its {len(own)} own run(s) ({labels}) are `{other}`'s runs of "
                "the same mixer and seed over again, to the last digit of the specialist loss: "
                "one computation, so the verdicts they share are one piece of evidence, not a "
                "replication.",
                "",
            ]
    return lines


def claim_section(
    experiment: str,
    reg: dict,
    runs: pd.DataFrame | None,
    conf_dir: Path = CONF_DIR,
    elsewhere: dict[str, pd.DataFrame | None] | None = None,
) -> list[str]:
    """The report's section for one registered experiment (`runs`: its own and those it reuses,
    `with_reused`; `elsewhere`: the other registered designs' run summaries, `repeated_runs`)."""
    cell = ", ".join(f"{k} = {v}" for k, v in (reg.get("cell") or {}).items()) or "its setting"
    lines = [
        f"## Registered: `experiment={experiment}`",
        "",
        f"*Claim* (registered {reg['registered']}, conf/experiment/{experiment}.yaml): "
        f"{reg['claim']}",
        "",
        f"Verdict cell: {cell}; seeds {', '.join(map(str, reg['seeds']))}.",
        "",
    ]
    if runs is None:
        return [*lines, f"Not run yet: `make findings EXP={experiment}`.", ""]
    design, exploratory = split_design(runs, reg)
    lines += _registration_note(runs, reg, conf_dir)
    lines += repeated_runs(runs, elsewhere or {})
    # The mixers' measures over the runs a family compares: one table per `where` (e.g. per
    # specialist target, after its last family), and one over every run unless each family
    # has a `where`.
    families = list(reg["families"].items())
    last_of_where = {repr(family.get("where") or {}): name for name, family in families}
    for name, family in families:
        lines += family_lines(name, family, design, len(reg["seeds"]))
        last = family.get("where") and last_of_where[repr(family["where"])] == name
        if last and len(theirs := family_runs(family, design)):
            lines += measures_lines(theirs)
    if not all(family.get("where") for _, family in families):
        lines += measures_lines(design)
    if len(exploratory):
        lines += [
            f"Exploratory, not a verdict: {len(exploratory)} completed run(s) outside the "
            "registered cell or seeds are in the summary and take no part above.",
            "",
        ]
    return lines


def decision_lines(load, conf_dir: Path = CONF_DIR) -> list[str]:
    """The registered decision-accuracy design's section (analysis/decision.py): the small
    scale's own runs with those it reuses at its targets and seeds, the large scale's runs, and
    whether both were made under the registration `decision_small` holds now (`decision_large`
    inherits it). `load(experiment)` gives an experiment's run summary or None."""
    reg, small, large = decision_runs(load, conf_dir)
    notes = []
    for runs in (small, large):
        if runs is not None:
            notes += _registration_note(runs, reg, conf_dir)
    return decision_section(small, large, reg, notes)


def decision_runs(load, conf_dir: Path = CONF_DIR) -> tuple:
    """(registration, small-scale runs, large-scale runs) of the registered decision-accuracy
    design, the small scale's with the runs it reuses at its own targets and seeds; None for
    a scale not run."""
    reg = registration(REGISTERED_SMALL, conf_dir)
    small, large = load(REGISTERED_SMALL), load(REGISTERED_LARGE)
    if small is not None:
        small = within_design(with_reused(small, reg, load), reg["seeds"])
    return reg, small, large


def _data_line(runs: pd.DataFrame) -> list[str]:
    """Which data the runs trained on, from their recorded config."""
    columns = [
        c for c in ("config.data.source", "config.data.paths", "config.data.name") if c in runs
    ]
    described = sorted(
        {
            ", ".join(
                f"{c.removeprefix('config.')}={r[c]}"
                for c in columns
                if pd.notna(r[c]) and r[c] != "[]"
            )
            for _, r in runs.iterrows()
        }
    )
    return [f"Data: {'; '.join(described)}.", ""] if described else []


def render_runs(runs_dir: Path, conf_dir: Path = CONF_DIR) -> str:
    """The registered claims' sections for the sweeps under `runs_dir`, one directory per
    registered experiment and named after it (what `make claims` writes): the same verdicts as
    docs/findings.md, on the data those runs used (e.g. a user's own corpus)."""
    experiments = registered_experiments(conf_dir)
    sweeps = [e for e in experiments if (runs_dir / e).is_dir()]
    if not sweeps:
        raise FileNotFoundError(
            f"no sweep of a registered experiment ({', '.join(experiments)}) under {runs_dir}: "
            "run `make claims DATA=...` first"
        )
    parts = [
        f"# The registered claims on the runs in {runs_dir}",
        "",
        "Generated by `python -m analysis.findings --runs`. Verdicts come only from the "
        "registered designs (conf/experiment/<experiment>.yaml), Holm-adjusted within each "
        "family; runs outside a design's cell or seeds are exploratory.",
        "",
    ]

    def load(experiment: str) -> pd.DataFrame | None:
        sweep = runs_dir / experiment
        return summarize(load_runs([sweep])) if sweep.is_dir() else None

    for experiment in sweeps:
        reg, own = registration(experiment, conf_dir), load_runs([runs_dir / experiment])
        section = claim_section(experiment, reg, with_reused(summarize(own), reg, load), conf_dir)
        parts += [*section[:2], *_data_line(own), *section[2:]]
    return "\n".join(parts).rstrip() + "\n"
