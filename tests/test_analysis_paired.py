"""Paired t-intervals and tied ranks, against numbers worked out by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis.paired import compare, paired_interval, tied_ranks

T_975_2 = 4.302653  # Student t, 0.975 quantile, 2 degrees of freedom (tables)


def test_interval_of_three_differences_by_hand():
    # mean 0.2; sd = sqrt(((-0.1)^2 + 0 + 0.1^2) / 2) = 0.1; half-width 4.302653 * 0.1 / √3.
    interval = paired_interval([0.1, 0.2, 0.3])
    half = T_975_2 * 0.1 / math.sqrt(3)
    assert interval.mean == pytest.approx(0.2) and interval.n == 3
    assert (interval.low, interval.high) == pytest.approx((0.2 - half, 0.2 + half), abs=1e-6)
    assert (interval.low, interval.high) == pytest.approx((-0.0484, 0.4484), abs=1e-4)
    assert not interval.excludes_zero
    assert paired_interval([0.10, 0.12, 0.14]).excludes_zero  # 0.12 ± 0.0497
    assert paired_interval([-0.10, -0.12, -0.14]).excludes_zero


def test_fewer_than_three_differences_have_no_interval():
    for differences in ([], [0.5], [0.5, 0.6]):
        interval = paired_interval(differences)
        assert math.isnan(interval.low) and math.isnan(interval.high)
        assert not interval.excludes_zero and interval.n == len(differences)
    assert paired_interval([0.5, 0.6]).mean == pytest.approx(0.55)


def test_compare_pairs_only_the_seeds_both_ran():
    a = pd.Series({0: 3.0, 1: 3.1, 2: 3.2, 3: 9.0})
    b = pd.Series({0: 2.9, 1: 2.9, 2: 2.9, 4: 0.0})
    interval = compare(a, b)  # seeds 0-2: 0.1, 0.2, 0.3
    assert interval.n == 3 and interval.mean == pytest.approx(0.2)
    assert compare(a, None).n == 0


def test_ranks_start_a_group_only_where_an_interval_excludes_zero():
    by_seed = pd.DataFrame(
        {
            "a": [1.00, 1.10, 1.20],
            "b": [1.01, 1.09, 1.22],  # a - b: -0.01, 0.01, -0.02: tie with a
            "c": [1.10, 1.22, 1.34],  # a - c: -0.10, -0.12, -0.14: a new group
            "d": [1.10, math.nan, math.nan],  # one seed shared with c: tie with c
        }
    )
    assert tied_ranks(by_seed, ["a", "b", "c", "d"]) == {"a": 1, "b": 1, "c": 3, "d": 3}
