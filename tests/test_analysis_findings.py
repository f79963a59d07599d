"""The findings report on a small committed-style fixture: the exploratory sections say which way
their raw intervals point, and never call it a verdict."""

import math

import pandas as pd
import pytest

from analysis.exploratory import (
    CLAIMS,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    PLANNED_SEEDS,
    REPRODUCED,
    variant_table,
)
from analysis.exploratory import direction as verdict
from analysis.findings import main, render
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


@pytest.mark.slow
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
            "model": "tiny",
            "config.data.vocab_size": 512,
            "train_tokens": 300000,
            "train_flops": 1e12,
            "mixer_flops": 0.5e12 * (label == "dga"),
        }
        for seed in range(3)
        for label, loss in (("uniform", 6.0), ("dga", 5.5 + 0.02 * seed))
    ]
    write(data, "regime", regime)

    report = render(data)
    assert report == render(data)  # deterministic
    assert (
        f"*Exploratory: the raw interval {REPRODUCED}.*" in report
    )  # 0.3, 0.29, 0.31 over 3 seeds
    missing = (
        "fine_grained, fine_grained_x4, fine_grained_x8, stability, overhead, targets, "
        "mmlu_specialist, mmlu_specialist_up"
    )
    assert f"Experiments not run yet: {missing}." in report
    # The claim's table: each variant's mean and sd over its completed seeds.
    assert "| 10,000 " in report and "| dga " in report and "3.2000 ± 0.1100" in report
    assert "| 512 " in report and "300,000" in report
    assert "| 1.5, 1.0 " in report  # TFLOP per run: dga's probes on top of the training
    out = tmp_path / "docs" / "findings.md"
    assert main(["--data", str(data), "--out", str(out)]) == 0
    assert out.read_text() == report
    figure = tmp_path / "docs" / "findings" / f"{claim.experiment}.png"
    assert f"![{claim.title}](findings/{claim.experiment}.png)" in report and figure.exists()
    first = figure.read_bytes()
    main(["--data", str(data), "--out", str(out)])
    assert figure.read_bytes() == first  # re-rendering changes no byte


def test_a_claims_table_gives_each_x_its_gain_over_the_worse_mixer_and_the_probe_cost():
    claim = next(c for c in CLAIMS if c.experiment == "fine_grained")
    # At k = 16 dga_dr beats importance by 0.2, 0.3, 0.1 (its probes cost 0.3 of the training);
    # at k = 32 importance ran alone. No uniform anywhere: no column of gains over it.
    rows = [
        {"num_domains": 16, "mixer_label": "importance", "seed": s, "target_loss": 6.0}
        for s in range(3)
    ]
    rows += [
        {
            "num_domains": 16,
            "mixer_label": "dga_dr",
            "seed": s,
            "target_loss": 6.0 - gain,
            "mixer_flops": 3e11,
        }
        for s, gain in enumerate([0.2, 0.3, 0.1])
    ]
    rows += [{"num_domains": 32, "mixer_label": "importance", "seed": 0, "target_loss": 6.1}]
    runs = (
        pd.DataFrame(rows).fillna({"mixer_flops": 0.0}).assign(status="completed", train_flops=1e12)
    )
    table = variant_table(runs, claim).set_index(["domains (k)", "mixer"])
    expected = paired_interval([0.2, 0.3, 0.1])
    assert table.loc[("16", "dga_dr"), "gain vs importance [95% CI]"] == (
        f"{expected.mean:+.4f} [{expected.low:+.4f}, {expected.high:+.4f}] over 3 seeds"
    )
    assert table.loc[("16", "dga_dr"), "mixer / training FLOPs"] == "0.30"
    assert table.loc[("16", "importance"), "mixer / training FLOPs"] == "0.00"
    assert table.loc[("32", "importance"), "gain vs importance [95% CI]"] == "–"
    assert "gain vs uniform [95% CI]" not in table


