"""Registered claims: verdicts only from the registered cell and seeds, Holm within a family by
hand, a changed registration shown, and sign reversals that an EMA cannot shrink by
construction."""

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from scipy import stats

from analysis.claims import (
    claim_section,
    family_table,
    measures_lines,
    registered_experiments,
    registration,
    split_design,
    summary_lines,
    verdict,
    with_reused,
)
from analysis.summaries import registration_digest, sign_reversals
from experiments.results import TRAJECTORY_FILE

UNIFORM = np.array([6.0, 6.1, 6.2, 6.05, 6.15])
DIFFS = {  # uniform - mixer, per seed
    "good": np.array([0.30, 0.28, 0.33, 0.31, 0.29]),
    "noisy": np.array([0.2, -0.15, 0.1, -0.05, 0.02]),
    "bad": -np.array([0.2, 0.22, 0.19, 0.21, 0.2]),
}
REGISTRATION = {
    "registered": "2026-12-07",
    "claim": "good beats uniform",
    "seeds": [0, 1, 2, 3, 4],
    "cell": {"tokens_per_domain": 10_000},
    "families": {"vs_uniform": {"comparisons": [f"{m} > uniform" for m in DIFFS]}},
}


def runs(cap: int = 10_000, seeds=range(5), registered: str = "") -> pd.DataFrame:
    losses = {"uniform": UNIFORM, **{m: UNIFORM - d for m, d in DIFFS.items()}}
    return pd.DataFrame(
        [
            {
                "mixer_label": label,
                "seed": seed,
                "status": "completed",
                "tokens_per_domain": cap,
                "target_loss": values[seed % len(values)],
                "collapsed": False,
                "registration": registered,
            }
            for label, values in losses.items()
            for seed in seeds
        ]
    )


def test_gains_p_values_and_holm_follow_their_definitions():
    rows = family_table(runs(), [f"{m} > uniform" for m in DIFFS], "target_loss")
    table = rows.set_index("comparison")
    raw = {m: stats.ttest_1samp(d, 0).pvalue for m, d in DIFFS.items()}
    order = sorted(raw, key=raw.get)  # Holm by hand: 3, 2, 1 times the sorted p's, running max
    expected, running = {}, 0.0
    for rank, label in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * raw[label]))
        expected[label] = running
    for label, d in DIFFS.items():
        row = table.loc[f"{label} > uniform"]
        assert row["mean"] == pytest.approx(d.mean())
        assert row["p"] == pytest.approx(raw[label])
        assert row["p_holm"] == pytest.approx(expected[label])
    assert [verdict(row, 5) for _, row in rows.iterrows()] == [
        "good beats uniform",
        "not separated",
        "uniform beats bad",
    ]


def test_holm_can_undo_a_raw_verdict():
    """A comparison whose raw p is under 0.05 but whose family makes its adjusted p exceed it
    gets no verdict: the family matters."""
    diffs = np.array([0.05, 0.11, 0.02, 0.09, 0.03])  # raw p about 0.03
    assert stats.ttest_1samp(diffs, 0).pvalue < 0.05
    table = runs()
    table.loc[table["mixer_label"] == "good", "target_loss"] = UNIFORM - diffs
    alone = family_table(table, ["good > uniform"], "target_loss").iloc[0]
    with_family = family_table(table, ["noisy > uniform", "good > uniform"], "target_loss")
    assert verdict(alone, 5) == "good beats uniform"
    assert verdict(with_family.iloc[1], 5) == "not separated"


def test_only_the_registered_cell_and_seeds_give_verdicts():
    inside = runs(seeds=range(5))
    extra = pd.concat([runs(cap=40_000), runs(seeds=[5, 6])], ignore_index=True)
    design, exploratory = split_design(pd.concat([inside, extra]), REGISTRATION)
    assert len(design) == len(inside) and len(exploratory) == len(extra)
    assert set(exploratory["seed"]) | set(exploratory["tokens_per_domain"]) >= {5, 6, 40_000}


def test_a_verdict_waits_for_every_registered_seed():
    table = family_table(runs(seeds=range(4)), ["good > uniform"], "target_loss")
    assert verdict(table.iloc[0], 5) == "pending (4 of 5 seeds)"


def test_a_registration_changed_after_its_runs_shows():
    digest = registration_digest(REGISTRATION)
    same = claim_section("x", REGISTRATION, runs(registered=digest))
    assert not any("changed" in line for line in same)
    moved = {**REGISTRATION, "cell": {"tokens_per_domain": 40_000}}
    changed = claim_section("x", moved, runs(registered=digest))
    assert any("The registration changed after runs existed" in line for line in changed)


def write_design(conf_dir, name: str, reg: dict) -> None:
    OmegaConf.save(OmegaConf.create({"registration": reg}), conf_dir / f"{name}.yaml")


