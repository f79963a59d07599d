"""The leaderboard on hand-made runs whose aggregates are known by hand."""

from __future__ import annotations

import math
import statistics
import subprocess
import sys

import pandas as pd
import pytest

from analysis.leaderboard import (
    COLUMNS,
    LEADERBOARD_FILES,
    TASK_STATS,
    aggregate,
    main,
    problem_runs,
    write_leaderboard,
)
from analysis.leaderboard_tables import display_table
from analysis.report import write_report
from analysis.results import load_runs, setting_columns
from tests.conftest import ROOT
from tests.run_records import FLOPS_PER_TOKEN, closed_port, write_run

NATURAL = {"weights": "natural"}


@pytest.fixture
def sweep(tmp_path):
    """Two budgets. At 1000 tokens: uniform 3.0/3.2/3.4 (seeds 0-2: mean 3.2, std 0.2), dga
    2.9/3.1 (seeds 0-1: mean 3.0; twice the training FLOPs in its own passes, a fifth of its
    step time in mixer updates), uniform[weights=natural] 3.1 and importance 3.5 (seed 0), plus
    a failed and an unfinished dga run. At 2000 tokens: dga alone."""
    root = tmp_path / "sweep"
    for seed, (target, generic) in enumerate([(3.0, 4.0), (3.2, 4.2), (3.4, 4.4)]):
        write_run(root, f"uniform{seed}", seed=seed, target=target, generic=generic)
    for seed, (target, seconds) in enumerate([(2.9, 15.0), (3.1, 25.0)]):
        write_run(
            root,
            f"dga{seed}",
            mixer="dga",
            seed=seed,
            target=target,
            probe_tokens=500,
            mixer_flops=2 * 1000 * FLOPS_PER_TOKEN,
            train_seconds=seconds,
            mixer_seconds=seconds / 5,
            epochs={"domain_00": 3.0, "domain_01": 1.0},
        )
    write_run(root, "natural", mixer_options=NATURAL, target=3.1)
    write_run(root, "importance", mixer="importance", target=3.5, epochs={"domain_00": 6.0})
    write_run(root, "dga_failed", mixer="dga", seed=2, status="failed")
    write_run(root, "dga_running", mixer="dga", seed=3, status="running")
    write_run(root, "big", mixer="dga", tokens=2000, target=2.0)
    return root


def test_means_stds_paired_gains_and_costs(sweep):
    board = aggregate(load_runs([sweep]))
    small = board[board["train_tokens"] == 1000].set_index("mixer_label")
    uniform, dga = small.loc["uniform"], small.loc["dga"]
    assert uniform["target_loss_mean"] == pytest.approx(3.2)
    assert uniform["target_loss_std"] == pytest.approx(0.2)  # sample std (ddof=1)
    assert uniform["generic_loss_mean"] == pytest.approx(4.2)
    assert uniform["seeds"] == 3 and dga["seeds"] == 2  # failed/unfinished seeds do not count
    assert dga["target_loss_mean"] == pytest.approx(3.0)
    assert dga["target_loss_std"] == pytest.approx(math.sqrt(0.02))
    assert math.isnan(small.loc["importance", "target_loss_std"])  # one seed
    # Paired by seed: dga against uniform's seeds 0 and 1 (3.0 - 2.9, 3.2 - 3.1), not against
    # uniform's mean over all three seeds (which would give 0.2).
    assert small["gain_vs_uniform"].to_dict() == pytest.approx(
        {"dga": 0.1, "uniform[weights=natural]": -0.1, "uniform": 0.0, "importance": -0.5}
    )
    assert small["paired_seeds"].to_dict() == {
        "dga": 2,
        "uniform[weights=natural]": 1,
        "uniform": 3,
        "importance": 1,
    }
    # Fewer than 3 paired seeds: no interval, nothing marked; uniform has none against itself.
    assert small[["gain_ci_low", "gain_ci_high"]].isna().all().all()
    assert not small["gain_excludes_zero"].any()
    assert small[["gain_p", "gain_p_holm"]].isna().all().all()  # no test below 3 seeds
    assert small["vs_uniform"].to_dict() == {
        "dga": "untested",
        "uniform[weights=natural]": "untested",
        "uniform": "baseline",
        "importance": "untested",
    }
    # Fewer than 3 shared seeds between any two variants: nothing separates them.
    assert small["rank"].tolist() == [1, 1, 1, 1] and small["rank_tied"].all()
    assert (small["letters"] == "a").all()
    # Cost: the mixer's FLOPs over the training FLOPs; its share of its own step time.
    assert dga["compute_overhead"] == pytest.approx(2.0)
    assert dga["mixer_time_share"] == pytest.approx(0.2)
    assert uniform["compute_overhead"] == 0 and uniform["mixer_time_share"] == 0
    assert dga["probe_overhead"] == pytest.approx(0.5)
    assert small["max_domain_epochs"].to_dict() == pytest.approx(
        {"dga": 3.0, "uniform[weights=natural]": 0.5, "uniform": 0.5, "importance": 6.0}
    )
    big = board[board["train_tokens"] == 2000]
    assert big["mixer_label"].tolist() == ["dga"] and big["rank"].tolist() == [1]
    assert not big["rank_tied"].item()
    assert math.isnan(big["gain_vs_uniform"].item())  # no uniform run in that setting
    assert big["paired_seeds"].item() == 0
    assert big["vs_uniform"].item() == "no baseline"