def test_targets_are_tallied_as_wins_ties_and_losses_against_uniform_and_importance(tmp_path):
    data = tmp_path / "findings"
    # Gains over uniform per seed: on bbc/sport dga gains 0.30, 0.31, 0.29 (a win) and importance
    # 0.1, -0.1, 0.0 (a tie); on wikipedia/fr dga loses 0.2 +- 0.01 (a loss), importance ties.
    gains = {
        ("bbc", "sport", None): {"dga": [0.30, 0.31, 0.29], "importance": [0.1, -0.1, 0.0]},
        ("wikipedia", None, "fr"): {"dga": [-0.2, -0.21, -0.19], "importance": [0.0, 0.1, -0.1]},
    }
    rows = []
    for (part, topic, lang), by_mixer in gains.items():
        for seed in range(3):
            where = {
                "config.data.specialist.where.part": part,
                "config.data.specialist.where.topic": topic,
                "config.data.specialist.where.lang": lang,
            }
            rows.append({"mixer_label": "uniform", "seed": seed, "target_loss": 5.0, **where})
            for label, g in by_mixer.items():
                rows.append(
                    {"mixer_label": label, "seed": seed, "target_loss": 5.0 - g[seed], **where}
                )
    write(data, "targets", [{**r, "status": "completed"} for r in rows])
    # bbc/tech, the regime's tiny / vocabulary 4096 / 1M setting: dga and importance both win.
    # The same setting one model size up is the regime's model axis, not a target: left out.
    regime = [
        {
            "mixer_label": label,
            "seed": seed,
            "status": "completed",
            "target_loss": loss - 0.01 * seed * (label != "uniform") + shift,
            "model": model,
            "config.data.vocab_size": 4096,
            "train_tokens": 1_000_000,
            "train_flops": 1e12,
            "mixer_flops": 0.0,
        }
        for seed in range(3)
        for label, loss in (("uniform", 6.0), ("dga", 5.5), ("importance", 5.7))
        for model, shift in (("tiny", 0.0), ("tiny_d160", 0.5 * (label == "uniform")))
    ]
    write(data, "regime", regime)
    report = render(data)
    section = report[report.index("## Several specialist targets") :]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith("| :")
    ]
    assert ["bbc/sport", "dga", "5.000", "+0.3000 [+0.2752, +0.3248] over 3 seeds"] in rows
    assert ["wikipedia/fr", "dga", "5.000", "-0.2000 [-0.2248, -0.1752] over 3 seeds"] in rows
    dga = next(row for row in rows if row[0] == "dga")
    importance = next(row for row in rows if row[0] == "importance")
    # Against uniform, dga: win (sport), loss (fr), win (tech); importance: tie, tie, win.
    assert dga[3] == "2 / 0 / 1" and importance[3] == "1 / 2 / 0"
    # Against importance, dga seed by seed: sport 0.2, 0.41, 0.29 (win); fr -0.2, -0.31, -0.09
    # (interval [-0.48, +0.08]: tie); tech 0.2, 0.2, 0.2 (win).
    assert dga[4] == "2 / 1 / 0" and importance[4] == "–"
    # The mean over targets of dga's mean gains (0.30, -0.20, 0.51): an interval over 3 targets.
    expected = paired_interval([0.30, -0.20, 0.51])
    assert dga[2] == (
        f"{expected.mean:+.4f} [{expected.low:+.4f}, {expected.high:+.4f}] over 3 targets"
    )


def test_the_decision_accuracy_section_renders_from_both_scales(tmp_path):
    from tests.decision_summaries import LARGE, SMALL, summary

    data = tmp_path / "findings"
    render_only = render(data)
    assert "Not run yet: `make findings EXP=mmlu_specialist` and" in render_only
    for experiment, means, model in (
        ("mmlu_specialist", SMALL, "tiny"),
        ("mmlu_specialist_up", LARGE, "tiny_d160"),
    ):
        runs = summary(means).rename(columns={"target": "config.data.specialist.subject"})
        write(data, experiment, runs.assign(model=model, source="demo", train_flops=1e15))
    report = render(data)
    section = report[report.index("## Decision accuracy across scales") :]
    # 3 of the 4 (subject, mixer pair)s keep their order (tests/test_analysis_decision.py).
    assert "Decision accuracy over 4 (target, mixer pair)s" in section
    # Resampling the 4 pairs as well as the seeds: the interval is no longer a point.
    assert "| target_loss     | 0.75 [0.25, 1.00]" in section
    # Clopper-Pearson for 3 of 4, and what the design lacks (2-3 variants, a 1x gap, no tokens).
    assert "On the specialist loss at both scales: 0.75 [0.19, 0.99]" in section
    assert "**This design cannot support a verdict either way**: it has 2 mixer variants" in section
    # (3 + 2 mixers) x 3 seeds x 1 PFLOP at each scale.
    assert "15.0 PFLOP at the small scale, 15.0 PFLOP at the large one" in section
    assert "Best small-scale predictor of each large-scale metric: target_loss:" in section


