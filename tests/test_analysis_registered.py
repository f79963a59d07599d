"""A registered family against uniform: paired gains, Holm over the family, verdicts from the
adjusted p-values, collapsed seeds counted."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.registered import family_section, family_table


def runs(losses: dict[str, list[float]], collapsed: dict[str, list[bool]] | None = None):
    rows = []
    for label, values in losses.items():
        flags = (collapsed or {}).get(label, [False] * len(values))
        for seed, (loss, flag) in enumerate(zip(values, flags, strict=True)):
            rows.append(
                {
                    "mixer_label": label,
                    "seed": seed,
                    "status": "completed",
                    "target_loss": loss,
                    "collapsed": flag,
                    "time_averaged_max_weight": 0.95 if flag else 0.3,
                }
            )
    return pd.DataFrame(rows)


UNIFORM = [6.0, 6.1, 6.2, 6.05, 6.15]


DIFFS = {  # uniform - mixer, per seed
    "good": np.array([0.30, 0.28, 0.33, 0.31, 0.29]),
    "noisy": np.array([0.2, -0.15, 0.1, -0.05, 0.02]),
    "bad": -np.array([0.2, 0.22, 0.19, 0.21, 0.2]),
}


def test_gains_p_values_and_holm_follow_their_definitions():
    losses = {"uniform": UNIFORM, **{k: list(np.array(UNIFORM) - d) for k, d in DIFFS.items()}}
    table = family_table(runs(losses), list(DIFFS)).set_index("mixer")
    raw = {}
    for label, d in DIFFS.items():
        raw[label] = stats.ttest_1samp(d, 0).pvalue
        assert table.loc[label, "gain"] == pytest.approx(d.mean())
        assert table.loc[label, "p"] == pytest.approx(raw[label])
    # Holm by hand: sorted p's multiplied by 3, 2, 1, running maximum.
    order = sorted(raw, key=raw.get)
    expected, running = {}, 0.0
    for rank, label in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * raw[label]))
        expected[label] = running
    for label in raw:
        assert table.loc[label, "p_holm"] == pytest.approx(expected[label])
    assert table.loc["good", "verdict"] == "beats"
    assert table.loc["noisy", "verdict"] == "ties"
    assert table.loc["bad", "verdict"] == "loses"


def test_a_raw_win_that_holm_takes_away_is_a_tie():
    """p = 0.026 alone beats uniform; in a family of four such, Holm gives 0.11: a tie."""
    # Five differences whose raw p is about 0.026: four such give Holm p of about 0.11.
    d = np.array([0.10, 0.03, 0.08, 0.01, 0.06])
    p = stats.ttest_1samp(d, 0).pvalue
    assert 0.01 < p < 0.05
    losses = {"uniform": UNIFORM}
    for name in "abcd":
        losses[name] = list(np.array(UNIFORM) - d)
    table = family_table(runs(losses), list("abcd"))
    assert (table["p"] < 0.05).all()
    assert (table["verdict"] == "ties").all()
    alone = family_table(runs({"uniform": UNIFORM, "a": losses["a"]}), ["a"])
    assert alone.loc[0, "verdict"] == "beats"


def test_collapsed_seeds_are_counted_and_shown():
    frame = runs(
        {"uniform": UNIFORM, "dga": [5.9, 6.0, 6.3, 5.95, 6.0]},
        collapsed={"dga": [False, True, True, False, False]},
    )
    table = family_table(frame, ["dga"])
    assert table.loc[0, "collapsed"] == 2
    text = "\n".join(family_section("T", "registered", frame))
    assert "| 2 of 5 |" in text and "Holm over the family of 1 comparison." in text
    assert family_section("T", "registered", None)[-2] == "Not run yet."


def test_too_few_seeds_give_no_interval_and_no_verdict():
    table = family_table(runs({"uniform": UNIFORM[:2], "x": [5.0, 5.1]}), ["x"])
    assert math.isnan(table.loc[0, "gain_ci_low"]) and table.loc[0, "verdict"] == "untested"