def test_no_cross_run_timing_column(sweep, tmp_path):
    board = aggregate(load_runs([sweep]))
    assert not {"time_overhead", "train_seconds", "step_time"} & set(board.columns)
    assert not [c for c in display_table(board).columns if "time vs" in c.lower()]
    md, csv, page = write_leaderboard(load_runs([sweep]), tmp_path)
    for text in (md.read_text(), csv.read_text(), page.read_text()):
        assert "step time vs" not in text.lower() and "time_overhead" not in text
        assert "relative to uniform" not in text


def markdown_rows(md: str) -> list[list[str]]:
    """The cells of every table row of a markdown text (header and rule lines left out)."""
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in md.splitlines()
        if line.startswith("|")
    ]
    return [
        row for row in rows if row[0] not in ("Rank", "Status") and not set(row[0]) <= set("-:")
    ]


def write_seeds(root, mixer: str, targets: list[float], **options) -> None:
    for seed, target in enumerate(targets):
        write_run(root, f"{mixer}{seed}", mixer=mixer, seed=seed, target=target, **options)


def test_paired_t_interval_by_hand(tmp_path):
    # uniform minus dga, seed by seed: 0.1, 0.2, 0.3.
    write_seeds(tmp_path, "uniform", [3.0, 3.0, 3.0])
    write_seeds(tmp_path, "dga", [2.9, 2.8, 2.7])
    dga = aggregate(load_runs([tmp_path])).set_index("mixer_label").loc["dga"]
    # mean 0.2, sd 0.1 (ddof=1), n = 3: t_{0.975, 2} = 4.302653, half-width 4.302653 * 0.1 / √3
    mean, half = 0.2, 4.302653 * 0.1 / math.sqrt(3)
    assert half == pytest.approx(0.248414, abs=1e-6)
    assert dga["gain_vs_uniform"] == pytest.approx(mean)
    assert dga["gain_ci_low"] == pytest.approx(mean - half, abs=1e-6)  # -0.0484
    assert dga["gain_ci_high"] == pytest.approx(mean + half, abs=1e-6)  # 0.4484
    assert dga["paired_seeds"] == 3 and not dga["gain_excludes_zero"]
    # The interval includes 0: dga and uniform share rank 1.
    assert dga["rank"] == 1 and dga["rank_tied"]