def test_the_registered_decision_design_reuses_runs_at_its_own_targets_and_seeds(tmp_path):
    from tests.decision_summaries import summary

    topic = "config.data.specialist.where.topic"
    data = tmp_path / "findings"
    small = {
        "tech": {"uniform": 3.0, "dga": 2.8, "odm": 2.9},
        "sports": {"uniform": 3.0, "dga": 2.5, "odm": 2.7},
    }
    large = {
        "tech": {"uniform": 2.5, "dga": 2.3, "odm": 2.6},
        "sports": {"uniform": 2.9, "dga": 2.4, "odm": 2.6},
    }

    def runs(means, **columns):
        return (
            summary(means)
            .rename(columns={"target": topic})
            .assign(train_flops=1e15, collapsed=False, **columns)
        )

    # decision_small runs ODM only; claim_targets' uniform and dga runs are reused, but not its
    # third topic nor its seeds 3-5, which would reverse every order if they were taken.
    own = runs(small, model="tiny")
    write(data, "decision_small", own[own["mixer_label"] == "odm"])
    theirs = runs({**small, "business": {"uniform": 3.0, "dga": 2.8}}, model="tiny")
    extra = theirs[theirs[topic] != "business"].assign(seed=lambda t: t["seed"] + 3)
    extra["target_loss"] = 10 - extra["target_loss"]
    write(data, "claim_targets", pd.concat([theirs[theirs["mixer_label"] != "odm"], extra]))
    write(data, "decision_large", runs(large, model="tiny_d160"))
    section = render(data)
    section = section[section.index("## Registered: decision accuracy") :].split("\n## ")[0]
    # uniform and dga at 2 topics x seeds 0-2, not the 6 business runs nor the 12 at seeds 3-5.
    assert (
        "Reused from `experiment=claim_targets` (same data, model and training options): 12 "
        "run(s) of dga, uniform." in section
    )
    # 3 pairs per topic, all ordered alike but odm-uniform on tech: 5 of 6.
    assert "Decision accuracy over 6 (target, mixer pair)s" in section
    assert "On the specialist loss at both scales: 0.83 [0.36, 1.00]" in section
    assert "| small   | tech      | tiny      | odm           | 2.9" in section
    assert "pending" not in section
    # The verdict waits for every registered run: here one seed of one mixer at the large scale.
    write(data, "decision_large", runs(large, model="tiny_d160").iloc[1:])
    assert "the registered verdict is pending: 1 of the 36 runs it needs" in render(data)


def test_the_decision_section_shows_how_often_each_scale_repeats_its_top_domain_and_collapses(
    tmp_path,
):
    from tests.decision_summaries import LARGE, SMALL, summary

    data = tmp_path / "findings"
    for experiment, means, model, epochs in (
        ("decision_small", SMALL, "tiny", {"uniform": 4.0, "importance": 6.0, "dga": 5.0}),
        ("decision_large", LARGE, "tiny_d160", {"uniform": 10.0, "importance": 52.0, "dga": 41.0}),
    ):
        runs = summary(means).rename(columns={"target": "config.data.specialist.where.topic"})
        runs["max_domain_epochs"] = runs["mixer_label"].map(epochs) + runs["seed"]
        runs["collapsed"] = runs["max_domain_epochs"] > 52
        write(data, experiment, runs.assign(model=model, train_flops=1e15))
    section = render(data)
    section = section[section.index("## Registered: decision accuracy") :].split("\n## ")[0]
    # importance on target A, seeds 0-2: 52, 53, 54 epochs at the large scale.
    # ... of which the two above 52 epochs collapsed.
    assert (
        "| tiny_d160 | importance    | 2.6           | 7.4        | 53.0                | 2           | 3 "
        in section
    )
    assert "at most 8.0 at the small scale and 54.0 at the large one" in section


def test_the_readme_summary_gives_the_decision_verdict_once_every_registered_run_is_in(tmp_path):
    from analysis.claims import summary_lines
    from analysis.findings import load
    from tests.decision_summaries import summary

    data = tmp_path / "findings"
    # Six mixers on two targets, in the same order at both scales: 30 pairs, all alike.
    small = {t: {f"m{i}": 3.0 - 0.1 * i for i in range(6)} for t in ("tech", "sports")}
    large = {t: {m: loss - 0.5 for m, loss in means.items()} for t, means in small.items()}
    for experiment, means, flops in (
        ("decision_small", small, 1e15),
        ("decision_large", large, 4e15),
    ):
        runs = summary(means).rename(columns={"target": "config.data.specialist.where.topic"})
        write(data, experiment, runs.assign(train_flops=flops, train_tokens=1e6))
    lines = summary_lines(lambda e: load(e, data))
    assert lines[0] == (
        "- Holds: `decision_small` and `decision_large` (seeds 0, 1, 2): specialist-loss decision "
        "accuracy 1.00 [0.88, 1.00] over 30 pairs, above 0.5."
    )
    write(data, "decision_large", load("decision_large", data).iloc[1:])
    assert (
        "`decision_small` and `decision_large` (71 of 72 runs in)"
        in summary_lines(lambda e: load(e, data))[-1]
    )


