"""Task-score intervals that resample questions as well as seeds."""

import numpy as np
import pandas as pd
import pytest

from analysis.leaderboard import aggregate
from analysis.paired import paired_interval
from analysis.results import load_runs
from analysis.task_intervals import (
    against_baseline_over_questions,
    question_seed_interval,
    question_tables,
)
from experiments.results import TASK_QUESTIONS_FILE, write_task_questions
from tests.run_records import write_run


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


def test_the_leaderboard_resamples_questions_when_every_run_kept_them(tmp_path):
    """Runs that wrote task_questions.csv get their task gain from the questions and seeds; the
    same runs without the files fall back to seeds, and the board says which."""
    rng = np.random.default_rng(2)
    base = (rng.random((3, 100)) < 0.25).astype(float)
    better = base.copy()
    for s in range(3):
        better[s, np.flatnonzero(base[s] == 0)[:2]] = 1
    for seed in range(3):
        for mixer, answers in (("uniform", base), ("dga", better)):
            run = write_run(
                tmp_path,
                f"{mixer}{seed}",
                mixer=mixer,
                seed=seed,
                task_metrics={"val/mmlu/acc": answers[seed].mean()},
            )
            write_task_questions(run / TASK_QUESTIONS_FILE, {"acc": answers[seed].tolist()})
    runs = load_runs([tmp_path])
    tables = question_tables(runs, "acc")
    assert tables["dga"].shape == (3, 100)
    np.testing.assert_array_equal(tables["uniform"].to_numpy(), base)
    board = aggregate(runs).set_index("mixer_label")
    expected = question_seed_interval(better, base)
    assert board.loc["dga", "mmlu/acc_interval"] == "questions and seeds"
    assert board.loc["dga", "mmlu/acc_gain"] == pytest.approx(0.02)
    assert board.loc["dga", "mmlu/acc_ci_low"] == pytest.approx(expected.low)
    assert board.loc["dga", "mmlu/acc_ci_low"] <= 0  # the seeds-only interval excludes 0
    (tmp_path / "dga0" / TASK_QUESTIONS_FILE).unlink()
    fallback = aggregate(load_runs([tmp_path])).set_index("mixer_label")
    assert fallback.loc["dga", "mmlu/acc_interval"] == "seeds"
    assert fallback.loc["dga", "mmlu/acc_ci_low"] > 0


def test_a_higher_is_worse_score_is_signed_before_the_comparison():
    base = pd.DataFrame(np.full((3, 4), 2.0))
    worse = base + 0.5  # more bits per byte
    gains = against_baseline_over_questions({"uniform": base, "x": worse}, ["uniform", "x"], -1)
    assert gains.loc["x", "gain"] == pytest.approx(-0.5)
    assert gains.loc["uniform", "gain"] == 0.0