def test_an_interval_that_excludes_zero_is_marked(tmp_path):
    # uniform minus dga: 0.10, 0.12, 0.14 -> mean 0.12, sd 0.02, half-width 0.049684.
    write_seeds(tmp_path, "uniform", [3.0, 3.1, 3.2])
    write_seeds(tmp_path, "dga", [2.90, 2.98, 3.06])
    paths = write_leaderboard(load_runs([tmp_path]), tmp_path / "out")
    board = pd.read_csv(paths[1]).set_index("mixer_label")
    half = 4.302653 * 0.02 / math.sqrt(3)
    assert board.loc["dga", "gain_ci_low"] == pytest.approx(0.12 - half, abs=1e-6)  # 0.0703
    assert board.loc["dga", "gain_ci_high"] == pytest.approx(0.12 + half, abs=1e-6)  # 0.1697
    assert board.loc["dga", "gain_excludes_zero"]
    assert board["rank"].to_dict() == {"dga": 1, "uniform": 2}
    assert not board["rank_tied"].any()
    # One comparison with uniform: its Holm-adjusted p is the raw one, 0.0091 (by hand:
    # t = 0.12 / (0.02 / √3), p = 1 - t / √(t² + 2) for 2 degrees of freedom).
    t = 0.12 / (0.02 / math.sqrt(3))
    assert board.loc["dga", "gain_p"] == pytest.approx(1 - t / math.sqrt(t**2 + 2))
    assert board.loc["dga", "gain_p_holm"] == pytest.approx(board.loc["dga", "gain_p"])
    assert board["vs_uniform"].to_dict() == {"dga": "beats", "uniform": "baseline"}
    assert board["letters"].to_dict() == {"dga": "a", "uniform": "b"}
    md = paths[0].read_text()
    cells = {row[2]: row[5:8] for row in markdown_rows(md)}
    assert cells == {
        "dga": ["beats", "+0.1200 [+0.0703, +0.1697] *", "0.0091 (0.0091)"],
        "uniform": ["baseline", "0 (baseline)", "–"],
    }
    assert "t(0.975, n-1)" in md and "Holm" in md  # the method footnote


def test_ranks_never_separate_mixers_their_own_interval_does_not(tmp_path):
    """The issue's case: dga leads, importance differs from dga, but uniform differs from
    neither. Ranking against each group's leader gave dga 1 and uniform 2= with importance,
    although dga's own interval against uniform includes 0."""
    write_seeds(tmp_path, "dga", [2.90, 3.00, 3.10])
    write_seeds(tmp_path, "importance", [3.00, 3.11, 3.22])  # - dga: 0.10, 0.11, 0.12
    write_seeds(tmp_path, "uniform", [3.20, 2.90, 3.50])  # - dga: 0.3, -0.1, 0.4
    board = aggregate(load_runs([tmp_path])).set_index("mixer_label")
    assert board.loc["dga", "gain_ci_low"] < 0 < board.loc["dga", "gain_ci_high"]
    assert board.loc["dga", "vs_uniform"] == "ties"
    # dga - importance: p = 0.0027, x 3 pairs = 0.0082: separated; the other pairs are not.
    assert board["letters"].to_dict() == {"dga": "a", "importance": "b", "uniform": "ab"}
    assert board["rank"].to_dict() == {"dga": 1, "importance": 1, "uniform": 1}
    assert board["rank_tied"].all()
    table = display_table(board.reset_index()).set_index("Mixer")
    assert table["Rank"].tolist() == ["1=", "1=", "1="]
    assert table["Letters"].to_dict() == {"dga": "a", "importance": "b", "uniform": "ab"}


