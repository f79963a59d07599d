"""Shared test set-up: offline W&B, a private cache directory, one torch thread for the modules
that ask for it, and Hydra composition."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from experiments.config import register_configs

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"

os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
register_configs()


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Prepared data goes to a per-session cache unless the caller chose one (MIXBENCH_CACHE).
    Under pytest-xdist the workers share one (the session's base directory is per worker, its
    parent per session): a demo preparation is made once, and concurrent preparations of one
    key are exercised as users run them."""
    base = tmp_path_factory.getbasetemp()
    cache = base.parent / "cache" if os.environ.get("PYTEST_XDIST_WORKER") else base / "cache"
    cache.mkdir(exist_ok=True)
    os.environ.setdefault("MIXBENCH_CACHE", str(cache))


@pytest.fixture(scope="module")
def one_thread():
    """Small models on a shared 2-core machine: one intra-op thread is many times faster than
    two threads contending with other processes. A module asks for it with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def compose_config(*overrides: str, with_hydra: bool = False) -> DictConfig:
    """The config `python -m experiments.train <overrides>` would run with (and, `with_hydra`,
    Hydra's own node: sweeper parameters, launcher)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(
            config_name="train", overrides=list(overrides), return_hydra_config=with_hydra
        )


def run_train_cli(*args: str, module: str = "experiments.train") -> subprocess.CompletedProcess:
    """`python -m <module> <args>` (experiments.train by default) as a user runs it, from the
    repository root."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


# A fast training run: tiny model, a few steps, CSV logging only.
FAST = (
    "train.tokens=8192",
    "train.batch_size=8",
    "train.eval_every=4",
    "train.eval_sequences_per_domain=4",
    "data.sequences_per_domain=32",
    "data.heldout_sequences_per_domain=4",
    "data.target_eval_sequences=8",
    "model.context_length=32",
    "logger=csv",
)
