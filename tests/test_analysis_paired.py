"""Paired t-intervals and tied ranks, against numbers worked out by hand."""

from __future__ import annotations

import itertools
import math
import statistics

import pandas as pd
import pytest

from analysis.paired import (
    compact_letters,
    compare,
    holm,
    paired_interval,
    separated_pairs,
    tied_ranks,
)

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


def test_p_value_of_the_paired_t_test_by_hand():
    # Two degrees of freedom: the two-sided p-value of t is 1 - |t| / sqrt(t^2 + 2).
    t = 0.12 / (0.02 / math.sqrt(3))  # 0.10, 0.12, 0.14: mean 0.12, sd 0.02
    assert paired_interval([0.10, 0.12, 0.14]).p == pytest.approx(1 - t / math.sqrt(t**2 + 2))
    assert paired_interval([0.10, 0.12, 0.14]).p == pytest.approx(0.00913, abs=1e-5)
    assert paired_interval([0.1, 0.2, 0.3]).p == pytest.approx(0.0742, abs=1e-4)
    # p < 0.05 exactly when the 95% interval excludes 0; identical differences: the point.
    for differences in ([0.1, 0.2, 0.3], [0.10, 0.12, 0.14], [-0.3, 0.05, 0.2], [0.2] * 3):
        interval = paired_interval(differences)
        assert (interval.p < 0.05) == interval.excludes_zero
    assert paired_interval([0.0, 0.0, 0.0]).p == 1.0
    assert math.isnan(paired_interval([0.5, 0.6]).p)  # too few seeds: no test


def test_holm_by_hand():
    # Sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, then max(0.06, 0.04 x 1).
    adjusted = holm([0.01, 0.04, 0.03, math.nan, 0.005])
    assert adjusted[:3] + adjusted[4:] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjusted[3])  # untested: not counted in the family of 4
    assert holm([0.9, 0.6]) == [1.0, 1.0]  # capped at 1
    assert holm([0.04]) == [0.04]  # a family of one: unadjusted
    assert holm([]) == []


def _sharing(letters: dict[str, str], a: str, b: str) -> bool:
    return bool(set(letters[a]) & set(letters[b]))


def test_letters_share_exactly_where_no_comparison_separates():
    order = ["a", "b", "c", "d"]
    separated = {frozenset(p) for p in [("a", "c"), ("a", "d"), ("b", "d")]}
    assert compact_letters(order, separated) == {"a": "a", "b": "ab", "c": "bc", "d": "c"}
    assert compact_letters(order, set()) == dict.fromkeys(order, "a")
    # Every separation pattern of 5 variants (1,024 of them): a pair shares a letter exactly when
    # it is not separated, and the best variant has "a".
    order = list("abcde")
    pairs = list(itertools.combinations(order, 2))
    for mask in range(2 ** len(pairs)):
        separated = {frozenset(p) for i, p in enumerate(pairs) if mask >> i & 1}
        letters = compact_letters(order, separated)
        assert "a" in letters["a"]
        for a, b in pairs:
            assert _sharing(letters, a, b) == (frozenset((a, b)) not in separated), (mask, a, b)


def test_ranks_differ_only_between_separated_variants():
    # a-b-c in order of mean loss, only a and c separated: b cannot be told from either, so one
    # group (the old rule, against each group's leader, ranked a 1, b 1, c 3).
    assert tied_ranks(list("abc"), {frozenset("ac")}) == {"a": 1, "b": 1, "c": 1}
    every = {frozenset(p) for p in itertools.combinations("abcd", 2)}
    assert tied_ranks(list("abcd"), every) == {"a": 1, "b": 2, "c": 3, "d": 4}
    assert tied_ranks(list("abcd"), every - {frozenset("ab")}) == {"a": 1, "b": 1, "c": 3, "d": 4}
    # a and d not separated: everything between them joins their group.
    assert tied_ranks(list("abcd"), every - {frozenset("ad")}) == dict.fromkeys("abcd", 1)
    order = list("abcde")
    pairs = list(itertools.combinations(order, 2))
    for mask in range(2 ** len(pairs)):  # every separation pattern of 5 variants
        separated = {frozenset(p) for i, p in enumerate(pairs) if mask >> i & 1}
        ranks = tied_ranks(order, separated)
        assert list(ranks.values()) == sorted(ranks.values())  # in order of mean loss
        for a, b in pairs:
            if ranks[a] != ranks[b]:
                assert frozenset((a, b)) in separated, (mask, a, b)


def test_pairs_are_separated_by_their_holm_adjusted_p_values():
    by_seed = pd.DataFrame(
        {
            "b": [1.00, 1.10, 1.20],
            "c": [1.06, 1.22, 1.31],  # b - c: -0.06, -0.12, -0.11
            "d": [1.10, math.nan, math.nan],  # one seed shared with each: no test
            "e": [1.30, 1.00, 1.40],  # far from both (p 0.38 and 0.81)
        }
    )
    gaps = [0.06, 0.12, 0.11]  # c - b: mean 0.0967, sd 0.0321
    t = statistics.mean(gaps) / (statistics.stdev(gaps) / math.sqrt(3))
    assert compare(by_seed["b"], by_seed["c"]).p == pytest.approx(1 - t / math.sqrt(t**2 + 2))
    assert compare(by_seed["b"], by_seed["c"]).p == pytest.approx(0.0349, abs=1e-4)
    assert separated_pairs(by_seed, ["b", "c"]) == {frozenset("bc")}
    assert separated_pairs(by_seed, ["b", "c", "d"]) == {frozenset("bc")}  # d: not tested
    # Three tested pairs: b-c's Holm-adjusted p is 3 x 0.0349 = 0.105, no longer separated.
    assert separated_pairs(by_seed, ["b", "c", "d", "e"]) == set()
