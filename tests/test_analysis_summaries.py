"""Committable sweep summaries and the separation table, on hand-made runs."""

import json

import pandas as pd
import pytest

from analysis.results import load_runs, setting_columns
from analysis.summaries import main, separation, summarize, weight_oscillation
from tests.run_records import write_run


@pytest.fixture
def sweep(tmp_path):
    """uniform 3.0 / 3.2 / 3.4 and dga 2.9 / 3.0 / 3.1 over seeds 0-2 (paired gains 0.1, 0.2,
    0.3), importance on seed 0 only, and a failed dga run."""
    root = tmp_path / "sweep"
    for seed, (u, d) in enumerate([(3.0, 2.9), (3.2, 3.0), (3.4, 3.1)]):
        write_run(root, f"uniform{seed}", seed=seed, target=u)
        write_run(root, f"dga{seed}", mixer="dga", seed=seed, target=d, mixer_flops=500.0)
    write_run(root, "importance0", mixer="importance", seed=0, target=2.5)
    write_run(root, "dga_failed", mixer="dga", seed=3, status="failed")
    return root


def test_one_row_per_run_with_weights_as_json(sweep):
    summary = summarize(load_runs([sweep]))
    assert len(summary) == 8
    assert set(summary["status"]) == {"completed", "failed"}
    row = summary[(summary["mixer_label"] == "dga") & (summary["seed"] == 1)].iloc[0]
    assert row["target_loss"] == pytest.approx(3.0) and row["mixer_flops"] == 500.0
    assert json.loads(row["final_weights"]) == {"domain_00": 0.5, "domain_01": 0.5}


def test_weight_oscillation_is_the_mean_step_between_updates(tmp_path):
    run_dir = write_run(tmp_path, "dga", mixer="dga")
    (run_dir / "weights.csv").write_text(
        "step,domain_00,domain_01\n0,0.5,0.5\n10,0.7,0.3\n20,0.6,0.4\n"
    )
    # L1 steps: |0.2| + |0.2| = 0.4, then 0.1 + 0.1 = 0.2: mean 0.3.
    assert weight_oscillation(str(run_dir)) == pytest.approx(0.3)
    assert summarize(load_runs([tmp_path]))["weight_oscillation"].iloc[0] == pytest.approx(0.3)


def test_separation_is_the_paired_gain_over_its_seed_spread(sweep):
    runs = load_runs([sweep])
    table = separation(summarize(runs), setting_columns(runs)).set_index("mixer_label")
    dga = table.loc["dga"]
    # Paired gains 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t(0.975, 2) = 4.3027.
    assert dga["seeds"] == 3 and dga["gain"] == pytest.approx(0.2)
    assert dga["seed_std"] == pytest.approx(0.1) and dga["ratio"] == pytest.approx(2.0)
    assert dga["gain_ci_low"] == pytest.approx(0.2 - 4.3027 * 0.1 / 3**0.5, abs=1e-4)
    importance = table.loc["importance"]
    assert importance["seeds"] == 1 and pd.isna(importance["gain_ci_low"])
    assert pd.isna(importance["ratio"])


def test_the_command_writes_the_csv(sweep, tmp_path, capsys):
    out = tmp_path / "findings" / "s.csv"
    assert main([str(sweep), "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == 8
    assert "Separation from uniform" in capsys.readouterr().out


def test_merge_adds_a_partial_sweep_to_the_committed_summary(sweep, tmp_path):
    """A sweep re-run in parts: the second part's runs join the first part's rows, a run summarised
    again (the failed dga seed, now completed) replaces its older row, and nothing else is lost."""
    out = tmp_path / "s.csv"
    assert main([str(sweep), "--out", str(out)]) == 0
    later = tmp_path / "later"
    write_run(later, "dga_failed", mixer="dga", seed=3, target=2.0)
    write_run(later, "importance1", mixer="importance", seed=1, target=2.6)
    assert main([str(later), "--out", str(out), "--merge"]) == 0
    merged = pd.read_csv(out)
    assert len(merged) == 9
    dga3 = merged[(merged["mixer_label"] == "dga") & (merged["seed"] == 3)]
    assert list(dga3["status"]) == ["completed"] and list(dga3["target_loss"]) == [2.0]
    importance = merged[merged["mixer_label"] == "importance"].set_index("seed")["target_loss"]
    assert importance.to_dict() == {0: 2.5, 1: 2.6}
    # Without --merge the file holds the later part alone.
    assert main([str(later), "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == 2


def test_a_setting_column_is_kept_when_the_part_added_shares_one_value(tmp_path):
    """A sweep over two learning rates, then a part of it re-run at one of them: the part's rows
    still carry their learning rate (it varies in the committed summary, not in the part)."""

    def run(root, name, lr, seed):
        folder = write_run(root, name, seed=seed, target=3.0 + lr)
        record = json.loads((folder / "results.json").read_text())
        record["config"]["train"]["lr"] = lr
        (folder / "results.json").write_text(json.dumps(record))

    out = tmp_path / "s.csv"
    for lr in (0.1, 0.2):
        run(tmp_path / "first", f"uniform{lr}", lr, seed=0)
    assert main([str(tmp_path / "first"), "--out", str(out)]) == 0
    run(tmp_path / "part", "uniform_seed1", 0.2, seed=1)
    assert main([str(tmp_path / "part"), "--out", str(out), "--merge"]) == 0
    merged = pd.read_csv(out)
    pairs = zip(merged["config.train.lr"], merged["seed"], strict=True)
    assert sorted(pairs) == [(0.1, 0), (0.2, 0), (0.2, 1)]


def test_a_target_is_named_and_kept_apart_when_sweeps_are_merged(tmp_path):
    """Two specialist targets summarised one after the other: each summary names its target
    (though every run in it shares it), and merging keeps both targets' runs of the same mixer
    and seed."""

    def sweep(root, topic):
        for mixer in ("uniform", "dga"):
            run = write_run(root, mixer, mixer=mixer, seed=0, target=3.0)
            record = json.loads((run / "results.json").read_text())
            record["config"]["data"]["specialist"] = {"where": {"part": "bbc", "topic": topic}}
            (run / "results.json").write_text(json.dumps(record))
        return root

    out = tmp_path / "targets.csv"
    assert main([str(sweep(tmp_path / "a", "sports")), "--out", str(out), "--merge"]) == 0
    assert set(pd.read_csv(out)["config.data.specialist.where.topic"]) == {"sports"}
    assert main([str(sweep(tmp_path / "b", "tech")), "--out", str(out), "--merge"]) == 0
    merged = pd.read_csv(out)
    assert len(merged) == 4
    assert sorted(merged["config.data.specialist.where.topic"]) == ["sports"] * 2 + ["tech"] * 2