def test_a_part_on_another_corpus_joins_the_claims_table_and_gives_its_verdict(tmp_path):
    data = tmp_path / "findings"
    claim = next(c for c in CLAIMS if c.parts)  # fine granularity: the finest k, larger corpora
    part, k = claim.where["experiment"], claim.where["num_domains"]
    assert part in claim.parts

    def runs(num_domains, gains, domains=None):  # dga_dr's gain over importance per seed
        return [  # and uniform 0.5 worse; `domains`: how many remained after merging
            {
                "num_domains": num_domains,
                "domains": domains,
                "mixer_label": label,
                "seed": seed,
                "status": "completed",
                "target_loss": loss,
            }
            for seed, gain in enumerate(gains)
            for label, loss in (("importance", 6.0), ("dga_dr", 6.0 - gain), ("uniform", 6.5))
        ]

    # At k = 16 on the demo corpus dga_dr loses by 0.1 each seed; at the part's k it gains 0.2-0.4.
    write(data, claim.experiment, runs(16, [-0.1, -0.1, -0.1]))
    write(data, part, runs(k, [0.2, 0.3, 0.4], domains=k - 37))
    report = render(data)
    section = report[report.index(f"## {claim.title}") :].split("\n## ")[0]
    expected = paired_interval([0.2, 0.3, 0.4])
    assert f"*Exploratory: the raw interval {REPRODUCED}.*" in section
    assert f"importance (num_domains={k}) minus that of dga_dr (num_domains={k})" in section
    assert f"(`experiment={part}`)" in section
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith("| :")
    ]
    header, body = rows[0], rows[1:]
    assert header[:3] == ["domains (k)", "experiment", "mixer"]
    by_row = {(r[0], r[1], r[2]): dict(zip(header, r, strict=True)) for r in body}
    gain = "gain vs importance [95% CI]"
    assert by_row[(f"{k} ({k - 37} after merging)", part, "dga_dr")][gain] == (
        f"{expected.mean:+.4f} [{expected.low:+.4f}, {expected.high:+.4f}] over 3 seeds"
    )
    # Each row's gains are over the baseline of its own experiment: uniform is 0.5 worse in both.
    assert by_row[("16", claim.experiment, "importance")]["gain vs uniform [95% CI]"].startswith(
        "+0.5000"
    )
    assert part not in report.split("Experiments not run yet:")[1].split("\n")[0]


def test_a_verdict_over_seeds_added_after_the_planned_ones_says_so(tmp_path):
    data = tmp_path / "findings"
    claim = CLAIMS[0]  # token_limited: dga should beat importance at the tightest cap
    # Seeds 0-2 (planned): dga gains 0.1, 0.3, 0.0, inconclusive; seeds 3-4 added: 0.25, 0.2.
    gains = [0.1, 0.3, 0.0, 0.25, 0.2]
    rows = [
        {
            "mixer_label": label,
            "seed": seed,
            "status": "completed",
            "target_loss": loss,
            **claim.where,
        }
        for seed, gain in enumerate(gains)
        for label, loss in (("importance", 6.0), ("dga", 6.0 - gain))
    ]
    write(data, claim.experiment, rows)
    section = render(data).split(f"## {claim.title}")[1].split("\n## ")[0]
    first, both = paired_interval(gains[:3]), paired_interval(gains)
    assert first.low < 0 < both.low  # the added seeds turn the verdict
    assert f"*Exploratory: the raw interval {REPRODUCED}.*" in section
    assert (
        f"first {PLANNED_SEEDS} were added after those gave {first.mean:+.4f} "
        f"[{first.low:+.4f}, {first.high:+.4f}] over 3 seeds (*{INCONCLUSIVE}*)"
    ) in section
    write(data, claim.experiment, [r for r in rows if r["seed"] < PLANNED_SEEDS])
    assert "were added after" not in render(data)  # the planned seeds alone: nothing to disclose
