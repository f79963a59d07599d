"""Task-score intervals that resample questions as well as seeds."""

import numpy as np
import pytest

from analysis.paired import paired_interval
from analysis.task_intervals import question_seed_interval


def test_a_gain_of_two_questions_in_a_hundred_is_not_separated_once_questions_vary():
    """The review's case: accuracies of 100 questions around chance, one variant answering two
    more questions right on every seed. Over seeds alone the gain looks certain; resampling the
    questions shows two answers of a hundred are within what another draw of questions gives."""
    rng = np.random.default_rng(0)
    base = (rng.random((3, 100)) < 0.25).astype(float)
    better = base.copy()
    for s in range(3):  # two more right answers per seed, on questions it got wrong
        better[s, np.flatnonzero(base[s] == 0)[:2]] = 1
    seeds_only = paired_interval(better.mean(axis=1) - base.mean(axis=1))
    assert seeds_only.mean == pytest.approx(0.02)
    both = question_seed_interval(better, base)
    assert both.mean == pytest.approx(0.02)
    assert both.low <= 0 < both.high  # contains 0 (a gain is never negative here: low is 0)


def test_a_large_consistent_gain_stays_separated():
    rng = np.random.default_rng(1)
    base = (rng.random((5, 200)) < 0.3).astype(float)
    better = np.maximum(base, (rng.random((5, 200)) < 0.4).astype(float))
    interval = question_seed_interval(better, base)
    assert interval.low > 0 and interval.p < 0.05


def test_the_mean_is_the_plain_mean_difference_and_pairs_must_match():
    a, b = np.arange(12.0).reshape(3, 4), np.ones((3, 4))
    assert question_seed_interval(a, b).mean == pytest.approx((a - b).mean())
    with pytest.raises(ValueError, match="pair up"):
        question_seed_interval(a, b[:, :3])
    assert np.isnan(question_seed_interval(a[:2], b[:2]).low)  # two seeds: no interval
