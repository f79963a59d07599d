"""Decision accuracy across scales, on hand-made summaries."""

import warnings

import pytest

from analysis.decision import decision_table, gains_table
from tests.decision_summaries import LARGE, SMALL, summary


def test_the_share_of_mixer_pairs_ordered_alike_at_both_scales():
    # A: dga-importance agree, dga-uniform agree, importance-uniform disagree (small: importance
    # better; large: uniform better); B: dga-uniform agree. 3 of 4 pairs.
    table = decision_table(summary(SMALL), summary(LARGE), "target").set_index(
        ["small_metric", "large_metric"]
    )
    row = table.loc[("target_loss", "target_loss")]
    assert row["pairs"] == 4 and row["accuracy"] == pytest.approx(0.75)
    # Without seed noise, only the resampled pairs move the accuracy: 4 pairs of which 3 agree
    # give resampled shares from 0.25 to 1, and an exact interval for 3 of 4.
    assert row["low"] < 0.75 < row["high"] and row["high"] == pytest.approx(1.0)
    assert (row["cp_low"], row["cp_high"]) == pytest.approx((0.1941, 0.9937), abs=1e-4)
    # Accuracy is better higher: ordered by it, the pairs are the same (signs are applied).
    assert table.loc[("target_loss", "mmlu/acc"), "accuracy"] == pytest.approx(0.75)
    assert table.loc[("mmlu/acc", "mmlu/acc"), "accuracy"] == pytest.approx(0.75)


def test_a_tie_counts_half_and_the_interval_comes_from_resampled_seeds():
    small = {"A": {"uniform": 3.0, "dga": 3.0}}
    large = {"A": {"uniform": 3.0, "dga": 2.0}}
    table = decision_table(summary(small), summary(large), "target")
    assert table.loc[0, "accuracy"] == pytest.approx(0.5)
    # Seed noise that differs by mixer: resampled means can change order, so the interval is wide.
    noisy = summary({"A": {"uniform": 3.0, "dga": 2.95}})
    noisy.loc[noisy["mixer_label"] == "dga", "target_loss"] += [0.2, -0.2, 0.0]
    table = decision_table(noisy, summary(large), "target", metrics={"target_loss": -1})
    row = table.iloc[0]
    assert row["accuracy"] == pytest.approx(1.0)  # means 3.0 vs 2.95: dga better, as at large
    assert row["low"] == 0.0 and row["high"] == 1.0


def test_only_runs_both_scales_share_are_compared():
    small = summary(SMALL)
    small.loc[small["mixer_label"] == "importance", "status"] = "failed"
    table = decision_table(small, summary(LARGE), "target", metrics={"target_loss": -1})
    assert table.loc[0, "pairs"] == 2 and table.loc[0, "accuracy"] == pytest.approx(1.0)


def test_gains_over_uniform_are_paired_by_seed_and_signed_better_positive():
    runs = summary({"A": {"uniform": 3.0, "dga": 2.8}})
    runs.loc[runs["mixer_label"] == "dga", "target_loss"] += [0.0, 0.1, -0.1]
    runs.loc[runs["mixer_label"] == "dga", "mmlu/acc"] = [7.0, 7.0, 7.3]  # uniform: 7.0
    gains = gains_table(runs).set_index("mixer")
    # Loss gains 0.2, 0.1, 0.3: mean 0.2, sd 0.1, t(0.975, 2) = 4.303 -> half 0.2484.
    assert gains.loc["dga", "target_loss"] == "+0.2000 [-0.0484, +0.4484]"
    # Accuracy gains 0, 0, 0.3: mean 0.1, sd 0.1732 -> half 0.4303.
    assert gains.loc["dga", "mmlu/acc"] == "+0.1000 [-0.3303, +0.5303]"
    assert list(gains.index) == ["dga"]  # uniform is the baseline, not a row


def test_no_interval_below_three_seeds():
    one_seed = summary(SMALL).query("seed == 0")
    table = decision_table(one_seed, summary(LARGE).query("seed == 0"), "target")
    assert table["low"].isna().all() and table["high"].isna().all()
    assert table["accuracy"].notna().all() and (table["seeds"] == 1).all()


def test_a_mixer_without_a_picked_seed_orders_nothing_and_its_pairs_count_as_ties():
    from analysis.decision import _grids, _pair_scores

    small = summary({"A": {"uniform": 3.0, "dga": 2.8}})
    large = summary({"A": {"uniform": 2.5, "dga": 2.3}})
    large = large[(large["mixer_label"] == "uniform") | (large["seed"] == 0)]  # dga: seed 0 only
    grids = [_grids(t, "target", ["target_loss"]) for t in (small, large)]
    metrics, signs = ("target_loss", "target_loss"), (-1, -1)
    every = {"small": {"A": [0, 1, 2]}, "large": {"A": [0, 1, 2]}}
    assert _pair_scores(*grids, metrics, signs, every) == [1.0]  # dga better at both scales
    without_seed_0 = {"small": {"A": [1, 2]}, "large": {"A": [1, 2, 2]}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice" for the user to puzzle over
        assert _pair_scores(*grids, metrics, signs, without_seed_0) == [0.5]
