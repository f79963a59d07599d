"""Collecting runs into a table: hand-made results.json files with known contents."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pandas as pd
import pytest

from analysis.results import (
    DEMO_SWEEP,
    ROOT,
    coarse_labels,
    domain_caption,
    domain_labels,
    load_runs,
    load_trajectory,
    mean_weights,
    run_row,
    setting_columns,
    setting_title,
    sweep_path,
    validation_curve,
    worst_domain,
)
from analysis.wandb_runs import check_reachable, load_wandb_runs, wandb_record
from tests.run_records import closed_port, write_run


def test_one_row_per_run_with_setting_and_headline_numbers(tmp_path):
    write_run(tmp_path / "sweep", "a", seed=1, target=2.5, generic=3.5, probe_tokens=100)
    write_run(tmp_path / "sweep" / "nested", "b", mixer="dga", epochs={"d0": 3.0, "d1": 1.5})
    runs = load_runs([tmp_path / "sweep"]).set_index("mixer")
    assert len(runs) == 2
    a = runs.loc["uniform"]
    assert (a["status"], a["seed"], a["target_loss"], a["generic_loss"]) == (
        "completed",
        1,
        2.5,
        3.5,
    )
    assert (a["source"], a["num_domains"], a["train_tokens"], a["model"]) == (
        "synthetic",
        2,
        1000,
        "tiny",
    )
    assert a["tokens_per_domain"] is None
    assert a["probe_tokens"] == 100 and a["train_seconds"] == 10.0
    assert a["target_loss_initial"] == 5.5
    b = runs.loc["dga"]
    assert b["max_domain_epochs"] == 3.0 and b["most_repeated_domain"] == "d0"
    assert b["config.data.target_domains"] == "[0, 1]"  # lists kept comparable


def test_cost_worst_domain_and_labels_come_from_the_new_keys(tmp_path):
    labels = {
        "domain_00": "bbc/sport: match, team, win",
        "domain_01": "bbc/tech: phone, mobile, users",
    }
    write_run(
        tmp_path,
        "new",
        mixer="dga",
        tokens=2000,
        mixer_flops=3e9,
        train_seconds=8.0,
        mixer_seconds=2.0,
        domain_losses={"domain_00": 4.2, "domain_01": 4.6},
        domain_labels=labels,
    )
    write_run(tmp_path, "old", legacy=True)
    runs = load_runs([tmp_path]).set_index("mixer")
    new, old = runs.loc["dga"], runs.loc["uniform"]
    assert (new["mixer_flops"], new["train_flops"], new["mixer_seconds"]) == (3e9, 2e9, 2.0)
    assert new["compute_overhead"] == pytest.approx(3e9 / 2e9)
    assert new["mixer_time_share"] == pytest.approx(2.0 / 8.0)
    assert (new["worst_domain"], new["worst_domain_loss"]) == ("domain_01", 4.6)
    assert new["domain_labels"] == labels
    # A run written before these keys existed: missing numbers, not an error.
    for column in ["mixer_flops", "train_flops", "mixer_seconds", "compute_overhead"]:
        assert math.isnan(old[column])
    assert math.isnan(old["mixer_time_share"]) and math.isnan(old["worst_domain_loss"])
    assert pd.isna(old["worst_domain"]) and pd.isna(old["domain_labels"])
    assert worst_domain({"val/target_loss": 3.0}) == (None, pytest.approx(math.nan, nan_ok=True))


def test_domain_caption_is_the_name_and_the_start_of_its_label():
    labels = {"domain_07": "bbc/tech: phone, mobile, users", "domain_08": "domain_08"}
    assert domain_caption("domain_07", labels) == "domain_07 bbc/tech: phone, mobile"
    assert domain_caption("domain_08", labels) == "domain_08"  # no description of its own
    assert domain_caption("domain_09", labels) == "domain_09"
    assert domain_caption("basis_3", None) == "basis_3"


def test_coarse_clusters_are_labelled_from_the_prepared_data(tmp_path):
    """DGA-DR's bases and the per-cluster losses go by `coarse_<c>`; the run does not record
    which domains a cluster holds, the prepared data's manifest does."""
    origins = ["bbc/sport", "bbc/sport", "bbc/tech", "bbc/business", "bbc/tech"]
    domains = [
        {"name": f"domain_{i:02d}", "coarse": 0 if i < 3 else 1, "top_origins": [[o, 0.8]]}
        for i, o in enumerate(origins)
    ]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "manifest.json").write_text(json.dumps({"domains": domains}))
    labels = {"domain_00": "bbc/sport: match, team, win"}
    run = write_run(tmp_path / "runs", "r", mixer="dga_dr", domain_labels=labels)
    record = json.loads((run / "results.json").read_text())
    (run / "results.json").write_text(json.dumps({**record, "data": {"artifacts": "nowhere"}}))
    assert domain_labels(load_runs([tmp_path / "runs"])) == labels  # no manifest there
    record["data"] = {"artifacts": str(tmp_path / "data")}
    (run / "results.json").write_text(json.dumps(record))
    assert domain_labels(load_runs([tmp_path / "runs"])) == {
        **labels,
        "coarse_0": "bbc/sport + bbc/tech (3 domains)",
        "coarse_1": "bbc/business + bbc/tech (2 domains)",
    }
    assert coarse_labels(None) == {}