def test_ranks_split_where_every_pair_across_is_separated(tmp_path):
    write_seeds(tmp_path, "uniform", [3.0, 3.1, 3.2])  # mean 3.1
    write_seeds(tmp_path, "dga", [2.90, 2.98, 3.06])  # mean 2.98: the leader
    write_seeds(tmp_path, "doge", [2.91, 2.97, 3.08])  # dga - doge: -0.01, 0.01, -0.02
    write_seeds(tmp_path, "dga_dr", [4.0, 4.1, 4.3])  # uniform - dga_dr: -1.0, -1.0, -1.1
    board = aggregate(load_runs([tmp_path]))
    # Raw p over the 6 pairs: dga-doge 0.53, uniform-dga 0.0091, uniform-doge 0.0111, dga_dr
    # against each below 0.0015. Holm: uniform-dga and uniform-doge 3 x 0.0091 and
    # max(0.0274, 2 x 0.0111) = 0.0274, so every pair but dga-doge separates.
    ranks = dict(zip(board["mixer_label"], board["rank"], strict=True))
    assert ranks == {"dga": 1, "doge": 1, "uniform": 3, "dga_dr": 4}
    letters = dict(zip(board["mixer_label"], board["letters"], strict=True))
    assert letters == {"dga": "a", "doge": "a", "uniform": "b", "dga_dr": "c"}
    table = display_table(board)
    assert table["Rank"].tolist() == ["1=", "1=", "3", "4"]


def test_holm_within_a_settings_comparisons_with_uniform(tmp_path):
    """Three mixers against uniform. doge's raw interval excludes 0 (p = 0.0287), but among
    three comparisons its Holm-adjusted p is 2 x 0.0287 = 0.0574: it ties; dga's (3 x 0.0091 =
    0.0274) still beats uniform."""
    write_seeds(tmp_path, "uniform", [3.0, 3.1, 3.2])
    write_seeds(tmp_path, "dga", [2.90, 2.98, 3.06])  # uniform - dga: 0.10, 0.12, 0.14
    write_seeds(tmp_path, "doge", [2.86, 2.90, 2.94])  # 0.14, 0.20, 0.26
    write_seeds(tmp_path, "importance", [3.1, 3.1, 3.1])  # -0.1, 0, 0.1
    paths = write_leaderboard(load_runs([tmp_path]), tmp_path / "out")
    board = pd.read_csv(paths[1]).set_index("mixer_label")

    def p_by_hand(gaps: list[float]) -> float:  # two degrees of freedom
        t = abs(statistics.mean(gaps)) / (statistics.stdev(gaps) / math.sqrt(3))
        return 1 - t / math.sqrt(t**2 + 2)

    raw = {"dga": p_by_hand([0.10, 0.12, 0.14]), "doge": p_by_hand([0.14, 0.20, 0.26])}
    assert board.loc["dga", "gain_p"] == pytest.approx(raw["dga"])  # 0.0091
    assert board.loc["doge", "gain_p"] == pytest.approx(raw["doge"])  # 0.0287
    assert board.loc["importance", "gain_p"] == pytest.approx(1.0)
    assert board.loc["dga", "gain_p_holm"] == pytest.approx(3 * raw["dga"])
    assert board.loc["doge", "gain_p_holm"] == pytest.approx(2 * raw["doge"])
    assert board.loc["importance", "gain_p_holm"] == pytest.approx(1.0)
    assert board.loc["doge", "gain_excludes_zero"]  # raw: excludes 0 ...
    assert board["vs_uniform"].to_dict() == {  # ... adjusted: a tie
        "doge": "ties",
        "dga": "beats",
        "importance": "ties",
        "uniform": "baseline",
    }
    cells = {row[2]: row[5:8] for row in markdown_rows(paths[0].read_text())}
    assert cells["doge"] == ["ties", "+0.2000 [+0.0510, +0.3490]", "0.0287 (0.0574)"]
    assert cells["dga"] == ["beats", "+0.1200 [+0.0703, +0.1697] *", "0.0091 (0.0274)"]


def test_a_setting_without_uniform_says_how_to_get_the_gain(tmp_path):
    write_seeds(tmp_path, "dga", [2.9, 3.0, 3.1])
    write_seeds(tmp_path, "doge", [3.0, 3.1, 3.2])
    runs = load_runs([tmp_path])
    board = aggregate(runs)
    assert (board["vs_uniform"] == "no baseline").all()
    assert board["gain_vs_uniform"].isna().all()
    table = display_table(board)
    message = "no uniform run in this setting: add mixer=uniform to the sweep"
    assert (table["Gain vs uniform [95% CI]"] == message).all()
    assert (table["vs uniform"] == "no uniform run").all()
    md, _, page = write_leaderboard(runs, tmp_path / "out")
    assert message in md.read_text() and message in page.read_text()
    # With a uniform run that shares no seed, the cell says that instead.
    write_run(tmp_path, "uniform9", seed=9)
    dga = display_table(aggregate(load_runs([tmp_path]))).set_index("Mixer").loc["dga"]
    assert dga["Gain vs uniform [95% CI]"] == "no seed shared with uniform"
    assert dga["vs uniform"] == "untested: 0 seeds paired"