def test_a_design_reuses_only_the_runs_it_names_and_checks_them_against_their_own_design(
    tmp_path,
):
    """`reuses` takes the named mixers' runs of another registered design, which were made
    under that design's registration: not a changed registration, unless theirs changed."""
    write_design(tmp_path, "earlier", REGISTRATION)
    later = {
        **REGISTRATION,
        "claim": "good, reused, beats uniform",
        "reuses": {"earlier": ["uniform"]},
    }
    write_design(tmp_path, "later", later)
    later = registration("later", tmp_path)
    earlier_runs = runs(registered=registration_digest(registration("earlier", tmp_path)))
    own = runs(registered=registration_digest(later))
    own = own[own["mixer_label"] != "uniform"]
    both = with_reused(own, later, {"earlier": earlier_runs}.get)
    assert sorted(both.loc[both["reused_from"] == "earlier", "mixer_label"].unique()) == ["uniform"]
    assert len(both) == len(own) + 5
    section = claim_section("later", later, both, tmp_path)
    assert any(
        "Reused from `experiment=earlier`" in line and "5 run(s)" in line for line in section
    )
    assert not any("changed" in line for line in section)
    assert "| good > uniform | 5 |" in "\n".join(section)
    write_design(tmp_path, "earlier", {**REGISTRATION, "seeds": [0, 1, 2]})
    section = claim_section("later", later, both, tmp_path)
    assert any(
        "The registration changed after runs existed**: 5 run(s)" in line for line in section
    )


def test_the_readme_summary_groups_verdicts_in_four_lines_however_many_designs(tmp_path):
    """Holds, reversed, not separated, then pending and not run: a line each, with seeds and
    intervals beside every comparison that one side wins."""
    for name in ("first", "second", "partial", "unrun"):
        write_design(tmp_path, name, REGISTRATION)
    digest = registration_digest(registration("first", tmp_path))
    summaries = {
        "first": runs(registered=digest),
        "second": runs(registered=digest),
        "partial": runs(seeds=range(3), registered=digest),
    }
    lines = summary_lines(summaries.get, tmp_path)
    assert len(lines) == 4
    holds, reversed_, apart, rest = lines
    assert holds.startswith("- Holds: `first` (seeds 0, 1, 2, 3, 4): good > uniform +0.302 [")
    assert "| `second` (seeds 0, 1, 2, 3, 4): good > uniform" in holds
    assert "bad" not in holds and "noisy" not in holds
    assert reversed_.startswith("- Reversed (the other side wins): `first` (seeds 0, 1, 2, 3, 4)")
    assert "bad > uniform -0.204 [" in reversed_
    assert apart == "- Not separated: `first`: noisy > uniform | `second`: noisy > uniform."
    assert rest.startswith(
        "- Pending or elsewhere: `partial` (3 of 5 seeds in); registered, not run yet: "
    )
    assert "`unrun`" in rest


def test_a_family_s_verdicts_reach_the_summary_once_its_own_seeds_are_in(tmp_path):
    """Holm is within a family, so a target whose seeds are all in has final verdicts while
    another target of the same design waits; each names its target."""
    families = {t: {"where": {"target": t}, "comparisons": ["good > uniform"]} for t in "ab"}
    write_design(tmp_path, "targets", {**REGISTRATION, "cell": {}, "families": families})
    digest = registration_digest(registration("targets", tmp_path))
    done, waiting = runs(registered=digest), runs(seeds=range(2), registered=digest)
    both = pd.concat([done.assign(target="a"), waiting.assign(target="b")], ignore_index=True)
    holds, rest = summary_lines({"targets": both}.get, tmp_path)
    assert holds.startswith("- Holds: `targets` (seeds 0, 1, 2, 3, 4): good > uniform on a +0.302")
    assert "on b" not in holds
    assert rest.startswith("- Pending or elsewhere: `targets` (2 of 5 seeds in for 1 of its 2 ")


def test_runs_that_repeat_another_design_s_computation_are_named():
    """The same config and seed reproduce a run exactly: a design whose runs equal another's
    to the last digit adds no independent evidence, and the report says so."""
    mine = runs()
    earlier = runs().assign(target_loss=lambda d: d.target_loss.where(d.mixer_label != "good", 0))
    lines = claim_section("x", {**REGISTRATION, "cell": {}}, mine, elsewhere={"earlier": earlier})
    note = next(line for line in lines if "over again" in line)
    assert note.startswith("15 of its 20 own run(s) (bad, noisy, uniform) are `earlier`'s runs")
    other = runs().assign(target_loss=lambda d: d.target_loss + 1e-12)
    lines = claim_section("x", {**REGISTRATION, "cell": {}}, mine, elsewhere={"other": other})
    assert not any("over again" in line for line in lines)