def test_a_notebooks_sweep_is_found_from_the_repository_root(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    (root / "multirun" / "demo").mkdir(parents=True)
    (tmp_path / "elsewhere" / "mine").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "elsewhere")  # e.g. a notebook's kernel, in analysis/
    assert sweep_path("multirun/demo", root) == root / "multirun" / "demo"
    assert sweep_path("mine", root) == Path("mine")  # not under the root: the current directory
    assert sweep_path(tmp_path / "elsewhere", root) == tmp_path / "elsewhere"
    with pytest.raises(FileNotFoundError) as error:
        sweep_path("multirun/other", root)
    assert str(error.value) == (
        f"no sweep at {root / 'multirun/other'}: run `make demo` first (it writes multirun/demo), "
        "or set MIXBENCH_SWEEP to a sweep or run directory"
    )
    assert sweep_path(DEMO_SWEEP, root) == root / "multirun" / "demo"
    assert Path(__file__).resolve().parents[1] == ROOT  # the default root


def test_failed_running_and_corrupt_runs_are_rows_not_crashes(tmp_path, caplog):
    write_run(tmp_path, "ok")
    write_run(tmp_path, "failed", status="failed")
    write_run(tmp_path, "running", status="running")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "results.json").write_text('{"status": "compl')
    wrong_shape = tmp_path / "wrong_shape"
    wrong_shape.mkdir()
    (wrong_shape / "results.json").write_text('{"status": "completed", "config": [1, 2]}')
    runs = load_runs([tmp_path]).set_index("run_dir")
    status = {Path(d).name: s for d, s in runs["status"].items()}
    assert status == {
        "ok": "completed",
        "failed": "failed",
        "running": "running",
        "corrupt": "unreadable",
        "wrong_shape": "unreadable",
    }
    assert runs.loc[str(tmp_path / "failed"), "error"] == "RuntimeError: boom"
    assert "JSONDecodeError" in runs.loc[str(corrupt), "error"]
    assert math.isnan(runs.loc[str(tmp_path / "running"), "target_loss"])
    assert "corrupt" in caplog.text


def test_missing_directory_and_empty_sweep_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run or sweep directory"):
        load_runs([tmp_path / "nope"])
    with pytest.raises(FileNotFoundError, match=r"no results\.json under"):
        load_runs([tmp_path])
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(NotADirectoryError, match="got the file"):
        load_runs([tmp_path / "file.txt"])