def test_every_csv_column_is_documented(tmp_path):
    for seed in range(3):
        write_run(tmp_path, f"u{seed}", seed=seed, task_metrics={"val/mmlu/acc": 0.25})
        write_run(tmp_path, f"d{seed}", mixer="dga", seed=seed, task_metrics={"val/mmlu/acc": 0.3})
    runs = load_runs([tmp_path])
    csv = pd.read_csv(write_leaderboard(runs, tmp_path / "out")[1])
    task = [f"mmlu/acc{suffix}" for suffix in TASK_STATS]
    assert list(csv.columns) == [*setting_columns(runs), *COLUMNS, *task]
    assert all(isinstance(text, str) and text for text in [*COLUMNS.values(), *TASK_STATS.values()])


def test_fewer_than_three_seeds_say_so_in_every_table(sweep, tmp_path):
    md, csv, page = write_leaderboard(load_runs([sweep]), tmp_path)
    for text in (md.read_text(), page.read_text()):
        assert "+0.1000, no interval (fewer than 3 seeds)" in text
    board = pd.read_csv(csv)
    dga = board[(board["mixer_label"] == "dga") & (board["train_tokens"] == 1000)].iloc[0]
    assert math.isnan(dga["gain_ci_low"]) and dga["paired_seeds"] == 2


def test_worst_domain_named_when_the_same_for_every_seed(tmp_path):
    labels = {
        "domain_00": "bbc/sport: match, team, win",
        "domain_01": "bbc/tech: phone, mobile, users",
    }
    for seed, losses in enumerate([(4.0, 4.4), (4.1, 4.6)]):
        domains = dict(zip(labels, losses, strict=True))
        write_run(tmp_path, f"u{seed}", seed=seed, domain_losses=domains, domain_labels=labels)
    for seed, losses in enumerate([(4.5, 4.3), (4.0, 4.3)]):
        domains = dict(zip(labels, losses, strict=True))
        write_run(tmp_path, f"d{seed}", mixer="dga", seed=seed, domain_losses=domains)
    board = aggregate(load_runs([tmp_path])).set_index("mixer_label")
    assert board.loc["uniform", "worst_domain_loss"] == pytest.approx(4.5)  # (4.4 + 4.6) / 2
    assert board.loc["uniform", "worst_domain"] == "domain_01"
    assert board.loc["uniform", "worst_domain_label"] == labels["domain_01"]
    assert board.loc["dga", "worst_domain_loss"] == pytest.approx(4.4)  # (4.5 + 4.3) / 2
    assert pd.isna(board.loc["dga", "worst_domain"])  # domain_00, then domain_01
    cells = display_table(board.reset_index()).set_index("Mixer")["Worst domain loss"]
    assert cells.to_dict() == {
        "uniform": "4.5000 (domain_01 bbc/tech: phone, mobile)",
        "dga": "4.4000",
    }