def test_reusing_an_unregistered_experiment_is_an_error_naming_it(tmp_path):
    write_design(tmp_path, "later", {**REGISTRATION, "reuses": {"nowhere": ["uniform"]}})
    with pytest.raises(ValueError, match="reuses names 'nowhere'"):
        registration("later", tmp_path)


def test_each_mixer_s_compute_is_shown_against_uniform_s():
    table = runs().assign(train_flops=100.0, mixer_flops=0.0, upstream_flops=0.0)
    table.loc[table["mixer_label"] == "good", "mixer_flops"] = 50.0
    table.loc[table["mixer_label"] == "bad", "upstream_flops"] = 4.0
    cells = [line.strip("| ").split(" | ") for line in measures_lines(table)[2:] if line]
    compute = {row[0]: row[3] for row in cells}
    assert (compute["good"], compute["bad"], compute["uniform"]) == ("1.500", "1.040", "1.000")


def test_the_digest_reads_the_same_from_yaml_and_from_a_summary():
    """A CSV turns 10000 into 10000.0 and lists into JSON strings; the fingerprint must not
    change with it."""
    flat = {
        "registered": "2026-12-07",
        "claim": "good beats uniform",
        "seeds": "[0, 1, 2, 3, 4]",
        "cell.tokens_per_domain": 10000.0,
        "families.vs_uniform.comparisons": '["good > uniform", "noisy > uniform", "bad > uniform"]',
    }
    assert registration_digest(flat) == registration_digest(REGISTRATION)


def test_every_registered_experiment_declares_a_complete_design():
    experiments = registered_experiments()
    assert "claim_token_limited" in experiments and "bounded_defaults" in experiments
    for experiment in experiments:
        reg = registration(experiment)
        assert reg["seeds"] and reg["claim"] and reg["families"]
        assert set(reg["reuses"]) <= set(experiments)


def trajectory(tmp_path, rows) -> str:
    names = [f"d{i}" for i in range(len(rows[0]))]
    pd.DataFrame(rows, columns=names).to_csv(tmp_path / TRAJECTORY_FILE, index=False)
    return str(tmp_path)


def test_sign_reversals_count_flips_of_each_weight_direction(tmp_path):
    # Steps of d0: +, -, +  (two flips of two pairs); d1: -, +, - (two of two); d2 never moves.
    rows = [[0.3, 0.3, 0.4], [0.4, 0.2, 0.4], [0.35, 0.25, 0.4], [0.45, 0.15, 0.4]]
    assert sign_reversals(trajectory(tmp_path, rows)) == pytest.approx(1.0)
    steady = [[0.3, 0.3, 0.4], [0.4, 0.2, 0.4], [0.45, 0.15, 0.4], [0.5, 0.1, 0.4]]
    assert sign_reversals(trajectory(tmp_path, steady)) == 0.0


def test_an_ema_that_only_shrinks_steps_keeps_the_sign_reversals(tmp_path):
    """The EMA's steps are beta times the raw ones: the L1 oscillation halves at beta = 0.5 by
    construction, the sign reversals do not move."""
    raw = np.array([[0.3, 0.7], [0.5, 0.5], [0.2, 0.8], [0.6, 0.4]])
    ema = raw[0] + 0.5 * (raw - raw[0])
    assert sign_reversals(trajectory(tmp_path, raw.tolist())) == sign_reversals(
        trajectory(tmp_path, ema.tolist())
    )


def test_the_readme_summary_is_the_one_generated_from_the_committed_summaries():
    """No hand-typed figure: the README's findings lines are what analysis.findings writes."""
    from analysis.claims import summary_lines, with_summary
    from analysis.findings import README, load

    readme = README.read_text()
    assert with_summary(readme, summary_lines(load)) == readme


def test_a_design_with_a_family_per_target_shows_each_target_s_mixers_apart():
    """The mixer table (loss, seeds, compute) of a family with a `where` holds only its runs:
    a mean over two targets' losses would describe neither."""
    both = pd.concat(
        [
            runs().assign(target="a"),
            runs().assign(target="b", target_loss=lambda d: d.target_loss + 1),
        ],
        ignore_index=True,
    )
    comparisons = ["good > uniform"]
    reg = {
        **REGISTRATION,
        "cell": {},
        "families": {t: {"where": {"target": t}, "comparisons": comparisons} for t in "ab"},
    }
    lines = claim_section("x", reg, both)
    tables = [i for i, line in enumerate(lines) if line.startswith("| mixer |")]
    assert len(tables) == 2  # one per target, none over both
    for start, target in zip(tables, "ab", strict=True):
        row = next(line for line in lines[start:] if line.startswith("| uniform |"))
        mean = both[(both.target == target) & (both.mixer_label == "uniform")].target_loss.mean()
        assert row.split(" | ")[1:3] == ["5", f"{mean:.3f}"]
