"""The findings report on a small committed-style fixture: verdicts follow the intervals."""

import math

import pandas as pd
import pytest

from analysis.findings import (
    CLAIMS,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    main,
    render,
    verdict,
)
from analysis.paired import Interval, paired_interval


@pytest.mark.parametrize(
    ("differences", "expected"),
    [
        ([0.1, 0.2, 0.3], INCONCLUSIVE),  # [-0.048, +0.448]: contains 0
        ([0.19, 0.2, 0.21], REPRODUCED),
        ([-0.19, -0.2, -0.21], NOT_REPRODUCED),
        ([0.5, 0.6], INCONCLUSIVE),  # two seeds: no interval, however large the gain
    ],
)
def test_a_verdict_follows_the_paired_interval(differences, expected):
    assert verdict(paired_interval(differences)) == expected


def test_an_interval_containing_zero_is_never_reproduced():
    for low, high in [(-0.1, 0.5), (-1.0, 0.0), (0.0, 2.0)]:
        assert verdict(Interval(0.2, low, high, 5)) != REPRODUCED
    assert verdict(Interval(0.2, math.nan, math.nan, 3)) == INCONCLUSIVE


def write(folder, experiment, rows):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / f"{experiment}.csv", index=False)


def test_report_renders_from_summaries_alone_and_names_what_is_missing(tmp_path):
    data = tmp_path / "findings"
    claim = CLAIMS[0]  # token_limited: dga should beat importance at the tightest cap
    rows = []
    for seed, (importance, dga) in enumerate([(3.5, 3.2), (3.6, 3.31), (3.4, 3.09)]):
        for label, loss in (("importance", importance), ("dga", dga)):
            rows.append(
                {
                    "mixer_label": label,
                    "seed": seed,
                    "status": "completed",
                    "target_loss": loss,
                    **claim.where,
                }
            )
    rows.append(
        {"mixer_label": "dga", "seed": 3, "status": "failed", "target_loss": 9.0, **claim.where}
    )
    write(data, claim.experiment, rows)
    regime = [
        {
            "mixer_label": label,
            "seed": seed,
            "status": "completed",
            "target_loss": loss + 0.01 * seed,
            "config.data.vocab_size": 512,
            "train_tokens": 300000,
        }
        for seed in range(3)
        for label, loss in (("uniform", 6.0), ("dga", 5.5 + 0.02 * seed))
    ]
    write(data, "regime", regime)

    report = render(data)
    assert report == render(data)  # deterministic
    assert f"*Verdict: **{REPRODUCED}**.*" in report  # 0.3, 0.29, 0.31 over 3 seeds
    assert "Experiments not run yet: fine_grained, stability, overhead." in report
    assert "| 512 " in report and "300,000" in report
    out = tmp_path / "docs" / "findings.md"
    assert main(["--data", str(data), "--out", str(out)]) == 0
    assert out.read_text() == report