def test_extra_compute_from_flops_and_old_runs_without_them(tmp_path):
    write_run(tmp_path, "u", seed=0)
    write_run(tmp_path, "d0", mixer="dga", seed=0, mixer_flops=0.25e9, train_seconds=10.0)
    write_run(tmp_path, "d1", mixer="dga", seed=1, mixer_flops=0.35e9, mixer_seconds=3.0)
    write_run(tmp_path, "old", mixer="doge", legacy=True)
    board = aggregate(load_runs([tmp_path])).set_index("mixer_label")
    # 1000 tokens x 1e6 FLOPs per token of training: 25 % and 35 % extra.
    assert board.loc["dga", "compute_overhead"] == pytest.approx(0.30)
    assert board.loc["dga", "mixer_time_share"] == pytest.approx(0.15)  # 0 and 3 s of 10 s
    assert math.isnan(board.loc["doge", "compute_overhead"])
    table = display_table(board.reset_index()).set_index("Mixer")
    assert table["Extra compute"].to_dict() == {"uniform": "0.0 %", "dga": "30.0 %", "doge": "–"}
    assert table.loc["dga", "Mixer time share"] == "15.0 %"
    assert math.isnan(board.loc["doge", "worst_domain_loss"])


def test_ties_share_a_rank(tmp_path):
    write_run(tmp_path, "a", target=3.0)
    write_run(tmp_path, "b", mixer="dga", target=3.0)
    write_run(tmp_path, "c", mixer="doge", target=3.5)
    board = aggregate(load_runs([tmp_path]))
    # One seed each: no interval can separate them.
    assert dict(zip(board["mixer_label"], board["rank"], strict=True)) == {
        "dga": 1,
        "uniform": 1,
        "doge": 1,
    }


def test_failed_and_running_runs_are_listed_not_ranked(sweep):
    runs = load_runs([sweep])
    problems = problem_runs(runs)
    assert problems[["status", "mixer_label", "seed"]].values.tolist() == [
        ["failed", "dga", 2],
        ["running", "dga", 3],
    ]
    assert problems["error"].tolist()[0] == "RuntimeError: boom"
    assert len(aggregate(runs)) == 5


def test_no_completed_run_still_reports_the_problems(tmp_path):
    write_run(tmp_path / "runs", "a", status="failed")
    (tmp_path / "runs" / "b").mkdir()
    (tmp_path / "runs" / "b" / "results.json").write_text("not json")
    runs = load_runs([tmp_path / "runs"])
    assert aggregate(runs).empty
    assert problem_runs(runs)["status"].tolist() == ["failed", "unreadable"]
    paths = write_report([tmp_path / "runs"], tmp_path / "out")
    assert [p.name for p in paths] == list(LEADERBOARD_FILES)  # no figure to draw
    assert "JSONDecodeError" in (tmp_path / "out" / "leaderboard.md").read_text()


def test_files_hold_the_ranked_tables_and_the_failures(sweep, tmp_path):
    paths = write_leaderboard(load_runs([sweep]), tmp_path / "out")
    assert [p.name for p in paths] == ["leaderboard.md", "leaderboard.csv", "leaderboard.html"]
    md = paths[0].read_text()
    assert "## synthetic · k=2 · 1,000 training tokens · uncapped domains · model tiny" in md
    rows = markdown_rows(md)
    gain = "+0.1000, no interval (fewer than 3 seeds)"
    dga = ["1=", "a", "dga", "3.0000 ± 0.1414", "2", "untested: 2 seeds paired", gain, "–", "2"]
    assert [
        *dga,
        "4.0000 ± 0.0000",
        "4.1000 (domain_01)",
        "200.0 %",
        "20.0 %",
        "50.0 %",
        "3.00",
        "–",
    ] in rows
    uniform = ["1=", "a", "uniform", "3.2000 ± 0.2000", "3", "baseline", "0 (baseline)", "–", "3"]
    assert [
        *uniform,
        "4.2000 ± 0.2000",
        "4.3000 (domain_01)",
        "0.0 %",
        "0.0 %",
        "0.0 %",
        "0.50",
        "–",
    ] in rows
    missing = "no uniform run in this setting: add mixer=uniform to the sweep"
    alone = ["1", "a", "dga", "2.0000 ± –", "1", "no uniform run", missing, "–", "0"]
    assert [
        *alone,
        "4.0000 ± –",
        "4.1000 (domain_01)",
        "0.0 %",
        "0.0 %",
        "0.0 %",
        "0.50",
        "–",
    ] in rows
    assert "RuntimeError: boom" in md and "running" in md
    csv = pd.read_csv(paths[1])
    assert len(csv) == 5
    assert csv.loc[csv["mixer_label"] == "uniform", "target_loss_mean"].item() == pytest.approx(3.2)
    page = paths[2].read_text()
    assert page.count("<table") == 3  # two settings and the failures
    assert "uniform[weights=natural]" in page