def test_other_config_keys_that_vary_become_part_of_the_setting(tmp_path):
    write_run(tmp_path, "a", lr=1e-3, seed=0)
    write_run(tmp_path, "b", lr=3e-3, seed=1)
    runs = load_runs([tmp_path])
    assert setting_columns(runs) == [
        "source",
        "num_domains",
        "train_tokens",
        "tokens_per_domain",
        "model",
        "config.train.lr",
    ]
    same_lr = runs[runs["config.train.lr"] == 1e-3]
    assert "config.train.lr" not in setting_columns(same_lr)
    setting = runs.iloc[0][setting_columns(runs)].to_dict()
    assert setting_title(setting) == (
        "synthetic · k=2 · 1,000 training tokens · uncapped domains · model tiny · train.lr=0.001"
    )
    # A key only other runs have (another data source's option, say) is left out of the title.
    assert setting_title({**setting, "config.train.lr": math.nan}).endswith("model tiny")
    assert setting_title(setting, ["train_tokens"]) == "1,000 training tokens"


def test_mean_weights_average_over_seeds(tmp_path):
    write_run(tmp_path, "s0", mixer="dga", seed=0, weights={"d0": 0.2, "d1": 0.8})
    write_run(tmp_path, "s1", mixer="dga", seed=1, weights={"d0": 0.4, "d1": 0.6})
    table = mean_weights(load_runs([tmp_path]), "final_weights")
    assert table.to_dict("records") == [{"d0": pytest.approx(0.3), "d1": pytest.approx(0.7)}]
    assert table.index.get_level_values("mixer_label").tolist() == ["dga"]
    with pytest.raises(ValueError, match="which must be"):
        mean_weights(load_runs([tmp_path]), "weights")


def test_history_files_load_by_tokens_and_step(tmp_path):
    run = write_run(tmp_path, "a")
    (run / "metrics.csv").write_text(
        "epoch,step,train/loss,val/target_loss,val/generic_loss,val/tokens\n"
        "0,0,,5.5,5.6,0.0\n"
        "0,4,5.1,,,\n"
        "0,4,,5.0,5.2,1000.0\n"
    )
    (run / "weights.csv").write_text("step,d0,d1\n0,0.5,0.5\n5,0.7,0.3\n")
    curve = validation_curve(run)
    assert curve.index.tolist() == [0.0, 1000.0]
    assert curve["val/target_loss"].tolist() == [5.5, 5.0]
    trajectory = load_trajectory(run)
    assert trajectory.loc[5].tolist() == [0.7, 0.3]
    assert validation_curve(tmp_path / "missing").empty
    (run / "metrics.csv").write_text("")  # a run killed before its first log
    assert validation_curve(run).empty


def test_wandb_without_network_fails_fast_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    started = time.monotonic()
    with pytest.raises(ConnectionError, match="needs network access"):
        load_wandb_runs("mixbench", group="default", timeout=2)
    # A host name that cannot resolve (.invalid never does) fails the same way.
    with pytest.raises(ConnectionError, match=r"needs network access to https://mixbench\.invalid"):
        check_reachable("https://mixbench.invalid", timeout=2)
    assert time.monotonic() - started < 5


def test_wandb_run_maps_onto_the_same_row_as_a_local_run(tmp_path):
    local = load_runs([write_run(tmp_path, "a", target=2.5, generic=3.5, probe_tokens=100)])
    config = json.loads((tmp_path / "a" / "results.json").read_text())["config"]
    summary = {
        "final/val/target_loss": 2.5,
        "final/val/generic_loss": 3.5,
        "train/tokens": 1000,
        "train/probe_tokens": 100,
        "_runtime": 15.0,
        "val/target_loss": 9.9,  # the last logged value, not the final summary
    }
    row = pd.Series(run_row(wandb_record(config, summary, "finished"), None))
    columns = ["status", "mixer_label", "seed", "target_loss", "generic_loss", "probe_tokens"]
    assert row[columns].tolist() == local.iloc[0][columns].tolist()
    assert row["wall_clock_s"] == 15.0 and math.isnan(row["train_seconds"])
    assert run_row(wandb_record(config, {}, "crashed"), None)["status"] == "failed"
