"""The leaderboard on hand-made runs whose aggregates are known by hand."""

from __future__ import annotations

import math
import subprocess
import sys

import pandas as pd
import pytest

from analysis.leaderboard import (
    LEADERBOARD_FILES,
    aggregate,
    main,
    problem_runs,
    write_leaderboard,
)
from analysis.report import write_report
from analysis.results import load_runs
from tests.conftest import ROOT
from tests.test_analysis_results import closed_port, write_run

NATURAL = {"weights": "natural"}


@pytest.fixture
def sweep(tmp_path):
    """Two budgets. At 1000 tokens: uniform 3.0/3.2/3.4 (mean 3.2, std 0.2), dga 2.9/3.1
    (mean 3.0), uniform[weights=natural] 3.1, importance 3.5, plus a failed and an unfinished
    dga run. At 2000 tokens: dga alone."""
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
            train_seconds=seconds,
            epochs={"domain_00": 3.0, "domain_01": 1.0},
        )
    write_run(root, "natural", mixer_options=NATURAL, target=3.1)
    write_run(root, "importance", mixer="importance", target=3.5, epochs={"domain_00": 6.0})
    write_run(root, "dga_failed", mixer="dga", seed=2, status="failed")
    write_run(root, "dga_running", mixer="dga", seed=3, status="running")
    write_run(root, "big", mixer="dga", tokens=2000, target=2.0)
    return root


def test_means_stds_ranks_and_gain_over_uniform(sweep):
    board = aggregate(load_runs([sweep]))
    small = board[board["train_tokens"] == 1000].set_index("mixer_label")
    assert small["rank"].to_dict() == {
        "dga": 1,
        "uniform[weights=natural]": 2,
        "uniform": 3,
        "importance": 4,
    }
    uniform, dga = small.loc["uniform"], small.loc["dga"]
    assert uniform["target_loss_mean"] == pytest.approx(3.2)
    assert uniform["target_loss_std"] == pytest.approx(0.2)  # sample std (ddof=1)
    assert uniform["generic_loss_mean"] == pytest.approx(4.2)
    assert uniform["seeds"] == 3 and dga["seeds"] == 2  # failed/unfinished seeds do not count
    assert dga["target_loss_mean"] == pytest.approx(3.0)
    assert dga["target_loss_std"] == pytest.approx(math.sqrt(0.02))
    assert small["gain_vs_uniform"].to_dict() == pytest.approx(
        {"dga": 0.2, "uniform[weights=natural]": 0.1, "uniform": 0.0, "importance": -0.3}
    )
    assert math.isnan(small.loc["importance", "target_loss_std"])  # one seed
    # Overheads: 500 probe tokens per 1000 trained; 20 s of training steps against 10 s.
    assert dga["probe_overhead"] == pytest.approx(0.5)
    assert dga["time_overhead"] == pytest.approx(1.0)
    assert uniform["time_overhead"] == pytest.approx(0.0)
    assert small["max_domain_epochs"].to_dict() == pytest.approx(
        {"dga": 3.0, "uniform[weights=natural]": 0.5, "uniform": 0.5, "importance": 6.0}
    )
    big = board[board["train_tokens"] == 2000]
    assert big["mixer_label"].tolist() == ["dga"] and big["rank"].tolist() == [1]
    assert math.isnan(big["gain_vs_uniform"].iloc[0])  # no uniform run in that setting


def test_ties_share_a_rank(tmp_path):
    write_run(tmp_path, "a", target=3.0)
    write_run(tmp_path, "b", mixer="dga", target=3.0)
    write_run(tmp_path, "c", mixer="doge", target=3.5)
    board = aggregate(load_runs([tmp_path]))
    assert dict(zip(board["mixer_label"], board["rank"], strict=True)) == {
        "dga": 1,
        "uniform": 1,
        "doge": 3,
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
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in md.splitlines()
        if line.startswith("|")
    ]
    dga = ["1", "dga", "3.0000 ± 0.1414", "2", "4.0000 ± 0.0000", "+0.2000", "50.0 %"]
    assert [*dga, "+100.0 %", "3.00"] in rows
    uniform = ["3", "uniform", "3.2000 ± 0.2000", "3", "4.2000 ± 0.2000", "+0.0000", "0.0 %"]
    assert [*uniform, "+0.0 %", "0.50"] in rows
    assert ["1", "dga", "2.0000 ± –", "1", "4.0000 ± –", "–", "0.0 %", "–", "0.50"] in rows
    assert "RuntimeError: boom" in md and "running" in md
    csv = pd.read_csv(paths[1])
    assert len(csv) == 5
    assert csv.loc[csv["mixer_label"] == "uniform", "target_loss_mean"].item() == pytest.approx(3.2)
    page = paths[2].read_text()
    assert page.count("<table") == 3  # two settings and the failures
    assert "uniform[weights=natural]" in page


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