@pytest.mark.slow
def test_cli_prints_the_table_and_writes_into_the_sweep(sweep):
    proc = subprocess.run(
        [sys.executable, "-m", "analysis.leaderboard", str(sweep)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "uniform[weights=natural]" in proc.stdout  # not eaten as rich markup
    assert "Runs that did not complete" in proc.stdout
    assert "no interval (fewer than 3 seeds)" in proc.stdout.replace("\n", " ")
    assert {p.name for p in sweep.glob("leaderboard.*")} == {
        "leaderboard.md",
        "leaderboard.csv",
        "leaderboard.html",
    }
    assert not (sweep / "plots").exists()


def test_cli_out_option_and_bad_input(sweep, tmp_path, capsys, monkeypatch):
    assert main([str(sweep), "--out", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / "leaderboard.md").exists()
    assert main([str(tmp_path / "missing")]) == 1
    assert "no such run or sweep directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([])
    assert "give run or sweep directories" in capsys.readouterr().err
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    assert main(["--wandb", "mixbench", "--out", str(tmp_path / "wandb")]) == 1
    assert "needs network access" in capsys.readouterr().err


def test_task_scores_get_means_and_paired_gains_signed_so_that_positive_is_better(tmp_path):
    """MMLU accuracy (higher is better) and bits per byte (lower is better), seeds 0-2."""
    scores = {
        "uniform": ([0.25, 0.26, 0.27], [3.0, 3.1, 3.2]),
        "dga": ([0.28, 0.30, 0.32], [2.90, 2.98, 3.06]),
    }
    for mixer, (accuracies, bpbs) in scores.items():
        for seed, (acc, bpb) in enumerate(zip(accuracies, bpbs, strict=True)):
            write_run(
                tmp_path,
                f"{mixer}{seed}",
                mixer=mixer,
                seed=seed,
                task_metrics={"val/mmlu/acc": acc, "val/mmlu/bpb": bpb},
            )
    paths = write_leaderboard(load_runs([tmp_path]), tmp_path / "out")
    dga = pd.read_csv(paths[1]).set_index("mixer_label").loc["dga"]
    assert dga["mmlu/acc_mean"] == pytest.approx(0.30)
    # acc: dga - uniform = 0.03, 0.04, 0.05: mean 0.04, sd 0.01.
    half = 4.302653 * 0.01 / math.sqrt(3)
    assert dga["mmlu/acc_gain"] == pytest.approx(0.04)
    assert dga["mmlu/acc_ci_low"] == pytest.approx(0.04 - half, abs=1e-6)
    # bpb: uniform - dga = 0.10, 0.12, 0.14: mean 0.12, sd 0.02.
    half = 4.302653 * 0.02 / math.sqrt(3)
    assert dga["mmlu/bpb_gain"] == pytest.approx(0.12)
    assert dga["mmlu/bpb_ci_high"] == pytest.approx(0.12 + half, abs=1e-6)
    # Each score is its own family of comparisons with uniform (here one: adjusted = raw).
    assert dga["mmlu/bpb_p"] == pytest.approx(0.0091, abs=1e-4)
    assert dga["mmlu/bpb_p_holm"] == pytest.approx(dga["mmlu/bpb_p"])
    md = paths[0].read_text()
    header = next(
        line
        for line in md.splitlines()
        if line.split("|")[1:2] and line.split("|")[1].strip() == "Rank"
    )
    assert "mmlu acc (gain)" in header and "mmlu bpb (gain)" in header
    row = next(r for r in markdown_rows(md) if r[2] == "dga")
    assert "0.3000 (+0.0400 [+0.0152, +0.0648] *)" in row
    assert "2.9800 (+0.1200 [+0.0703, +0.1697] *)" in row
