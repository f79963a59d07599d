"""Cluster-grade runs: a signal stops a run at a step boundary with a checkpoint, the re-run
continues it exactly and in the same W&B run, and the SLURM presets agree with Lightning."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from experiments.preemption import EXIT_PREEMPTED
from experiments.results import read_results
from tests.conftest import FAST, ROOT, compose_config, run_train_cli

# FAST with a tiny GPT and 200 steps: long enough to be signalled in the middle.
LONG = [
    *(o for o in FAST if not o.startswith(("train.tokens", "logger"))),
    "train.tokens=51200",
    "model.n_layer=1",
    "model.d_model=32",
    "train.eval_every=100",
    "train.checkpoint_every=25",
    "logger=wandb",
]


def start_run(run_dir) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.train", *LONG, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def offline_runs(run_dir) -> list:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("whole")
    proc = run_train_cli(*LONG, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return read_results(run_dir)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGTERM])
def test_a_signalled_run_checkpoints_exits_for_requeue_and_resumes_exactly(
    tmp_path, signum, uninterrupted
):
    run_dir = tmp_path / "signalled"
    proc = start_run(run_dir)
    deadline = time.time() + 300
    while not (run_dir / "checkpoints" / "last.ckpt").exists():  # training is under way
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-2000:]
        time.sleep(0.2)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == EXIT_PREEMPTED, stderr[-2000:]
    stopped = read_results(run_dir)
    assert stopped["status"] == "preempted"
    assert 25 <= stopped["steps"] < 200

    again = run_train_cli(*LONG, f"hydra.run.dir={run_dir}")
    assert again.returncode == 0, again.stderr[-2000:]
    resumed, reference = read_results(run_dir), uninterrupted
    assert resumed["status"] == "completed" and resumed["steps"] == 200
    assert resumed["metrics_final"] == reference["metrics_final"]  # bit-exact
    assert resumed["final_weights"] == reference["final_weights"]

    # One W&B run: both starts logged under the id kept in the run directory, and the
    # resumed start's record holds the final metrics in the run's summary.
    run_id = (run_dir / "wandb_run_id").read_text().strip()
    folders = offline_runs(run_dir)
    assert len(folders) == 2 and all(f.name.endswith(f"-{run_id}") for f in folders)
    assert b"final/val/target_loss" in (folders[-1] / f"run-{run_id}.wandb").read_bytes()


def test_slurm_sweep_on_two_nodes_of_eight_gpus_agrees_with_lightning():
    cfg = compose_config(
        "hydra/launcher=slurm",
        "trainer=gpu_ddp",
        "trainer.devices=8",
        "trainer.num_nodes=2",
        with_hydra=True,
    )
    launcher, trainer = cfg.hydra.launcher, cfg.trainer
    # Lightning's DDP under SLURM: one task per GPU, on every node.
    assert launcher.nodes == trainer.num_nodes == 2
    assert launcher.tasks_per_node == launcher.gpus_per_node == trainer.devices == 8
    assert launcher.nodes * launcher.tasks_per_node == 16  # the world size
    assert trainer.strategy == "ddp" and trainer.accelerator == "gpu"
    # Warned ahead of the time limit, and requeued when the limit is reached.
    assert launcher.signal_delay_s >= 60 and launcher.max_num_timeout > 0
    rendered = json.dumps(dict(launcher.items()), default=str)
    assert "submitit" in rendered.lower()


def test_every_trainer_preset_named_in_a_comment_exists():
    presets = {p.stem for p in (ROOT / "conf" / "trainer").glob("*.yaml")}
    for path in (ROOT / "conf").rglob("*.yaml"):
        for word in path.read_text().split():
            if word.strip("`(),.").startswith("trainer="):
                assert word.strip("`(),.").removeprefix("trainer=") in presets, path
